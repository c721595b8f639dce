"""mlp-dpcm: lossless / near-lossless round trips, the integer predictor's exactness, training-coding agreement,
the rANS lanes, and damaged streams. Tiny weights are made here (random MLP, exported like a trained one)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nicbeam.codecs import container, get_codec  # noqa: E402
from nicbeam.codecs.errors import BitstreamError, CodecError  # noqa: E402
from nicbeam.codecs.predictive import dpcm, wavefront  # noqa: E402
from nicbeam.codecs.predictive import weights as weights_mod  # noqa: E402
from nicbeam.codecs.predictive.intmlp import IntegerPredictor  # noqa: E402
from nicbeam.entropy import rans_lanes  # noqa: E402
from nicbeam.nn.dpcm import MlpDpcm, channel_inputs, discretized_logistic_log2, reference_and_features  # noqa: E402
from nicbeam.training.export import write_weights  # noqa: E402
from tests.forgery import mutated_payloads  # noqa: E402


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A random MLP (hidden 16, 8) exported with calibration, so its predictions and scales vary."""
    torch.manual_seed(0)
    model = MlpDpcm(hidden=(16, 8), downscale=1)
    for mlp in model.mlps:
        out = mlp[-1]
        torch.nn.init.normal_(out.weight, std=0.3)
        out.bias.data = torch.tensor([0.0, 1.5])
    calib = torch.from_numpy(photo(64, 64, 5)).permute(2, 0, 1)[None].float() / 255
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    write_weights(model, path, calib)
    return model, path


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Textured, channel-correlated test image (values reach 0 and 255)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 120 * np.sin(xx / 7.0 + seed) * np.cos(yy / 5.0) + rng.normal(0, 8, (h, w))
    return np.clip(np.stack([base + 15, base, base - 30], -1) + rng.normal(0, 2, (h, w, 3)), 0, 255).astype(np.uint8)


def tiled(rgb: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An image as the wavefront coder takes one group: (tiles, tile, tile, 3) in coding order, heights, widths."""
    image = wavefront.to_coding_order(rgb)
    tiles = wavefront.tile_grid(*rgb.shape[:2], tile)
    src = np.zeros((len(tiles), tile, tile, 3), np.uint8)
    for i, (top, left, th, tw) in enumerate(tiles):
        src[i, :th, :tw] = image[top : top + th, left : left + tw]
    return src, np.array([t[2] for t in tiles]), np.array([t[3] for t in tiles])


def codec(path, **params):
    return get_codec("mlp-dpcm", weights=str(path), **params)


@pytest.mark.parametrize("size", [(1, 1), (1, 2), (2, 1), (8, 9000), (9000, 8), (37, 70)])  # 9000 x 8 as asked
def test_lossless_is_byte_exact(tiny_weights, size):
    image = photo(*size, seed=size[0])
    c = codec(tiny_weights[1], tile=32)
    assert c.lossless
    np.testing.assert_array_equal(c.decode(c.encode(image)), image)


def test_lossless_on_noise_and_extremes(tiny_weights):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (19, 23, 3), dtype=np.uint8)
    flat = np.zeros((9, 11, 3), np.uint8)
    flat[::2] = 255  # residuals of +-255: the modulo-256 wrap
    for image in (noise, flat):
        c = codec(tiny_weights[1], tile=8)
        np.testing.assert_array_equal(c.decode(c.encode(image)), image)


@pytest.mark.parametrize("delta", [1, 4, 7])
def test_near_lossless_bounds_every_sub_pixel(tiny_weights, delta):
    for image in (photo(29, 41, delta), np.random.default_rng(delta).integers(0, 256, (13, 17, 3), dtype=np.uint8)):
        c = codec(tiny_weights[1], delta=delta, tile=16)
        out = c.decode(c.encode(image))
        assert np.abs(out.astype(int) - image.astype(int)).max() <= delta
    assert len(codec(tiny_weights[1], delta=4).encode(photo(64, 64))) < len(codec(tiny_weights[1]).encode(photo(64, 64)))


def test_wavefront_matches_training_features_and_parallel_prediction(tiny_weights):
    """The codec's wavefront contexts equal the training path's teacher-forced ones on every sub-pixel, and the
    integer MLP on all of them at once (a raster-order reference, no wavefront) gives the same predictions."""
    model, path = tiny_weights
    image = photo(24, 29, 3)  # one tile: the training crop's borders are the tile's
    coded = wavefront.to_coding_order(image)
    m = weights_mod.load(path)
    record: list = []
    enc = dpcm._CollectingEncoder()
    wavefront.code_group(m, 0, 32, np.array([24]), np.array([29]), enc,
                         np.pad(coded, ((0, 8), (0, 3), (0, 0)))[None], record)
    x = torch.from_numpy(coded.astype(np.float32)).permute(2, 0, 1)[None]
    ref, neigh = reference_and_features(x)
    seen = np.zeros((3, 24, 29), bool)
    for g, y, xx, c, feats, mean, scale in record:
        want = channel_inputs(x, ref, neigh, c)[0, :, y, xx].T.numpy()
        np.testing.assert_array_equal(feats, want)
        ref_c = want[:, -1] + 128
        f = want.T.astype(m.predictor.dtype)
        partial = m.predictor.first_layer_neighbours(f[:36])
        m2, s2 = m.predictor.channel(c, partial, f[36:38], ref_c.astype(m.predictor.dtype))
        np.testing.assert_array_equal(m2, mean)
        np.testing.assert_array_equal(s2, scale)
        seen[c, y, xx] = True
    assert seen.all()


@pytest.mark.parametrize("tile", [8, 32])
def test_parallel_lossless_encoder_equals_the_wavefront_loop(tiny_weights, tile):
    """The lossless encoder predicts all pixels at once (teacher forcing); the wavefront loop, the decoder's,
    must hand the coder the very same (scale, fraction, symbol) batches."""
    m = weights_mod.load(tiny_weights[1])
    src, heights, widths = tiled(photo(30, 45, 4), tile)
    runs = []
    for parallel in (False, True):
        coll = dpcm._CollectingEncoder()
        wavefront.code_group(m, 0, tile, heights, widths, coll, src, parallel=parallel)
        runs.append(coll.batches)
    assert len(runs[0]) == len(runs[1])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_integer_export_follows_the_float_model(tiny_weights):
    """The coded size is the float model's ideal code length within a few per cent (export fidelity)."""
    model, path = tiny_weights
    image = photo(64, 64, 7)
    px = torch.from_numpy(wavefront.to_coding_order(image).astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        mean, log_scale = model.predict(px)
        ideal_bits = float(-discretized_logistic_log2(px, mean, log_scale).sum())
    actual_bits = 8 * len(container.unpack(codec(path, tile=64).encode(image))[1])
    assert abs(actual_bits - ideal_bits) < 0.03 * ideal_bits + 8 * 4 * 512, (actual_bits, ideal_bits)


def test_streams_do_not_depend_on_batching_lanes_or_blas_threads(tiny_weights, monkeypatch):
    from threadpoolctl import threadpool_limits

    image = photo(45, 77, 2)
    reference = codec(tiny_weights[1], tile=16).encode(image)
    assert codec(tiny_weights[1], tile=16).encode(image) == reference  # deterministic
    monkeypatch.setattr(dpcm, "GROUP_PIXELS", 16 * 16 * 3)  # 3 tiles per batch instead of all 15
    monkeypatch.setattr(dpcm, "MAX_LANES", 7)  # and another lane count: another stream, same image
    other = codec(tiny_weights[1], tile=16).encode(image)
    monkeypatch.undo()
    assert other != reference
    np.testing.assert_array_equal(codec(tiny_weights[1], tile=16).decode(other), image)
    # the integer MLP on BLAS with 1 or 2 threads, on extreme inputs, equals exact int64 arithmetic
    tensors = weights_mod.load(tiny_weights[1]).predictor_tensors
    p = IntegerPredictor(tensors)
    rng = np.random.default_rng(0)
    feats = rng.integers(-255, 256, (39, 3000))
    feats[38] = rng.integers(-128, 128, 3000)  # the reference - 128
    for c in range(3):
        outs = []
        for threads in (1, 2):
            with threadpool_limits(threads, "blas"):
                f = feats.astype(p.dtype)
                outs.append(p.channel(c, p.first_layer_neighbours(f[:36]), f[36:38], f[38] + 128))
        want = integer_reference(tensors, c, feats)
        for got in outs:
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def integer_reference(tensors: dict, c: int, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Channel ``c``'s integer MLP in plain int64 (Python-exact shifts): what the float BLAS path must equal."""
    x = feats.T.astype(np.int64).copy()
    x[:, 36 + c : 38] = 0  # channel c sees only the channels coded before it
    l, h = 0, x
    while f"int.c{c}.l{l}.weight" in tensors:
        acc = h @ tensors[f"int.c{c}.l{l}.weight"].astype(np.int64) + tensors[f"int.c{c}.l{l}.bias"].astype(np.int64).reshape(-1)
        shift = int(tensors[f"int.c{c}.l{l}.shift"].reshape(-1)[0])
        acc = acc >> shift if shift >= 0 else acc << -shift
        last = f"int.c{c}.l{l + 1}.weight" not in tensors
        h = acc if last else np.clip(acc, 0, int(tensors[f"int.c{c}.l{l}.clip"].reshape(-1)[0]))
        l += 1
    ref = feats[38].astype(np.int64) + 128
    return np.clip(ref * 8 + h[:, 0], 0, 2047), np.clip(h[:, 1], 0, 63)


@pytest.mark.parametrize("delta", [0, 2])
def test_compiled_loop_equals_the_numpy_reference_loop(tiny_weights, delta):
    """The numba wavefront kernel hands the coder the same batches and reconstructs the same pixels as the
    numpy loop (encoding), and decodes a stream to the same image (decoding), on partial tiles too."""
    m = weights_mod.load(tiny_weights[1])
    tile = 16
    src, heights, widths = tiled(photo(30, 45, 6), tile)
    runs, recons = [], []
    for compiled in (False, True):
        coll = dpcm._CollectingEncoder()
        recons.append(wavefront.code_group(m, delta, tile, heights, widths, coll, src, compiled=compiled))
        runs.append(coll.batches)
    assert len(runs[0]) == len(runs[1]) > 0
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(recons[0], recons[1])
    smap = m.scale_map(delta)
    enc = rans_lanes.Encoder(m.tables(delta), 64)
    coll.write(enc, smap)
    data = enc.finish()
    decoded = []
    for compiled in (False, True):
        dec = rans_lanes.Decoder(m.tables(delta), data, 64)
        decoded.append(wavefront.code_group(m, delta, tile, heights, widths, dpcm._MappedDecoder(dec, smap), None,
                                            compiled=compiled))
        dec.finish()
    np.testing.assert_array_equal(decoded[0], recons[0])
    np.testing.assert_array_equal(decoded[1], recons[0])


@pytest.mark.parametrize("delta", [0, 3])
def test_slices_decode_alike_on_any_thread_count(tiny_weights, delta):
    """Slices are independent streams: any slice count decodes, and neither the encoder's nor the decoder's
    thread count changes a byte of the stream or a pixel of the image."""
    image = photo(50, 70, 8)
    streams = {}
    for slices in (1, 2, 5, 255):  # 255: capped at the 20 tiles
        for threads in (1, 3):
            streams[slices, threads] = codec(tiny_weights[1], tile=16, slices=slices, delta=delta, threads=threads).encode(image)
        assert streams[slices, 1] == streams[slices, 3]
        for threads in (1, 2, 4):
            out = get_codec("mlp-dpcm", weights=str(tiny_weights[1]), threads=threads).decode(streams[slices, 1])
            assert np.abs(out.astype(int) - image).max() <= delta
            if threads == 1:
                first = out
            np.testing.assert_array_equal(out, first)
    assert len({streams[k, 1] for k in (1, 2, 5)}) == 3


def test_float32_sizing_is_chosen_and_float64_weights_still_decode(tiny_weights, tmp_path):
    """New exports are sized for exact float32 products; a float64-sized export of the same model still codes."""
    model, path = tiny_weights
    assert weights_mod.load(path).predictor.dtype == np.float32
    tensors64 = {k: v for k, v in model.coding_tensors(None, precision="float64").items()}
    from safetensors.torch import save_file

    f64 = tmp_path / "tiny64.safetensors"
    save_file({k: v.contiguous() for k, v in tensors64.items()}, str(f64))
    m64 = weights_mod.load(f64)
    assert m64.predictor.dtype == np.float64
    image = photo(33, 40, 9)
    for delta in (0, 2):
        c64 = codec(f64, delta=delta, tile=16)
        out = c64.decode(c64.encode(image))
        assert np.abs(out.astype(int) - image).max() <= delta


def test_weights_that_could_lose_exactness_are_refused(tiny_weights):
    tensors = dict(weights_mod.load(tiny_weights[1]).predictor_tensors)
    tensors["int.c1.l0.weight"] = np.full(tensors["int.c1.l0.weight"].shape, 2**40, dtype=np.int64)
    with pytest.raises(CodecError, match="exact"):
        IntegerPredictor(tensors)


@pytest.mark.parametrize("delta", [0, 1, 2, 3, 4, 16, 32])
def test_near_lossless_tables_sum_exactly(tiny_weights, delta):
    m = weights_mod.load(tiny_weights[1])
    pmf = weights_mod.near_lossless_pmf(m.pmf, delta)
    assert pmf.shape[1] == weights_mod.alphabet(delta) and (pmf.sum(axis=1) == 1 << 16).all() and pmf.min() >= 1
    widened = m.scale_map(delta, 0, 0.8)
    index = np.arange(len(widened))
    assert (widened >= index).all() and (np.diff(widened) >= 0).all() and (widened < len(index)).all()
    assert (widened == index).all() == (delta == 0)
    np.testing.assert_array_equal(m.scale_map(delta, 2, 0.0)[:-2], index[2:])


@pytest.mark.parametrize("delta", [0, 3])
def test_signalled_scale_correction_never_costs_more_than_none(tiny_weights, monkeypatch, delta):
    image = photo(40, 52, 11)
    chosen = codec(tiny_weights[1], delta=delta).encode(image)
    monkeypatch.setattr(weights_mod, "SCALE_SHIFTS", (0,))
    monkeypatch.setattr(weights_mod, "BETAS", (0.0,))
    plain = codec(tiny_weights[1], delta=delta).encode(image)
    out = codec(tiny_weights[1], delta=delta).decode(plain)
    assert np.abs(out.astype(int) - image).max() <= delta
    assert len(chosen) <= len(plain)


def test_rans_lanes_round_trip_in_chunks():
    rng = np.random.default_rng(4)
    freq = rng.integers(1, 50, (5, 40))
    freq[:, 0] += (1 << 16) - freq.sum(axis=1)
    tables = rans_lanes.Tables(freq)
    batches = [(rng.integers(0, 5, n), rng.integers(0, 40, n)) for n in (1, 9, 30, 3, 0, 17)]
    enc = rans_lanes.Encoder(tables, 8)
    for rows, syms in batches:
        enc.encode(rows, syms)
    dec = rans_lanes.Decoder(tables, enc.finish(), 8)
    for rows, syms in batches:
        np.testing.assert_array_equal(dec.decode(rows), syms)
    dec.finish()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("delta", [0, 2])
def test_mutated_payload_behind_valid_checksum_is_rejected_or_well_formed(tiny_weights, delta):
    image = photo(20, 30, 9)
    c = codec(tiny_weights[1], delta=delta, tile=16)
    header, payload = container.unpack(c.encode(image))
    rejected = 0
    for bad in mutated_payloads(payload, trials=24, seed=5):
        try:
            out = c.decode(container.pack(header, bad))
        except BitstreamError:
            rejected += 1
            continue
        assert out.shape == image.shape and out.dtype == np.uint8
    assert rejected >= 21  # the end-of-stream check (lanes back at 2**16, every word read) catches nearly all


def test_wrong_weights_are_refused(tiny_weights, tmp_path):
    from nicbeam.codecs.errors import ModelMismatchError

    stream = codec(tiny_weights[1]).encode(photo(5, 6))
    torch.manual_seed(1)
    other = tmp_path / "other.safetensors"
    write_weights(MlpDpcm(hidden=(4,), downscale=1), other, None)
    with pytest.raises(ModelMismatchError):
        codec(other).decode(stream)


def test_training_loss_is_bits_per_sub_pixel():
    model = MlpDpcm(hidden=(4,), downscale=2)
    x = torch.from_numpy(photo(32, 32)).permute(2, 0, 1)[None].float() / 255
    out = model(x)
    assert out["pixels"].shape == (1, 3, 16, 16)
    losses = model.rate_distortion_loss(out, x, torch.ones(1))
    assert math.isclose(float(losses["bpp"].detach()), 3 * float(losses["loss"].detach()), rel_tol=1e-6)
    assert 0 < float(losses["loss"].detach()) < 16


def test_shipped_weights_round_trip_and_match_their_sidecar():
    path = weights_mod.resolve_weights(weights_mod.DEFAULT_NAME)
    if not path.exists():
        pytest.skip("no shipped mlp-dpcm weights")
    import hashlib
    import json

    assert hashlib.sha256(path.read_bytes()).hexdigest() == json.loads(path.with_suffix(".json").read_text())["sha256"]
    image = photo(23, 31, 6)
    for delta in (0, 2):
        c = get_codec("mlp-dpcm", delta=delta)
        out = c.decode(c.encode(image))
        assert np.abs(out.astype(int) - image).max() <= delta
