"""``tcm-hyperprior``: the CNN-Transformer codec. Its bitstream is that of ``mbt2018-mean`` (z with factorized
tables, then y symbols by scale index; integer hyper-synthesis, so the entropy parameters are bit-exact on
every machine); only the transforms differ (:mod:`.model`), and the synthesis runs in float64 like the other
learned codecs (decoded pixels independent of threads and batch)."""

from __future__ import annotations

from nicbeam.codecs.learned.hyperprior import MeanScaleHyperpriorCodec


class TransformerHyperpriorCodec(MeanScaleHyperpriorCodec):
    name = "tcm-hyperprior"
    description = ("learned: mean-scale hyperprior with Transformer-CNN mixture transforms (Swin window attention), "
                   "integer hyper-synthesis, gain-unit variable rate")
    weights_name = "tcm-hyperprior"
