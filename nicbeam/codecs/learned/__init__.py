"""Learned codecs (PyTorch): Balle 2017 factorized prior and Minnen 2018 mean-scale hyperprior.

Importing this subpackage imports torch; the registry imports it only when such a codec is requested.
"""

from nicbeam.codecs.learned.factorized import FactorizedCodec
from nicbeam.codecs.learned.hyperprior import MeanScaleHyperpriorCodec

__all__ = ["FactorizedCodec", "MeanScaleHyperpriorCodec"]
