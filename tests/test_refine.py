"""Encoder-side latent refinement (``refine=N``): lowers the real rate-distortion cost, decodes with the
unchanged decoder, exactly and independently of threads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from nicbeam.codecs import container, decode  # noqa: E402
from nicbeam.codecs.errors import InvalidParameterError  # noqa: E402
from nicbeam.codecs.learned.refine import refine_latents, sga_round, step_sizes, temperature  # noqa: E402
from nicbeam.codecs.learned.weights import weights_dir  # noqa: E402
from nicbeam.codecs.registry import get_codec  # noqa: E402
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "kodak"

NAMES = ["bmshj2017-factorized", "mbt2018-mean"]


def _crop(name: str, top: int, left: int, size: int = 128) -> np.ndarray:
    image = np.asarray(Image.open(SAMPLES / f"{name}.png").convert("RGB"))
    return np.ascontiguousarray(image[top : top + size, left : left + size])


def _cost(stream: bytes, decoded: np.ndarray, image: np.ndarray, lmbda: float) -> float:
    """What training minimises, measured on the real stream: bits per pixel + lambda * 255^2 * MSE."""
    pixels = image.shape[0] * image.shape[1]
    mse = float(((decoded.astype(np.float64) - image) / 255.0).__pow__(2).mean())
    return len(container.unpack(stream)[1]) * 8 / pixels + lmbda * 255.0**2 * mse


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("quality,crop", [(2, ("kodim03", 200, 300)), (6, ("kodim23", 100, 200)), (9, ("kodim20", 300, 100))])
def test_refinement_lowers_the_real_rate_distortion_cost(name, quality, crop):
    if not (weights_dir() / f"{name}.safetensors").exists():
        pytest.skip(f"no shipped weights for {name}")
    image = _crop(*crop)
    plain = get_codec(name, quality=quality, device="cpu")
    refined = get_codec(name, quality=quality, refine=20, device="cpu")
    lmbda = plain.model.lambdas[quality - 1]
    s0, s1 = plain.encode(image), refined.encode(image)
    assert s0 != s1
    d0, d1 = decode(s0), decode(s1)  # the refined stream needs nothing but the ordinary decoder
    assert d1.shape == image.shape
    c0, c1 = _cost(s0, d0, image, lmbda), _cost(s1, d1, image, lmbda)
    assert c1 < c0, (c0, c1)  # measured with the weights shipped before refine existed: 0.9-3.2 % lower at 20 steps


@pytest.mark.parametrize("name", NAMES)
def test_refined_stream_decodes_identically_across_threads_and_batch(name):
    if not (weights_dir() / f"{name}.safetensors").exists():
        pytest.skip(f"no shipped weights for {name}")
    before = torch.get_num_threads()
    try:
        codec = get_codec(name, quality=5, refine=5, device="cpu")
        a, b = _crop("kodim03", 0, 0, 96), _crop("kodim20", 64, 64, 96)
        torch.set_num_threads(1)
        streams = codec.encode_batch([a, b])
        one = [codec.decode(s) for s in streams]
        torch.set_num_threads(2)
        batched = codec.decode_batch(streams)
    finally:
        torch.set_num_threads(before)
    for x, y in zip(one, batched):
        assert np.array_equal(x, y)


def test_refine_is_validated():
    with pytest.raises(InvalidParameterError, match="refine"):
        get_codec("mbt2018-mean", refine=-1)


def test_zero_steps_returns_the_input_and_sga_rounds_to_neighbours():
    y = torch.randn(2, 4, 3, 3) * 3
    assert refine_latents(y, torch.rand(2, 3, 48, 48), center=torch.zeros_like(y), lmbda=torch.ones(2),
                          rate_bits=lambda t: t.abs().sum((1, 2, 3)), synthesis=lambda t: t, steps=0) is y
    r = sga_round(y, temperature(10**6, 1), torch.Generator().manual_seed(0))  # coldest: close to floor or ceil
    lo = torch.floor(y)
    assert bool(((r - lo) > -1e-6).all() and ((r - lo) < 1 + 1e-6).all())
    assert float((torch.minimum(r - lo, lo + 1 - r).abs() < 0.05).float().mean()) > 0.9


def test_step_size_is_constant_up_to_the_reference_trade_off_and_grows_above_it():
    lambdas = torch.tensor([0.00045, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18])
    steps = step_sizes(lambdas)
    assert torch.allclose(steps[:3], torch.full((3,), 0.01))
    assert bool((steps[3:] > steps[2:-1]).all())  # strictly growing above quality 6
    assert abs(float(steps[-1]) - 0.01 * (0.18 / 0.013) ** 0.6) < 1e-6


def test_each_image_moves_its_latents_by_its_own_step_size():
    # no rate, a distortion pulling every latent 4 bins up: Adam moves each at most ~its step size per step (SGA's
    # noise slows both alike); the start is off the integers, where SGA's relaxation has no gradient
    y = torch.full((2, 3, 8, 8), 0.3)
    x = torch.full((2, 3, 8, 8), 0.9)
    lmbda = torch.tensor([0.001, 0.18])  # step sizes 0.01 and ~0.048
    refined = refine_latents(y, x, center=torch.zeros_like(y), lmbda=lmbda, rate_bits=lambda t: 0.0 * t.sum((1, 2, 3)),
                             synthesis=lambda t: 0.5 + t / 10, steps=20)
    moved = (refined - y).mean(dim=(1, 2, 3))
    most = 20 * step_sizes(lmbda)
    assert bool((moved > 0.2 * most).all() and (moved < 1.05 * most).all()), (moved, most)
    ratio, expected = float(moved[1] / moved[0]), float(most[1] / most[0])
    assert abs(ratio / expected - 1) < 0.3, (ratio, expected)
