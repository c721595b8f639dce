"""Learned codecs: real bytes through constriction, determinism across threads / batches, digest checks.

Tiny randomly initialised models (built and exported here) exercise the coding path; the shipped weights
are round-tripped once on a small image.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nicbeam.codecs import container  # noqa: E402
from nicbeam.codecs.errors import InvalidParameterError, ModelMismatchError, PayloadError  # noqa: E402
from nicbeam.codecs.learned import FactorizedCodec, MeanScaleHyperpriorCodec  # noqa: E402
from nicbeam.codecs.learned.weights import weights_dir  # noqa: E402
from nicbeam.codecs.registry import get_codec  # noqa: E402
from nicbeam.nn.models import FactorizedPrior, MeanScaleHyperprior  # noqa: E402
from nicbeam.training.export import write_weights  # noqa: E402
from tests.learned_helpers import (  # noqa: E402
    assert_damaged_streams_refused,
    assert_identical_across_threads_and_batches,
    narrow_tables,
    smooth_image,
)

CODECS = {"factorized": FactorizedCodec, "factorized-pq": FactorizedCodec, "hyperprior": MeanScaleHyperpriorCodec}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    out = tmp_path_factory.mktemp("w")
    torch.manual_seed(0)
    paths = {}
    fact = FactorizedPrior(N=16, M=24)
    paths["factorized"] = out / "tiny-fact.safetensors"
    write_weights(fact, paths["factorized"])
    fact_pq = FactorizedPrior(N=16, M=24, prior="per-quality")  # one density per channel and quality
    paths["factorized-pq"] = out / "tiny-fact-pq.safetensors"
    write_weights(fact_pq, paths["factorized-pq"])
    hyper = MeanScaleHyperprior(N=16, M=24)
    paths["hyperprior"] = out / "tiny-hyper.safetensors"
    write_weights(hyper, paths["hyperprior"], calibration=torch.rand(2, 3, 64, 64))
    other = FactorizedPrior(N=16, M=24)
    paths["other"] = out / "tiny-other.safetensors"
    write_weights(other, paths["other"])
    return paths


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("kind", ["factorized", "factorized-pq", "hyperprior"])
def test_round_trip_real_bytes_any_size(tiny_weights, kind):
    codec = CODECS[kind](weights=tiny_weights[kind], device="cpu", quality=5)
    image = smooth_image(1, 37, 70)  # not a multiple of 16 / 64: padded and cropped
    stream = codec.encode(image)
    header, payload = container.unpack(stream)
    assert header.codec == codec.name and header.model_digest == codec.model_digest and len(codec.model_digest) == 32
    assert len(payload) > 5
    decoded = codec.decode(stream)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    # a different quality is a different stream, decodable by the same instance (sibling via the header)
    other = CODECS[kind](weights=tiny_weights[kind], device="cpu", quality=1).encode(image)
    assert other != stream and codec.decode(other).shape == image.shape


@pytest.mark.parametrize("kind", ["factorized", "factorized-pq", "hyperprior"])
def test_decode_independent_of_threads_and_batch(tiny_weights, threads, kind):
    codec = CODECS[kind](weights=tiny_weights[kind], device="cpu", quality=6, tile=64)
    images = [smooth_image(s, 64, 64) for s in range(8)]
    threads(1)
    streams_1 = [codec.encode(im) for im in images]
    reference = [codec.decode(s) for s in streams_1]
    threads(2)
    assert codec.encode_batch(images) == streams_1  # same bytes from a batch of 8 under 2 threads
    batch_2 = codec.decode_batch(streams_1)
    single_2 = [codec.decode(s) for s in streams_1]
    for ref, b, s in zip(reference, batch_2, single_2):
        np.testing.assert_array_equal(ref, b)
        np.testing.assert_array_equal(ref, s)


def test_integer_hyper_synthesis_is_exact(tiny_weights, threads):
    codec = MeanScaleHyperpriorCodec(weights=tiny_weights["hyperprior"], device="cpu")
    net = codec.bundle.extras["int_hs"]
    z = torch.randint(-20, 21, (8, 16, 3, 5)).double()
    threads(1)
    means_1, idx_1 = net.entropy_parameters(z, 24)
    singles = [net.entropy_parameters(z[i : i + 1], 24) for i in range(8)]
    threads(2)
    means_2, idx_2 = net.entropy_parameters(z, 24)
    assert torch.equal(means_1, means_2) and torch.equal(idx_1, idx_2)
    assert torch.equal(torch.cat([m for m, _ in singles]), means_1)
    assert torch.equal(torch.cat([i for _, i in singles]), idx_1)
    # means are exact multiples of 1/256, indices inside the scale table
    assert torch.equal(means_1 * 256, torch.round(means_1 * 256))
    assert int(idx_1.min()) >= 0 and int(idx_1.max()) < len(codec.bundle.extras["g_tables"])


def test_tiles_are_coded_independently(tiny_weights):
    codec = FactorizedCodec(weights=tiny_weights["factorized"], device="cpu", tile=64)
    image = smooth_image(3, 100, 150)  # 2 x 3 tiles, the last row/column partial
    assert len(codec.tiles(100, 150)) == 6
    decoded = codec.decode(codec.encode(image))
    assert decoded.shape == image.shape
    # a tile's reconstruction depends only on that tile's pixels
    alone = codec.decode(codec.encode(np.ascontiguousarray(image[:64, :64])))
    np.testing.assert_array_equal(decoded[:64, :64], alone)
    with pytest.raises(InvalidParameterError):
        FactorizedCodec(weights=tiny_weights["factorized"], tile=100)


def test_tampered_digest_raises_model_mismatch(tiny_weights):
    codec = FactorizedCodec(weights=tiny_weights["factorized"], device="cpu")
    stream = codec.encode(smooth_image(4, 32, 32))
    header, payload = container.unpack(stream)
    forged = bytes([header.model_digest[0] ^ 1]) + header.model_digest[1:]
    tampered = container.pack(dataclasses.replace(header, model_digest=forged), payload)
    with pytest.raises(ModelMismatchError):
        codec.decode(tampered)
    with pytest.raises(ModelMismatchError):
        codec.decode_batch([tampered])
    # same architecture, other weights: refused too
    with pytest.raises(ModelMismatchError):
        FactorizedCodec(weights=tiny_weights["other"], device="cpu").decode(stream)


def test_corrupt_payload_is_a_payload_error(tiny_weights):
    codec = FactorizedCodec(weights=tiny_weights["factorized"], device="cpu")
    header, payload = container.unpack(codec.encode(smooth_image(5, 32, 32)))
    with pytest.raises(PayloadError):
        codec.decode(container.pack(header, payload[:-3]))


@pytest.mark.parametrize("name", ["bmshj2017-factorized", "mbt2018-mean", "tcm-hyperprior"])
def test_shipped_weights_round_trip(name):
    if not (weights_dir() / f"{name}.safetensors").exists():
        pytest.skip(f"no shipped weights for {name}")
    image = smooth_image(6, 64, 96)
    results = []
    for quality in (1, 8):
        codec = get_codec(name, quality=quality, device="cpu")
        assert codec.model_digest.hex() == json.loads((weights_dir() / f"{name}.json").read_text())["sha256"]
        stream = codec.encode(image)
        decoded = codec.decode(stream)
        mse = float(((decoded.astype(np.float64) - image) ** 2).mean())
        results.append((len(stream), mse))
    assert results[0][0] < results[1][0]  # quality 1 is the smaller stream
    assert results[1][1] < results[0][1]  # ... and quality 8 the better picture
    assert 10 * np.log10(255**2 / results[1][1]) > 20


@pytest.mark.skipif(not (weights_dir() / "bmshj2017-factorized.safetensors").exists(), reason="no shipped weights")
def test_shipped_weights_decode_identical_across_threads_and_batch(threads):
    codec = FactorizedCodec(device="cpu", quality=6)  # the shipped weights
    assert_identical_across_threads_and_batches(codec, [smooth_image(s, 96, 128) for s in range(3)], threads)


@pytest.mark.parametrize("kind", ["factorized", "factorized-pq", "hyperprior"])
def test_escaped_latents_decode_exactly(tiny_weights, kind):
    """Regression (hyperprior z escapes were stacked before being filled in): with tables so narrow that
    most latents escape (0 among them), the stream must decode to the very image the full tables give."""
    codec = CODECS[kind](weights=tiny_weights[kind], device="cpu", quality=8)
    image = smooth_image(7, 64, 128)
    reference = codec.decode(codec.encode(image))
    extras = codec.bundle.extras
    key = "z_tables" if kind == "hyperprior" else "y_tables"
    saved = extras[key]
    try:
        extras[key] = narrow_tables(saved, keep=2, first=1)
        stream = codec.encode(image)
        np.testing.assert_array_equal(codec.decode(stream), reference)
    finally:
        extras[key] = saved


@pytest.mark.parametrize("name", ["bmshj2017-factorized", "mbt2018-mean", "tcm-hyperprior"])
def test_shipped_weights_real_image_every_quality(name):
    """The shipped weights on a real photograph (kodim23 from samples/) at every quality: decodable, and
    rate and PSNR rising with quality."""
    from pathlib import Path

    from PIL import Image

    if not (weights_dir() / f"{name}.safetensors").exists():
        pytest.skip(f"no shipped weights for {name}")
    image = np.asarray(Image.open(Path(__file__).parent.parent / "samples" / "kodak" / "kodim23.png").convert("RGB"))
    sizes, psnrs = [], []
    qualities = get_codec(name, device="cpu").model.num_qualities
    assert qualities >= 6
    for quality in range(1, qualities + 1):
        q_codec = get_codec(name, quality=quality, device="cpu")
        stream = q_codec.encode(image)
        decoded = q_codec.decode(stream)
        mse = float(((decoded.astype(np.float64) - image) ** 2).mean())
        sizes.append(len(stream))
        psnrs.append(10 * np.log10(255**2 / mse))
    assert len(sizes) == qualities
    assert sizes == sorted(sizes) and psnrs == sorted(psnrs), (sizes, psnrs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["factorized", "hyperprior"])
def test_gpu_encoded_stream_decodes_identically_on_cpu(tiny_weights, kind):
    """Where a GPU is present: a stream made on the GPU decodes to the same image on the GPU and the CPU,
    singly and in a batch (entropy parameters never come from device float math)."""
    gpu = CODECS[kind](weights=tiny_weights[kind], device="cuda", quality=6)
    cpu = CODECS[kind](weights=tiny_weights[kind], device="cpu", quality=6)
    images = [smooth_image(s, 96, 128) for s in range(4)]
    streams = gpu.encode_batch(images)
    for stream, on_gpu, on_cpu in zip(streams, gpu.decode_batch(streams), cpu.decode_batch(streams)):
        np.testing.assert_array_equal(on_gpu, on_cpu)
        np.testing.assert_array_equal(cpu.decode(stream), on_cpu)


@pytest.mark.parametrize("kind", ["factorized", "hyperprior"])
def test_fast_precision_decodes_the_same_stream_within_one_level(tiny_weights, kind):
    """precision="fast" (float32 synthesis) reads the same stream; pixels differ from "exact" by <= 1 level."""
    exact = CODECS[kind](weights=tiny_weights[kind], device="cpu", quality=5)
    fast = CODECS[kind](weights=tiny_weights[kind], device="cpu", quality=5, precision="fast")
    image = smooth_image(8, 64, 96)
    stream = exact.encode(image)
    assert fast.encode(image) == stream  # precision is a decode option, never part of the stream
    diff = np.abs(fast.decode(stream).astype(int) - exact.decode(stream).astype(int))
    assert diff.max() <= 1
    with pytest.raises(InvalidParameterError):
        CODECS[kind](weights=tiny_weights[kind], precision="half")


@pytest.mark.parametrize("kind", ["factorized", "factorized-pq", "hyperprior"])
def test_damaged_streams_raise_bitstream_errors_or_decode_to_the_declared_size(tiny_weights, kind):
    """Cut and bit-flipped streams fail the container; payloads altered behind its checksum raise a BitstreamError
    or decode to an image of the declared size, never another exception (see assert_damaged_streams_refused)."""
    codec = CODECS[kind](weights=tiny_weights[kind], device="cpu", quality=5, tile=64)
    assert_damaged_streams_refused(codec, smooth_image(11, 70, 90))  # 2 x 2 tiles


@pytest.mark.parametrize("kernel", [5, 3])
def test_subpixel_deconvolution_is_the_same_function(kernel):
    """The float64 decoder's sub-pixel form of a stride-2 transposed convolution computes the same output."""
    from nicbeam.nn.layers import SubpixelConvTranspose2d, deconv

    torch.manual_seed(kernel)
    layer = deconv(8, 20, kernel=kernel).double()
    x = torch.randn(2, 8, 7, 9, dtype=torch.float64)
    with torch.no_grad():
        expected, got = layer(x), SubpixelConvTranspose2d.from_deconv(layer)(x)
    assert got.shape == expected.shape == (2, 20, 14, 18)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="stride-2"):
        SubpixelConvTranspose2d.from_deconv(torch.nn.ConvTranspose2d(8, 4, 5, stride=1, padding=2))


@pytest.mark.parametrize("name", ["bmshj2017-factorized", "mbt2018-mean", "tcm-hyperprior"])
def test_exact_decoder_pixels_match_a_plain_float64_synthesis(name):
    """The exact decoder (float64 g_s, wide deconvolutions in sub-pixel form) gives the pixels a plain float64
    copy of the model gives for the same latents."""
    import copy

    if not (weights_dir() / f"{name}.safetensors").exists():
        pytest.skip(f"no shipped weights for {name}")
    codec = get_codec(name, quality=6, device="cpu")
    assert any(type(m).__name__ == "SubpixelConvTranspose2d" for m in codec.synthesis_model.g_s.modules())
    plain = copy.deepcopy(codec.model).double().eval()
    torch.manual_seed(0)
    y_hat = torch.round(torch.randn(1, plain.M, 8, 12, dtype=torch.float64) * 3)
    quality = torch.tensor([5])
    with torch.no_grad():
        ours = codec.synthesis_model.synthesis(y_hat, quality)
        reference = plain.synthesis(y_hat, quality)
    to_u8 = lambda t: torch.round(t.clamp(0, 1) * 255)  # noqa: E731
    assert torch.equal(to_u8(ours), to_u8(reference))
    assert float((ours - reference).abs().max()) < 1e-10
