"""Apache Beam PTransforms and DoFns that run nicbeam codecs over image corpora."""
