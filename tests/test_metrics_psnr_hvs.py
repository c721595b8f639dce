"""Tests for PSNR-HVS / PSNR-HVS-M against the reference code and the metrics' published behaviour."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
from scipy.fft import idctn

from nicbeam.metrics import hvs_mse, psnr_hvs, psnr_hvs_hvsm, psnr_hvs_m, rgb_to_y
from nicbeam.metrics.psnr_hvs import CSF, MASK


def smooth_gray(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic grey image in float64 on 0..255, with some texture so masking has work to do."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = 128 + 60 * np.sin(xx / 7.0 + rng.uniform(0, 6)) * np.cos(yy / 5.0) + 20 * np.sin((xx + yy) / 23.0)
    img[:, width // 2 :] += rng.normal(0, 12, (height, width - width // 2))  # a textured half
    return np.clip(img, 0, 255)


def smooth_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    planes = [smooth_gray(height, width, seed + c) + rng.normal(0, 2, (height, width)) for c in range(3)]
    return np.clip(np.rint(np.stack(planes, axis=-1)), 0, 255).astype(np.uint8)


def noisy(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.clip(image + rng.normal(0, sigma, image.shape), 0, 255)
    return np.rint(out).astype(np.uint8) if image.dtype == np.uint8 else out


def _dct_matrix(n: int = 8) -> np.ndarray:
    """Orthonormal DCT-II matrix C, so that MATLAB's dct2(A) == C @ A @ C.T."""
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    c = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * x + 1) * k / (2 * n))
    c[0] /= np.sqrt(2.0)
    return c


def psnrhvsm_loop(img1: np.ndarray, img2: np.ndarray, step: int = 8) -> tuple[float, float]:
    """Line-by-line transcription of the authors' psnrhvsm.m (returns PSNR-HVS, PSNR-HVS-M; inf for 0)."""
    c = _dct_matrix()

    def vari(aa):
        return np.var(aa.ravel(), ddof=1) * aa.size

    def maskeff(z, zdct):
        m = 0.0
        for k in range(8):
            for l in range(8):  # noqa: E741 - names as in the MATLAB code
                if k != 0 or l != 0:
                    m += zdct[k, l] ** 2 * MASK[k, l]
        pop = vari(z)
        if pop != 0:
            pop = (vari(z[:4, :4]) + vari(z[:4, 4:]) + vari(z[4:, 4:]) + vari(z[4:, :4])) / pop
        return math.sqrt(m * pop) / 32

    len_y, len_x = img1.shape
    s1 = s2 = 0.0
    num = 0
    y = 0
    while y <= len_y - 8:
        x = 0
        while x <= len_x - 8:
            a = img1[y : y + 8, x : x + 8]
            b = img2[y : y + 8, x : x + 8]
            a_dct, b_dct = c @ a @ c.T, c @ b @ c.T
            mask_a = max(maskeff(a, a_dct), maskeff(b, b_dct))
            x += step
            for k in range(8):
                for l in range(8):  # noqa: E741
                    u = abs(a_dct[k, l] - b_dct[k, l])
                    s2 += (u * CSF[k, l]) ** 2
                    if k != 0 or l != 0:
                        u = 0.0 if u < mask_a / MASK[k, l] else u - mask_a / MASK[k, l]
                    s1 += (u * CSF[k, l]) ** 2
                    num += 1
        y += step
    s1, s2 = s1 / num, s2 / num
    p_hvs = math.inf if s2 == 0 else 10 * math.log10(255 * 255 / s2)
    p_hvs_m = math.inf if s1 == 0 else 10 * math.log10(255 * 255 / s1)
    return p_hvs, p_hvs_m


# --- the reference code -----------------------------------------------------------------------------------


def test_tables_match_published_values():
    assert CSF.shape == MASK.shape == (8, 8)
    # spot checks against the tables printed in psnrhvsm.m
    assert CSF[0, 0] == 1.608443 and CSF[0, 2] == 2.573509 and CSF[7, 7] == 0.259950
    assert MASK[0, 2] == 1.0 and MASK[4, 5] == 0.008417 and MASK[7, 7] == 0.010203


def test_tables_match_psnr_hvsm_package():
    ref = pytest.importorskip("psnr_hvsm.numpy.psnr_hvsm", reason="reference package psnr-hvsm not installed")
    np.testing.assert_array_equal(CSF.ravel(), ref.CSF_COEFF)
    np.testing.assert_array_equal(MASK.ravel(), ref.MASK_COEFF)


@pytest.mark.parametrize("step", [8, 4, 3])
def test_matches_loop_transcription_of_psnrhvsm_m(step):
    a = smooth_gray(27, 37, seed=1)  # not a multiple of 8: the partial border is skipped, as in MATLAB
    b = noisy(a, 7.0, seed=2)
    expected = psnrhvsm_loop(a, b, step)
    assert psnr_hvs_hvsm(a, b, step=step) == pytest.approx(expected, abs=1e-9)


def test_partial_border_blocks_are_ignored():
    a = smooth_gray(29, 43, seed=3)
    b = noisy(a, 5.0, seed=4)
    b[24:, :] = 0.0  # damage only the bottom 5 rows and the right 3 columns: never covered by a block
    b[:, 40:] = 255.0
    assert psnr_hvs_hvsm(a, b) == pytest.approx(psnr_hvs_hvsm(a[:24, :40], b[:24, :40]), abs=1e-12)


def _reference_backends():
    ref = pytest.importorskip("psnr_hvsm", reason="reference package psnr-hvsm not installed")
    return {name: funcs["psnr_hvs_hvsm"] for name, funcs in ref.BACKENDS.items() if name in ("numpy", "cpp")}


@pytest.mark.parametrize("sigma, seed", [(2.0, 10), (9.0, 11), (25.0, 12)])
def test_matches_psnr_hvsm_package_on_grey(sigma, seed):
    a = smooth_gray(64, 96, seed=seed)
    b = noisy(a, sigma, seed=seed + 100)
    ours = psnr_hvs_hvsm(a, b)
    for name, ref in _reference_backends().items():
        ref_hvs, ref_hvsm = ref(a / 255.0, b / 255.0)  # the package works on [0, 1] with peak 1
        assert ours[0] == pytest.approx(float(ref_hvs), abs=1e-6), name
        assert ours[1] == pytest.approx(float(ref_hvsm), abs=1e-6), name


def test_matches_psnr_hvsm_package_on_rgb_via_bt601_luma():
    a = smooth_rgb(48, 64, seed=20)
    b = noisy(a, 6.0, seed=21)
    w = np.array([0.299, 0.587, 0.114])
    ya, yb = a.astype(np.float64) @ w, b.astype(np.float64) @ w
    ours = psnr_hvs_hvsm(a, b)
    for name, ref in _reference_backends().items():
        ref_hvs, ref_hvsm = ref(ya / 255.0, yb / 255.0)
        assert ours == pytest.approx((float(ref_hvs), float(ref_hvsm)), abs=1e-6), name


# --- published behaviour ----------------------------------------------------------------------------------


def test_identical_images_are_infinite():
    a = smooth_rgb(16, 24)
    assert psnr_hvs_hvsm(a, a.copy()) == (math.inf, math.inf)
    assert hvs_mse(a, a.copy()) == (0.0, 0.0)


def test_masked_distortion_gives_infinite_psnr_hvs_m_only():
    # A faint top-frequency pattern (no DC change) on the textured half is masked by the texture.
    a = smooth_gray(32, 32, seed=5)
    b = a.copy()
    b[:, 16:] += _single_coefficient_noise((32, 16), 7, 7, 1.0, seed=6)
    hvs, hvsm = psnr_hvs_hvsm(a, b)
    assert math.isfinite(hvs) and hvsm == math.inf
    c = a.copy()
    c[:, :16] += _single_coefficient_noise((32, 16), 7, 7, 1.0, seed=6)  # same on the smooth half: visible
    assert math.isfinite(psnr_hvs_m(a, c))


def test_flat_offset_is_weighted_by_csf_dc():
    # Adding c to every pixel moves only each block's DC coefficient, by 8c (orthonormal DCT), so both
    # metrics see an MSE of (CSF[0,0] c)^2; the DC coefficient is never masked.
    a = smooth_gray(32, 48, seed=7)
    c = 5.0
    expected = 10 * math.log10(255**2 / (CSF[0, 0] * c) ** 2)
    hvs, hvsm = psnr_hvs_hvsm(a, a + c)
    assert hvs == pytest.approx(expected, abs=1e-9)
    assert hvsm == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_masking_only_reduces_the_error(seed):
    a = smooth_rgb(40, 56, seed=seed)
    b = noisy(a, 3.0 + 5 * seed, seed=seed + 50)
    hvs, hvsm = psnr_hvs_hvsm(a, b)
    assert hvsm >= hvs
    err_hvs, err_hvsm = hvs_mse(a, b)
    assert 0 < err_hvsm <= err_hvs


def _single_coefficient_noise(
    shape: tuple[int, int], row: int, col: int, amplitude: float, seed: int
) -> np.ndarray:
    """Noise: each 8x8 block holds one DCT coefficient (row, col) of +-amplitude, the same energy for any."""
    rng = np.random.default_rng(seed)
    rows, cols = shape[0] // 8, shape[1] // 8
    coeffs = np.zeros((rows, cols, 8, 8))
    coeffs[:, :, row, col] = amplitude * rng.choice([-1.0, 1.0], size=(rows, cols))
    blocks = idctn(coeffs, axes=(-2, -1), norm="ortho")
    return blocks.transpose(0, 2, 1, 3).reshape(shape)


def test_high_frequency_noise_is_penalised_less_than_low_frequency_noise():
    a = np.full((64, 64), 128.0)  # flat: no masking, so the CSF alone decides
    low = a + _single_coefficient_noise(a.shape, 0, 1, 20.0, seed=1)
    high = a + _single_coefficient_noise(a.shape, 7, 7, 20.0, seed=1)
    assert np.mean((low - a) ** 2) == pytest.approx(np.mean((high - a) ** 2))  # same pixel-domain energy
    hvs_low, hvs_high = psnr_hvs(a, low), psnr_hvs(a, high)
    assert hvs_high > hvs_low + 15
    # exactly the CSF ratio: one coefficient per block of size 20 -> MSE (20 CSF[k,l])^2 / 64
    assert hvs_high - hvs_low == pytest.approx(20 * math.log10(CSF[0, 1] / CSF[7, 7]), abs=1e-9)
    assert psnr_hvs_m(a, high) > psnr_hvs_m(a, low)


def test_psnr_hvs_on_rgb_uses_luma():
    a = smooth_rgb(24, 32, seed=30)
    b = noisy(a, 5.0, seed=31)
    assert psnr_hvs_hvsm(a, b) == pytest.approx(psnr_hvs_hvsm(rgb_to_y(a), rgb_to_y(b)), abs=1e-12)


def test_single_metric_functions_agree_with_the_pair():
    a = smooth_gray(24, 24, seed=40)
    b = noisy(a, 4.0, seed=41)
    hvs, hvsm = psnr_hvs_hvsm(a, b)
    assert psnr_hvs(a, b) == hvs
    assert psnr_hvs_m(a, b) == hvsm
    assert psnr_hvs(a / 255.0, b / 255.0, peak=1.0) == pytest.approx(hvs, abs=1e-9)


def test_large_image_is_processed_in_chunks_with_the_same_result(monkeypatch):
    # the package re-exports the function psnr_hvs, which shadows the submodule's attribute name
    module = importlib.import_module("nicbeam.metrics.psnr_hvs")

    a = smooth_gray(64, 64, seed=42)
    b = noisy(a, 6.0, seed=43)
    whole = psnr_hvs_hvsm(a, b, step=2)
    monkeypatch.setattr(module, "_CHUNK_BLOCKS", 7)
    assert psnr_hvs_hvsm(a, b, step=2) == pytest.approx(whole, abs=1e-10)


@pytest.mark.parametrize(
    "a, b, kwargs, message",
    [
        (np.zeros((7, 16)), np.zeros((7, 16)), {}, ">= 8"),
        (np.zeros((16, 16)), np.zeros((16, 24)), {}, "same shape"),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16)), {}, "same shape"),
        (np.zeros((16, 16, 3)), np.zeros((16, 16, 3)), {}, "RGB uint8"),
        (np.zeros((16, 16), bool), np.zeros((16, 16), bool), {}, "dtype"),
        (np.full((16, 16), np.nan), np.zeros((16, 16)), {}, "NaN"),
        (np.zeros((16, 16)), np.zeros((16, 16)), {"step": 0}, "step"),
        (np.zeros((16, 16)), np.zeros((16, 16)), {"peak": -1}, "peak"),
    ],
)
def test_validates_inputs(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        psnr_hvs_hvsm(a, b, **kwargs)
