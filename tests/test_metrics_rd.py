"""Tests for BD-rate, BD-PSNR and the area under a rate-quality curve."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from nicbeam.metrics import auc, bd_psnr, bd_rate

# libx265 example of the bjontegaard package's README (rates in kbit/s, PSNR in dB)
RATE_ANCHOR = [9487.76, 4593.60, 2486.44, 1358.24]
PSNR_ANCHOR = [40.037, 38.615, 36.845, 34.851]
RATE_TEST = [9787.80, 4469.00, 2451.52, 1356.24]
PSNR_TEST = [40.121, 38.651, 36.970, 34.987]

# a learned-codec-like curve in bpp / dB
BPP = [0.12, 0.21, 0.35, 0.55, 0.82]
PSNR = [27.9, 29.6, 31.4, 33.2, 35.1]


def test_identical_curves_give_zero():
    assert bd_rate(BPP, PSNR, BPP, PSNR) == pytest.approx(0.0, abs=1e-12)
    assert bd_psnr(BPP, PSNR, BPP, PSNR) == pytest.approx(0.0, abs=1e-12)


def test_rates_scaled_by_0_9_give_minus_10_percent():
    test_rates = [0.9 * r for r in BPP]
    assert bd_rate(BPP, PSNR, test_rates, PSNR) == pytest.approx(-10.0, abs=1e-9)
    assert bd_rate(test_rates, PSNR, BPP, PSNR) == pytest.approx(100 / 0.9 - 100, abs=1e-9)


def test_quality_shifted_up_gives_that_bd_psnr():
    assert bd_psnr(BPP, PSNR, BPP, [q + 0.5 for q in PSNR]) == pytest.approx(0.5, abs=1e-12)
    assert bd_psnr(BPP, PSNR, BPP, [q - 1.25 for q in PSNR]) == pytest.approx(-1.25, abs=1e-12)


def test_better_codec_has_negative_bd_rate_and_positive_bd_psnr():
    assert bd_rate(RATE_ANCHOR, PSNR_ANCHOR, RATE_TEST, PSNR_TEST) < 0
    assert bd_psnr(RATE_ANCHOR, PSNR_ANCHOR, RATE_TEST, PSNR_TEST) > 0


def test_point_order_does_not_matter():
    order = [2, 0, 3, 1]
    shuffled_rate = [RATE_TEST[i] for i in order]
    shuffled_psnr = [PSNR_TEST[i] for i in order]
    expected = bd_rate(RATE_ANCHOR, PSNR_ANCHOR, RATE_TEST, PSNR_TEST)
    shuffled = bd_rate(RATE_ANCHOR, PSNR_ANCHOR, shuffled_rate, shuffled_psnr)
    assert shuffled == pytest.approx(expected, abs=1e-12)


def test_bd_rate_matches_direct_pchip_integration_on_partial_overlap():
    # test curve covers only part of the anchor's quality range: integrate over the overlap only
    rate_t = [0.15, 0.25, 0.40, 0.60, 1.0]
    psnr_t = [29.0, 30.5, 32.2, 34.0, 36.0]
    lo, hi = max(PSNR[0], psnr_t[0]), min(PSNR[-1], psnr_t[-1])
    fa = PchipInterpolator(PSNR, np.log(BPP))
    ft = PchipInterpolator(psnr_t, np.log(rate_t))
    expected = (math.exp((ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)) - 1) * 100
    assert bd_rate(BPP, PSNR, rate_t, psnr_t) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    "curves",
    [
        (RATE_ANCHOR, PSNR_ANCHOR, RATE_TEST, PSNR_TEST),
        (BPP, PSNR, [0.1, 0.2, 0.33, 0.5, 0.9], [27.5, 29.9, 31.5, 33.9, 35.5]),
        (BPP, PSNR, [0.3, 0.4, 0.6, 1.0], [31.0, 32.0, 34.0, 36.5]),
    ],
)
def test_matches_bjontegaard_package_pchip(curves):
    bjontegaard = pytest.importorskip("bjontegaard", reason="reference package bjontegaard not installed")
    kwargs = dict(method="pchip", require_matching_points=False, min_overlap=0)
    assert bd_rate(*curves) == pytest.approx(bjontegaard.bd_rate(*curves, **kwargs), abs=1e-9)
    assert bd_psnr(*curves) == pytest.approx(bjontegaard.bd_psnr(*curves, **kwargs), abs=1e-9)


def test_readme_example_value():
    # Values computed with the bjontegaard package 1.3.0, method='pchip' (its authors checked it against the
    # JCT-VC/JVET spreadsheets); pinned so the check still runs where that package is not installed.
    assert bd_rate(RATE_ANCHOR, PSNR_ANCHOR, RATE_TEST, PSNR_TEST) == pytest.approx(-4.417485350589, abs=1e-9)
    assert bd_psnr(RATE_ANCHOR, PSNR_ANCHOR, RATE_TEST, PSNR_TEST) == pytest.approx(0.119692785425, abs=1e-9)


@pytest.mark.parametrize("fn", [bd_rate, bd_psnr])
def test_rejects_too_few_points(fn):
    with pytest.raises(ValueError, match="at least 4"):
        fn(BPP[:3], PSNR[:3], BPP, PSNR)
    assert math.isfinite(fn(BPP[:3], PSNR[:3], BPP[:3], PSNR[:3], min_points=3))
    with pytest.raises(ValueError, match="min_points"):
        fn(BPP, PSNR, BPP, PSNR, min_points=1)


@pytest.mark.parametrize("fn", [bd_rate, bd_psnr])
def test_rejects_non_overlapping_curves(fn):
    high_rates = [r * 10 for r in BPP]
    with pytest.raises(ValueError, match="do not overlap"):
        fn(BPP, PSNR, high_rates, [q + 20 for q in PSNR])


@pytest.mark.parametrize(
    "rates, qualities",
    [
        ([0.1, 0.2, 0.3, 0.4], [30.0, 32.0, 31.0, 33.0]),  # quality drops as rate rises
        ([0.1, 0.2, 0.3, 0.4], [30.0, 32.0, 32.0, 33.0]),  # repeated quality
        ([0.1, 0.2, 0.2, 0.4], [30.0, 31.0, 32.0, 33.0]),  # repeated rate
    ],
)
def test_rejects_non_monotonic_curves(rates, qualities):
    with pytest.raises(ValueError, match="monotonic"):
        bd_rate(rates, qualities, BPP, PSNR)
    with pytest.raises(ValueError, match="monotonic"):
        bd_psnr(BPP, PSNR, rates, qualities)


@pytest.mark.parametrize(
    "rates, qualities, message",
    [
        ([0.1, 0.2, 0.0, 0.4], [30.0, 31.0, 29.0, 33.0], "positive"),
        ([0.1, 0.2, 0.3, float("nan")], [30.0, 31.0, 32.0, 33.0], "finite"),
        ([0.1, 0.2, 0.3, 0.4], [30.0, 31.0, 32.0], "same length"),
    ],
)
def test_rejects_bad_values(rates, qualities, message):
    with pytest.raises(ValueError, match=message):
        bd_rate(BPP, PSNR, rates, qualities)


# --- AUC --------------------------------------------------------------------------------------------------


def test_auc_of_a_line_is_exact():
    rates = [0.0, 1.0, 2.0]
    qualities = [10.0, 20.0, 30.0]  # q = 10 + 10 r
    assert auc(rates, qualities, 0.0, 2.0) == pytest.approx(40.0)
    # sub-interval [0.25, 1.5]: integral of 10 + 10r = 10*1.25 + 5*(1.5^2 - 0.25^2)
    assert auc(rates, qualities, 0.25, 1.5) == pytest.approx(12.5 + 5 * (2.25 - 0.0625))


def test_auc_interpolates_linearly_between_points():
    rates = [0.1, 0.5, 1.0]
    qualities = [20.0, 30.0, 32.0]
    # trapezoids: [0.1,0.5] -> 0.4*25, [0.5,1.0] -> 0.5*31
    assert auc(rates, qualities, 0.1, 1.0) == pytest.approx(0.4 * 25 + 0.5 * 31)
    # cut inside both segments: q(0.3) = 25, q(0.75) = 31
    assert auc(rates[::-1], qualities[::-1], 0.3, 0.75) == pytest.approx(0.2 * 27.5 + 0.25 * 30.5)


def test_auc_higher_curve_has_larger_area():
    assert auc(BPP, [q + 1 for q in PSNR], 0.2, 0.8) == pytest.approx(auc(BPP, PSNR, 0.2, 0.8) + 0.6)


@pytest.mark.parametrize(
    "bounds, message",
    [((0.05, 0.5), "not covered"), ((0.2, 0.9), "not covered"), ((0.5, 0.5), "bpp_min < bpp_max")],
)
def test_auc_rejects_uncovered_or_empty_interval(bounds, message):
    with pytest.raises(ValueError, match=message):
        auc(BPP, PSNR, *bounds)


def test_auc_rejects_bad_curves():
    with pytest.raises(ValueError, match="distinct"):
        auc([0.1, 0.1, 0.3], [1.0, 2.0, 3.0], 0.1, 0.3)
    with pytest.raises(ValueError, match="at least 2"):
        auc([0.1], [1.0], 0.1, 0.2)
