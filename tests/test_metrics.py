"""Tests for nicbeam.metrics: bpp, luma, MSE/PSNR/PSNR-Y and MS-SSIM on synthetic images."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nicbeam.metrics import bpp, ms_ssim, ms_ssim_batch, ms_ssim_db, mse, mse_to_psnr, psnr, psnr_y, rgb_to_y
from nicbeam.metrics.msssim import MS_SSIM_MIN_SIDE

REPO = Path(__file__).resolve().parents[1]


def smooth_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like synthetic RGB uint8 image: low-frequency waves plus mild seeded texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = []
    for c in range(3):
        fx, fy, phase = rng.uniform(0.02, 0.08), rng.uniform(0.02, 0.08), rng.uniform(0, 2 * np.pi)
        wave = 110 + 70 * np.sin(fx * xx + phase) * np.cos(fy * yy) + 30 * np.sin(0.01 * (xx + 2 * yy) + c)
        channels.append(wave + rng.normal(0, 3, (height, width)))
    return np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


def add_noise(image: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(image + rng.normal(0, sigma, image.shape)), 0, 255).astype(np.uint8)


# --- rate ---------------------------------------------------------------------------------------------


def test_bpp_is_bits_over_pixels():
    assert bpp(1000, 100, 80) == pytest.approx(8000 / 8000)
    assert bpp(24_576, 512, 768) == pytest.approx(0.5)
    assert bpp(0, 4, 4) == 0.0


@pytest.mark.parametrize("args", [(-1, 4, 4), (10, 0, 4), (10, 4, -2)])
def test_bpp_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        bpp(*args)


# --- luma ---------------------------------------------------------------------------------------------


def test_rgb_to_y_uses_bt601_full_range_weights():
    primaries = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]]], np.uint8)
    y = rgb_to_y(primaries)
    assert y.dtype == np.float64 and y.shape == (1, 5)
    np.testing.assert_allclose(y[0], [0.299 * 255, 0.587 * 255, 0.114 * 255, 255.0, 0.0], rtol=0, atol=1e-12)


def test_rgb_to_y_of_grey_is_the_grey_level():
    grey = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    np.testing.assert_allclose(rgb_to_y(grey)[0], np.arange(256.0), atol=1e-12)


# --- MSE / PSNR -----------------------------------------------------------------------------------------


def test_identical_images_have_zero_mse_and_infinite_psnr():
    a = smooth_rgb(16, 24)
    assert mse(a, a.copy()) == 0.0
    assert psnr(a, a.copy()) == math.inf
    assert psnr_y(a, a.copy()) == math.inf


def test_mse_pools_all_channels_and_pixels():
    a = np.zeros((4, 5, 3), np.uint8)
    b = a.copy()
    b[1, 2, 0] = 10  # one channel of one pixel off by 10
    b[3, 4, 2] = 3
    expected = (10**2 + 3**2) / (4 * 5 * 3)
    assert mse(a, b) == pytest.approx(expected, rel=1e-15)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / expected), rel=1e-14)


def test_mse_does_not_wrap_around_uint8():
    a = np.zeros((2, 2, 3), np.uint8)
    b = np.full((2, 2, 3), 255, np.uint8)
    assert mse(a, b) == 255.0**2
    assert mse(b, a) == 255.0**2
    assert psnr(a, b) == pytest.approx(0.0, abs=1e-12)


def test_psnr_peak_and_known_noise_level():
    a = smooth_rgb(32, 32)
    b = add_noise(a, 5.0)
    diff = a.astype(float) - b.astype(float)
    manual = 10 * math.log10(255**2 / np.mean(diff**2))
    assert psnr(a, b) == pytest.approx(manual, rel=1e-12)
    assert psnr(a, b, peak=1.0) == pytest.approx(manual - 20 * math.log10(255), rel=1e-12)
    assert 33 < psnr(a, b) < 36  # sigma 5 noise is about 34 dB


def test_mse_to_psnr():
    assert mse_to_psnr(255.0**2) == pytest.approx(0.0)
    assert mse_to_psnr(1.0) == pytest.approx(48.1308036086791)
    assert mse_to_psnr(0.0) == math.inf
    with pytest.raises(ValueError):
        mse_to_psnr(-1.0)
    with pytest.raises(ValueError):
        mse_to_psnr(1.0, peak=0)


def test_psnr_y_matches_manual_luma_psnr():
    a = smooth_rgb(24, 40, seed=3)
    b = add_noise(a, 8.0, seed=4)
    w = np.array([0.299, 0.587, 0.114])
    ya, yb = a.astype(float) @ w, b.astype(float) @ w
    manual = 10 * math.log10(255**2 / np.mean((ya - yb) ** 2))
    assert psnr_y(a, b) == pytest.approx(manual, rel=1e-12)


def test_psnr_y_equals_psnr_on_grey_images():
    a = np.repeat(smooth_rgb(16, 16)[..., :1], 3, axis=2)
    b = np.repeat(add_noise(a[..., :1], 4.0), 3, axis=2)
    assert psnr_y(a, b) == pytest.approx(psnr(a, b), rel=1e-12)


def test_psnr_y_ignores_a_luma_preserving_colour_change():
    delta = np.array([15, -9, 7])  # 0.299*15 - 0.587*9 + 0.114*7 == 0: a pure chroma change
    assert 299 * delta[0] + 587 * delta[1] + 114 * delta[2] == 0
    a = np.full((8, 8, 3), 100, np.uint8)
    b = (a.astype(int) + delta).astype(np.uint8)
    assert psnr(a, b) < 30
    assert psnr_y(a, b) > 250  # only floating-point rounding of Y is left


@pytest.mark.parametrize(
    "a, b, message",
    [
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8), "same shape"),
        (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), r"\(H, W, 3\)"),
        ([[0]], [[0]], "numpy array"),
    ],
)
def test_psnr_validates_inputs(a, b, message):
    for fn in (mse, psnr, psnr_y):
        with pytest.raises(ValueError, match=message):
            fn(a, b)


# --- MS-SSIM --------------------------------------------------------------------------------------------


def test_importing_metrics_does_not_import_torch():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    code = "import sys, nicbeam.metrics; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def msssim_images():
    a = smooth_rgb(MS_SSIM_MIN_SIDE + 7, 176, seed=5)
    return a, add_noise(a, 4.0, seed=6), add_noise(a, 16.0, seed=7)


def test_ms_ssim_identical_is_one_and_infinite_db(msssim_images):
    a, _, _ = msssim_images
    value = ms_ssim(a, a.copy())
    assert value == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim_db(value) == math.inf


def test_ms_ssim_falls_with_noise_and_is_symmetric(msssim_images):
    a, light, heavy = msssim_images
    v_light, v_heavy = ms_ssim(a, light), ms_ssim(a, heavy)
    assert 0.0 < v_heavy < v_light < 1.0
    assert ms_ssim(light, a) == pytest.approx(v_light, abs=1e-12)


def test_ms_ssim_averages_the_three_rgb_channels(msssim_images):
    # pytorch_msssim scores each channel separately and averages them: a wrong NHWC->NCHW layout breaks this.
    a, light, _ = msssim_images
    grey = [(np.repeat(a[..., [c]], 3, axis=2), np.repeat(light[..., [c]], 3, axis=2)) for c in range(3)]
    per_channel = [ms_ssim(x, y) for x, y in grey]
    # float32 evaluation: channel means agree to ~1e-7; a wrong layout is off by far more than 1e-6.
    assert ms_ssim(a, light) == pytest.approx(np.mean(per_channel), abs=1e-6)


def test_ms_ssim_batch_matches_single_calls(msssim_images):
    a, light, heavy = msssim_images
    batch = ms_ssim_batch([(a, light), (a, heavy), (light, heavy)])
    assert batch == pytest.approx([ms_ssim(a, light), ms_ssim(a, heavy), ms_ssim(light, heavy)], abs=1e-6)
    assert ms_ssim_batch([]) == []


def test_ms_ssim_batch_rejects_mixed_sizes(msssim_images):
    a, light, _ = msssim_images
    small = a[:-2, :-2]
    with pytest.raises(ValueError, match="pair 1"):
        ms_ssim_batch([(a, light), (small, small.copy())])


@pytest.mark.parametrize("shape", [(MS_SSIM_MIN_SIDE - 1, 300, 3), (300, 64, 3), (8, 8, 3)])
def test_ms_ssim_too_small_raises_clear_error(shape):
    img = np.zeros(shape, np.uint8)
    with pytest.raises(ValueError, match=f">= {MS_SSIM_MIN_SIDE}"):
        ms_ssim(img, img)


def test_ms_ssim_minimum_size_is_161():
    assert MS_SSIM_MIN_SIDE == 161
    img = smooth_rgb(161, 161, seed=8)
    assert ms_ssim(img, add_noise(img, 2.0)) < 1.0


def test_ms_ssim_validates_dtype():
    img = np.zeros((200, 200, 3), np.float32)
    with pytest.raises(ValueError, match="uint8"):
        ms_ssim(img, img)


def test_ms_ssim_db_values():
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_db(0.999) == pytest.approx(30.0)
    assert ms_ssim_db(0.0) == 0.0
    assert ms_ssim_db(1.0) == math.inf
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            ms_ssim_db(bad)
