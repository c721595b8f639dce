"""nicbeam: neural and classical image compression at corpus scale, with Apache Beam pipelines."""

__version__ = "0.1.0"
