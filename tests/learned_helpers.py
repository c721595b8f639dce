"""Inputs shared by the learned-codec tests: a seeded smooth test image, and table sets so narrow that most
latents take the escape path."""

from __future__ import annotations

import numpy as np

from nicbeam.entropy.coder import TableSet
from nicbeam.entropy.tables import PMF_TOTAL


def smooth_image(seed: int, h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8: per-channel diagonal ramps plus seeded Gaussian noise (sigma 12), like a busy photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * (1 + c) + yy * (3 - c)) % 256 for c in range(3)], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def narrow_tables(tables: TableSet, keep: int, first: int) -> TableSet:
    """A table set coding only the values first..first+keep-1 per row, everything else through the escape path."""
    rows = len(tables)
    pmf = np.zeros((rows, keep + 1), dtype=np.int64)
    pmf[:, :keep] = PMF_TOTAL // (2 * keep)
    pmf[:, keep] = PMF_TOTAL - pmf[:, :keep].sum(axis=1)
    return TableSet(pmf, np.full(rows, keep + 1), np.full(rows, first, dtype=np.int64))


#: tiny configurations of the context-model hyperpriors, for tests that export them for real
TINY_CONTEXT_CONFIGS = {
    "ckbd-hyperprior": {"N": 16, "M": 24, "lambdas": [0.003, 0.03, 0.3]},
    "charm-hyperprior": {"N": 16, "M": 24, "lambdas": [0.003, 0.03, 0.3], "slices": 3, "hidden": 16},
}


def tiny_context_model(family: str, seed: int):
    """A tiny model of a context-model family whose context acts (its zero-initialised residual branches get
    weights) and whose latents are a few units (so that every scale index range is exercised)."""
    import torch

    from nicbeam.training.registry import build_model

    torch.manual_seed(seed)
    model = build_model(family, **TINY_CONTEXT_CONFIGS[family])
    with torch.no_grad():
        last_layers = ([model.entropy_parameters[-1]] if family == "ckbd-hyperprior"
                       else [t[-1] for t in model.slice_transforms])
        for layer in last_layers:
            layer.weight.normal_(0, 0.05)
        model.gain.mul_(20.0)
    return model


def smooth_field(seed: int, h: int, w: int):
    """(3, h, w) in [0, 1]: random values on a 1/32 grid, bicubically upsampled (latents, at 1/16, correlated in space)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, h // 32, w // 32, generator=gen)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)[0]


def rate_trained_codec(family: str, prefixes: tuple[str, ...], path, steps: int = 50):
    """(codec, y, z): a tiny model of ``family`` whose parameters named ``prefixes*`` (its entropy model) were
    trained ``steps`` Adam steps (LR 5e-3) on the rate alone of smooth fields at random qualities (latents of about
    a unit), exported to ``path`` and loaded as its codec (quality 3); with the latents ``y`` and rounded
    hyper-latents ``z`` of two other 256x256 smooth fields at that quality, for coding them for real."""
    import torch

    from nicbeam.codecs.registry import get_codec
    from nicbeam.training.export import write_weights
    from nicbeam.training.registry import build_model

    torch.manual_seed(0)
    model = build_model(family, **TINY_CONTEXT_CONFIGS[family])
    with torch.no_grad():
        model.gain.mul_(30.0)  # latents of about a unit (a random analysis transform gives ~0.05)
    trained = [p for n, p in model.named_parameters() if n.startswith(prefixes)]
    opt = torch.optim.Adam(trained, lr=5e-3)
    model.train()
    for step in range(steps):
        x = torch.stack([smooth_field(step * 4 + i, 64, 64) for i in range(4)])
        out = model(x, torch.randint(0, 3, (4,), generator=torch.Generator().manual_seed(step)))
        bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
        opt.zero_grad()
        (bits / x[:, 0].numel()).backward()
        opt.step()
    write_weights(model, path, calibration=torch.stack([smooth_field(1000 + i, 64, 64) for i in range(2)]))
    codec = get_codec(family, weights=path, device="cpu", quality=3, tile=256)
    x = torch.stack([smooth_field(5000 + i, 256, 256) for i in range(2)])
    with torch.no_grad():
        y = codec.model.analysis(x, torch.full((2,), 2))
        z = torch.round(codec.model.h_a(y))
    return codec, y, z


def range_coded_bytes(symbols, indices, tables) -> int:
    """Bytes of ``symbols`` range-coded with the Gaussian table of each one's scale index (the codecs' layout)."""
    from nicbeam.entropy.coder import Encoder
    from nicbeam.entropy.grouped import encode_grouped

    enc = Encoder()
    encode_grouped(enc, symbols.long().numpy().ravel(), indices.numpy().ravel(), tables)
    return len(enc.finish())


def assert_identical_across_threads_and_batches(codec, images, set_threads) -> None:
    """Streams of ``images`` encoded one by one on 1 thread equal ``encode_batch`` on 2 threads, and their decodes
    on 1 thread equal ``decode_batch`` and single decodes on 2 threads (``set_threads``: the torch setter)."""
    set_threads(1)
    streams = [codec.encode(im) for im in images]
    reference = [codec.decode(s) for s in streams]
    set_threads(2)
    assert codec.encode_batch(images) == streams
    for ref, batched, single in zip(reference, codec.decode_batch(streams), [codec.decode(s) for s in streams]):
        np.testing.assert_array_equal(ref, batched)
        np.testing.assert_array_equal(ref, single)


def assert_damaged_streams_refused(codec, image: np.ndarray, seed: int = 0) -> dict[str, int]:
    """The learned codecs' contract on damaged input, checked on a stream of ``image``:

    * a cut stream, or one with a flipped bit, fails the container (its length or checksum): BitstreamError;
    * payloads altered *behind* the container (header and checksum rewritten, as a forger could): truncated or
      extended ones raise BitstreamError from ``decode`` and ``decode_latents``; zeroed, random and 1-3-byte-flipped
      ones raise BitstreamError or decode to an image of the declared size, never another exception.

    Returns how many of the latter raised and how many decoded."""
    import pytest

    from nicbeam.codecs import container
    from nicbeam.codecs.errors import BitstreamError

    stream = codec.encode(image)
    rng = np.random.default_rng(seed)
    for n in (0, 10, len(stream) // 2, len(stream) - 1):
        with pytest.raises(BitstreamError):
            codec.decode(stream[:n])
    for _ in range(10):
        bad = bytearray(stream)
        bad[int(rng.integers(0, len(bad)))] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(BitstreamError):
            codec.decode(bytes(bad))
    header, payload = container.unpack(stream)
    refused = [payload[:n] for n in (0, 1, 2, 5, len(payload) // 2, len(payload) - 1)]
    refused += [payload + bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in (1, 4, 64)]
    for forged in refused:
        with pytest.raises(BitstreamError):
            codec.decode(container.pack(header, forged))
        with pytest.raises(BitstreamError):
            codec.decode_latents(container.pack(header, forged))
    others = [bytes(len(payload)), bytes(rng.integers(0, 256, len(payload), dtype=np.uint8))]
    for _ in range(30):
        flipped = bytearray(payload)
        for pos in rng.integers(0, len(payload), int(rng.integers(1, 4))):
            flipped[int(pos)] ^= 1 << int(rng.integers(0, 8))
        others.append(bytes(flipped))
    outcomes = {"error": 0, "image": 0}
    for forged in others:
        try:
            decoded = codec.decode(container.pack(header, forged))
        except BitstreamError:
            outcomes["error"] += 1
            continue
        assert decoded.shape == image.shape and decoded.dtype == np.uint8
        outcomes["image"] += 1
    return outcomes
