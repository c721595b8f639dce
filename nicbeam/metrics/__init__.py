"""Image quality and rate-distortion metrics: bpp, PSNR, PSNR-Y, MS-SSIM, PSNR-HVS(-M), BD-rate and AUC.

Importing this package does not import torch; :func:`ms_ssim` imports it when first called.
"""

from nicbeam.metrics.luma import rgb_to_y
from nicbeam.metrics.msssim import ms_ssim, ms_ssim_batch, ms_ssim_db
from nicbeam.metrics.psnr import mse, mse_to_psnr, psnr, psnr_y
from nicbeam.metrics.psnr_hvs import hvs_mse, psnr_hvs, psnr_hvs_hvsm, psnr_hvs_m
from nicbeam.metrics.rate import bpp
from nicbeam.metrics.rd import auc, bd_psnr, bd_rate

__all__ = [
    "auc",
    "bd_psnr",
    "bd_rate",
    "bpp",
    "hvs_mse",
    "ms_ssim",
    "ms_ssim_batch",
    "ms_ssim_db",
    "mse",
    "mse_to_psnr",
    "psnr",
    "psnr_hvs",
    "psnr_hvs_hvsm",
    "psnr_hvs_m",
    "psnr_y",
    "rgb_to_y",
]
