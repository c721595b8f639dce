"""ckbd-hyperprior (checkerboard context model): real bytes at odd sizes, exact entropy parameters across threads
and batches, integer networks against the float model, the context lowering the non-anchor rate, tampered
streams, warm start from mbt2018-mean, and a `nicbeam train` smoke run; tiny models exported for real."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from nicbeam.codecs import container  # noqa: E402
from nicbeam.codecs.errors import BitstreamError, CodecError  # noqa: E402
from nicbeam.codecs.learned.checkerboard import CheckerboardHyperpriorCodec  # noqa: E402
from nicbeam.codecs.registry import get_codec  # noqa: E402
from nicbeam.entropy.checkerboard_net import y_hat_fixed_point  # noqa: E402
from nicbeam.entropy.coder import Encoder  # noqa: E402
from nicbeam.entropy.grouped import encode_grouped  # noqa: E402
from nicbeam.entropy.integer_net import scale_table  # noqa: E402
from nicbeam.nn.checkerboard import CheckerboardHyperprior, anchor_mask  # noqa: E402
from nicbeam.training.export import write_weights  # noqa: E402
from nicbeam.training.registry import build_model  # noqa: E402
from tests.learned_helpers import narrow_tables, smooth_image  # noqa: E402

TINY = {"N": 16, "M": 24, "lambdas": [0.003, 0.03, 0.3]}


def _smooth_field(seed: int, h: int, w: int) -> torch.Tensor:
    """(3, h, w) in [0, 1]: random values on a 1/32 grid, bicubically upsampled (latents, at 1/16, correlated in space)."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, h // 32, w // 32, generator=gen)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)[0]


def _tiny_model(seed: int) -> CheckerboardHyperprior:
    torch.manual_seed(seed)
    model = CheckerboardHyperprior(**TINY)
    with torch.no_grad():  # a fresh residual branch is zero (context unused): give it weights so tests see it act
        model.entropy_parameters[-1].weight.normal_(0, 0.05)
        model.gain.mul_(20.0)  # latents of a few units, so that every scale index range is exercised
    return model


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny-ckbd.safetensors"
    write_weights(_tiny_model(0), path, calibration=torch.rand(2, 3, 64, 64))
    return path


#: one torch intra-op thread unless a test asks for more (CI has 2 cores shared with other work)
pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.mark.parametrize("h,w", [(1, 1), (37, 53), (70, 90)])
def test_round_trip_real_bytes_odd_sizes(tiny_weights, h, w):
    codec = CheckerboardHyperpriorCodec(weights=tiny_weights, device="cpu", quality=2, tile=64)
    image = smooth_image(h + w, h, w)
    stream = codec.encode(image)
    header, payload = container.unpack(stream)
    assert header.codec == "ckbd-hyperprior" and header.model_digest == codec.model_digest and len(payload) > 5
    decoded = codec.decode(stream)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    # the decoder's latents (both passes) are exactly the encoder's
    stream2, latents = codec.encode_with_latents(image)
    assert stream2 == stream
    decoded_latents = codec.decode_latents(stream)
    np.testing.assert_array_equal(decoded_latents.y_symbols, latents.y_symbols)
    np.testing.assert_array_equal(decoded_latents.y_hat, latents.y_hat)
    # and the synthesis of those latents is the decoded image
    model = codec.synthesis_model
    y_hat = torch.from_numpy(latents.y_hat)[None].double()
    if len(codec.tiles(h, w)) == 1:
        x_hat = model.synthesis(y_hat, torch.tensor([1])).clamp(0, 1).mul(255).round().to(torch.uint8)
        np.testing.assert_array_equal(x_hat[0].permute(1, 2, 0).numpy()[:h, :w], decoded)


def test_entropy_parameters_exact_across_threads_and_batch(tiny_weights, torch_threads):
    codec = CheckerboardHyperpriorCodec(weights=tiny_weights, device="cpu", quality=3, tile=64)
    net = codec.bundle.extras["int_ckbd"]
    gen = torch.Generator().manual_seed(1)
    z = torch.randint(-6, 7, (6, 16, 2, 3), generator=gen).double()
    anchors = anchor_mask(8, 12)[0, 0]

    symbols = torch.randint(-20, 21, (6, 24, 48), generator=gen)  # anchors' symbols: 48 of 8 x 12 positions

    def both_passes(zz: torch.Tensor, sym: torch.Tensor):
        h = net.hyper(zz)
        means_a, idx_a = net.anchor_parameters(h, anchors)
        return (means_a, idx_a, *net.non_anchor_parameters(h, anchors, y_hat_fixed_point(sym, means_a)))

    torch_threads(1)
    reference = both_passes(z, symbols)
    singles = [both_passes(z[i : i + 1], symbols[i : i + 1]) for i in range(6)]
    torch_threads(2)
    for got in (both_passes(z, symbols), tuple(torch.cat(p) for p in zip(*singles))):
        for a, b in zip(reference, got):
            assert torch.equal(a, b)
    means_n, idx_n = reference[2:]
    assert torch.equal(means_n * 256, torch.round(means_n * 256)) and int(idx_n.max()) < len(scale_table())
    # the gathered context (12 taps, non-anchor positions only) is the full masked 5x5 convolution, exactly
    grid = torch.zeros((6, 24, 8, 12), dtype=torch.int64)
    grid[:, :, anchors] = symbols * 256 + 77
    assert len(net.taps) == 12
    assert torch.equal(net.context_at(grid.double(), ~anchors), net.ctx(grid)[:, :, ~anchors])
    # the context is used: other anchors give other non-anchor parameters
    h = net.hyper(z)
    means_a, _ = net.anchor_parameters(h, anchors)
    shifted = net.non_anchor_parameters(h, anchors, y_hat_fixed_point(torch.full(means_a.shape, 5), means_a))
    assert not torch.equal(shifted[0], means_n)

    # whole streams: 1 thread one by one == 2 threads in a batch; decoded images equal
    images = [smooth_image(s, 64, 64) for s in range(6)] + [smooth_image(9, 70, 90)]
    torch_threads(1)
    streams_1 = [codec.encode(im) for im in images]
    reference_images = [codec.decode(s) for s in streams_1]
    torch_threads(2)
    assert codec.encode_batch(images) == streams_1
    for ref, batched in zip(reference_images, codec.decode_batch(streams_1)):
        np.testing.assert_array_equal(ref, batched)


def test_integer_parameters_follow_the_float_model(tiny_weights):
    """The quantised networks compute the float model's entropy parameters up to their quantisation error."""
    codec = CheckerboardHyperpriorCodec(weights=tiny_weights, device="cpu", quality=3, tile=64)
    net = codec.bundle.extras["int_ckbd"]
    model = _tiny_model(0).eval()  # the float networks the weights were exported from
    x = torch.stack([_smooth_field(s, 64, 128) for s in range(2)])
    with torch.no_grad():
        q = torch.tensor([2, 1])
        y = model.analysis(x, q)
        z = torch.round(model.h_a(y))
        means_f, log_scales_f, anchors = model.checkerboard_parameters(y, model.h_s(z))
    anchors = anchors[0, 0]
    h = net.hyper(z)
    means_a, idx_a = net.anchor_parameters(h, anchors)
    symbols = torch.round(y[:, :, anchors] - means_a).long()
    means_n, idx_n = net.non_anchor_parameters(h, anchors, y_hat_fixed_point(symbols, means_a))
    log_table = np.log(scale_table())
    for means, idx, where in ((means_a, idx_a, anchors), (means_n, idx_n, ~anchors)):
        assert float((means - means_f[:, :, where]).abs().max()) < 0.05
        # scale index bins are 0.105 wide in ln(scale): within one bin of the float log-scale
        ls_f = log_scales_f[:, :, where].clamp(float(log_table[0]), float(log_table[-1]))
        assert float((torch.from_numpy(log_table)[idx] - ls_f).abs().max()) < 0.2


def test_context_kernel_is_stored_as_its_taps_and_loads_identically(tiny_weights):
    """The weights file keeps only the context's 12 non-zero taps (checkerboard mask: odd dy + dx); loading
    rebuilds the identical kernel, and a file with the full 5x5 kernel (the earlier layout) loads the same."""
    from safetensors.torch import load_file

    from nicbeam.entropy.checkerboard_net import IntegerCheckerboard

    tensors = load_file(str(tiny_weights))
    assert "int_hs.ctx.0.weight" not in tensors
    offsets = tensors["int_hs.ctx.0.tap_offsets"].tolist()
    assert len(offsets) == 12 and all((ky - 2 + kx - 2) % 2 == 1 for ky, kx in offsets)
    assert tensors["int_hs.ctx.0.taps"].shape == (2 * TINY["M"], 12, TINY["M"])
    net = IntegerCheckerboard.from_tensors(tensors, "int_hs.", TINY["M"])
    assert net.ctx.w0.shape == (2 * TINY["M"], TINY["M"], 5, 5)
    full = net.tensors("int_hs.")  # compact again: same tensors as the file
    assert all(torch.equal(full[k], tensors[k]) for k in full if k.startswith("int_hs.ctx."))
    legacy = {k: v for k, v in tensors.items() if not k.startswith("int_hs.ctx.0.ta") and k != "int_hs.ctx.0.kernel_size"}
    legacy["int_hs.ctx.0.weight"] = net.ctx.w0.to(torch.int16)
    old = IntegerCheckerboard.from_tensors(legacy, "int_hs.", TINY["M"])
    assert old.taps == net.taps and torch.equal(old.tap_weight, net.tap_weight)
    bad = dict(tensors, **{"int_hs.ctx.0.tap_offsets": tensors["int_hs.ctx.0.tap_offsets"] + 5})
    with pytest.raises(ValueError, match="tap offsets"):
        IntegerCheckerboard.from_tensors(bad, "int_hs.", TINY["M"])


def test_context_lowers_the_non_anchor_rate(tmp_path):
    """Entropy model (h_s, context, entropy parameters) of a tiny model trained 50 steps on the rate of smooth
    images: the non-anchors, range-coded for real, take fewer bytes with their context than the same latents
    coded with the hyperprior's parameters alone (the anchors' pass)."""
    torch.manual_seed(0)
    model = CheckerboardHyperprior(**TINY)
    with torch.no_grad():
        model.gain.mul_(30.0)  # latents of about a unit (a random analysis transform gives ~0.05)
    trained = [p for n, p in model.named_parameters() if n.startswith(("h_s.", "context.", "entropy_parameters."))]
    opt = torch.optim.Adam(trained, lr=5e-3)
    model.train()
    for step in range(50):
        x = torch.stack([_smooth_field(step * 4 + i, 64, 64) for i in range(4)])
        out = model(x, torch.randint(0, 3, (4,), generator=torch.Generator().manual_seed(step)))
        bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
        opt.zero_grad()
        (bits / x[:, 0].numel()).backward()
        opt.step()
    path = tmp_path / "ctx.safetensors"
    write_weights(model, path, calibration=torch.stack([_smooth_field(1000 + i, 64, 64) for i in range(2)]))
    codec = CheckerboardHyperpriorCodec(weights=path, device="cpu", quality=3, tile=256)
    net, tables = codec.bundle.extras["int_ckbd"], codec.bundle.extras["g_tables"]
    x = torch.stack([_smooth_field(5000 + i, 256, 256) for i in range(2)])
    with torch.no_grad():
        y = codec.model.analysis(x, torch.full((2,), 2))
        z = torch.round(codec.model.h_a(y))
    h = net.hyper(z)
    anchors = anchor_mask(*y.shape[-2:])[0, 0]
    means_a, _ = net.anchor_parameters(h, anchors)
    anchor_y_hat = y_hat_fixed_point(torch.round(y[:, :, anchors] - means_a).long(), means_a)
    y_other = y[:, :, ~anchors]

    def coded_bytes(means: torch.Tensor, idx: torch.Tensor) -> int:
        enc = Encoder()
        encode_grouped(enc, torch.round(y_other - means).long().numpy().ravel(), idx.numpy().ravel(), tables)
        return len(enc.finish())

    with_context = coded_bytes(*net.non_anchor_parameters(h, anchors, anchor_y_hat))
    hyperprior_only = coded_bytes(*net.anchor_parameters(h, ~anchors))
    # measured: 2780 vs 5632 bytes here; nearby settings (gains x20-x50, 30-50 steps, LR 3e-3, 1/16 fields)
    # gave 14-47 % fewer bytes with the context
    assert with_context < 0.9 * hyperprior_only, (with_context, hyperprior_only)


def test_tampered_and_truncated_streams_raise_bitstream_errors(tiny_weights):
    codec = CheckerboardHyperpriorCodec(weights=tiny_weights, device="cpu", quality=2, tile=64)
    image = smooth_image(5, 50, 90)  # 1 x 2 tiles
    stream = codec.encode(image)
    rng = np.random.default_rng(0)
    for n in (0, 10, len(stream) // 2, len(stream) - 1):
        with pytest.raises(BitstreamError):
            codec.decode(stream[:n])
    for _ in range(10):
        bad = bytearray(stream)
        bad[int(rng.integers(0, len(bad)))] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(BitstreamError):
            codec.decode(bytes(bad))
    # payloads forged behind a rewritten checksum: an error, or an image of the declared size, nothing else
    header, payload = container.unpack(stream)
    for forged in [payload[:n] for n in (0, 1, 5, len(payload) // 2, len(payload) - 1)] + [payload + b"\0" * 4]:
        with pytest.raises(BitstreamError):
            codec.decode(container.pack(header, forged))
        with pytest.raises(BitstreamError):
            codec.decode_latents(container.pack(header, forged))
    others = [bytes(len(payload)), bytes([payload[0]]) + bytes(rng.integers(0, 256, len(payload) - 1, dtype=np.uint8))]
    for _ in range(20):
        flipped = bytearray(payload)
        for pos in rng.integers(1, len(payload), int(rng.integers(1, 4))):
            flipped[int(pos)] ^= 1 << int(rng.integers(0, 8))
        others.append(bytes(flipped))
    for forged in others:
        try:
            decoded = codec.decode(container.pack(header, forged))
        except BitstreamError:
            continue
        assert decoded.shape == image.shape and decoded.dtype == np.uint8


def test_missing_weights_is_a_clear_codec_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NICBEAM_WEIGHTS_DIR", str(tmp_path))
    codec = get_codec("ckbd-hyperprior", quality=3)
    assert isinstance(codec, CheckerboardHyperpriorCodec)
    with pytest.raises(CodecError, match=r"ckbd-hyperprior\.safetensors not found.*nicbeam train"):
        codec.encode(smooth_image(0, 16, 16))


def test_refined_streams_decode_with_the_encoders_latents(tiny_weights):
    """refine=N changes only the encoder: the stream is coded with the exact parameters of the refined latents."""
    codec = CheckerboardHyperpriorCodec(weights=tiny_weights, device="cpu", quality=3, refine=4)
    image = smooth_image(11, 48, 80)
    stream, latents = codec.encode_with_latents(image)
    assert container.parse_header(stream).params["refine"] == 4
    decoded = codec.decode_latents(stream)
    np.testing.assert_array_equal(decoded.y_symbols, latents.y_symbols)
    np.testing.assert_array_equal(decoded.y_hat, latents.y_hat)
    assert codec.decode(stream).shape == image.shape


def test_warm_start_from_mbt2018_mean_starts_where_it_is(tmp_path):
    """--init-from an mbt2018-mean checkpoint of the same N, M copies all of it; with the residual branch at
    zero the checkerboard model then computes exactly what mbt2018-mean computes."""
    from nicbeam.training.trainer import TrainConfig, Trainer

    torch.manual_seed(3)
    source = build_model("mbt2018-mean", **TINY)
    checkpoint = tmp_path / "mbt.pt"
    torch.save({"model": source.state_dict(), "train_config": json.dumps({"family": "mbt2018-mean", "model_config": TINY})},
               checkpoint)
    target = Trainer(TrainConfig(family="ckbd-hyperprior", model_config=TINY, steps=1, crop=64), None, None,
                     tmp_path / "run", log=lambda m: None)
    copied = target.init_from(checkpoint)
    assert set(copied) == set(source.state_dict())
    assert build_model("ckbd-hyperprior", **target.model.config).config == target.model.config == TINY
    x = torch.rand(2, 3, 64, 128)
    q = torch.tensor([0, 2])
    source.eval()
    target.model.eval()
    with torch.no_grad():
        a, b = source(x, q), target.model(x, q)
    assert torch.equal(a["x_hat"], b["x_hat"])
    for key in ("y", "z"):
        assert torch.equal(a["likelihoods"][key], b["likelihoods"][key])


def test_cli_train_smoke_and_export(tmp_path):
    """`nicbeam train --family ckbd-hyperprior --steps 3` trains, checkpoints, exports; the codec loads the export."""
    from nicbeam.pipelines.cli import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(i, 72, 80)).save(folder / (f"val_{i}.png" if i == 2 else f"train_{i}.png"))
    run = tmp_path / "run"
    args = ["train", "--run-dir", str(run), "--family", "ckbd-hyperprior", "--data", str(folder), "--val-glob", "val_*",
            "--lambdas", "0.003,0.03,0.3", "--steps", "3", "--batch", "2", "--crop", "64", "--log-every", "1",
            "--val-every", "3", "--export", "tiny-cli", "--export-dir", str(tmp_path / "w"),
            "--model-arg", "N=16", "--model-arg", "M=24"]
    assert main(args) == 0
    log = (run / "train.log").read_text()
    assert "step 3/3" in log and "val step 3" in log
    sidecar = json.loads((tmp_path / "w" / "tiny-cli.json").read_text())
    assert sidecar["family"] == "ckbd-hyperprior" and sidecar["config"] == TINY and sidecar["recipe"]["steps_done"] == 3
    codec = CheckerboardHyperpriorCodec(weights=tmp_path / "w" / "tiny-cli.safetensors", device="cpu", quality=3)
    assert codec.model_digest.hex() == sidecar["sha256"]
    image = smooth_image(4, 40, 50)
    assert codec.decode(codec.encode(image)).shape == image.shape


@pytest.mark.parametrize("key", ["z_tables", "g_tables"])
def test_escaped_latents_decode_exactly(tiny_weights, key):
    """With tables so narrow that most z or y symbols escape (0 among them), the stream decodes to the very
    latents the full tables give: escaped anchors are read before they become the non-anchors' context."""
    codec = CheckerboardHyperpriorCodec(weights=tiny_weights, device="cpu", quality=3)
    image = smooth_image(7, 64, 128)
    reference = codec.decode_latents(codec.encode(image))
    extras = codec.bundle.extras
    saved = extras[key]
    try:
        extras[key] = narrow_tables(saved, keep=2, first=1)
        got = codec.decode_latents(codec.encode(image))
    finally:
        extras[key] = saved
    np.testing.assert_array_equal(got.y_symbols, reference.y_symbols)
    np.testing.assert_array_equal(got.y_hat, reference.y_hat)
    assert np.abs(reference.y_symbols).max() > 1  # escapes did happen


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_encoded_stream_decodes_identically_on_cpu(tiny_weights):
    """Where a GPU is present: a stream made on the GPU decodes to the same image on the GPU and the CPU,
    singly and in a batch (entropy parameters never come from device float math)."""
    gpu = CheckerboardHyperpriorCodec(weights=tiny_weights, device="cuda", quality=3)
    cpu = CheckerboardHyperpriorCodec(weights=tiny_weights, device="cpu", quality=3)
    images = [smooth_image(s, 96, 128) for s in range(4)]
    streams = gpu.encode_batch(images)
    for stream, on_gpu, on_cpu in zip(streams, gpu.decode_batch(streams), cpu.decode_batch(streams)):
        np.testing.assert_array_equal(on_gpu, on_cpu)
        np.testing.assert_array_equal(cpu.decode(stream), on_cpu)


def test_widened_checkpoint_computes_what_the_source_does_and_warm_starts_everything(tmp_path):
    """nicbeam.training.widen: an mbt2018-mean checkpoint widened M=24 -> 32 reconstructs exactly what it did, at
    almost the same rate; a ckbd-hyperprior with M=32 --init-from it copies every mbt2018-mean tensor."""
    from nicbeam.training.trainer import TrainConfig, Trainer
    from nicbeam.training.widen import widen_checkpoint

    torch.manual_seed(4)
    source = build_model("mbt2018-mean", **TINY).eval()
    with torch.no_grad():
        source.gain.mul_(20.0)  # latents of a few units, not ~0
    checkpoint = tmp_path / "mbt.pt"
    torch.save({"model": source.state_dict(), "train_config": json.dumps({"family": "mbt2018-mean", "model_config": TINY})},
               checkpoint)
    wide_path = widen_checkpoint(checkpoint, tmp_path / "wide" / "checkpoint.pt", 32)
    lineage = json.loads((tmp_path / "wide" / "config.json").read_text())  # what a warm-started run's sidecar follows
    assert lineage["model_config"]["M"] == 32 and lineage["data"]["init_from"] == str(checkpoint.resolve())
    wide_config = {**TINY, "M": 32}
    wide = build_model("mbt2018-mean", **wide_config).eval()
    wide.load_state_dict(torch.load(wide_path, weights_only=True)["model"])
    x = torch.stack([_smooth_field(s, 64, 128) for s in range(2)])
    for q in (0, 2):
        with torch.no_grad():
            a, b = source(x, torch.full((2,), q)), wide(x, torch.full((2,), q))
        assert torch.equal(a["x_hat"], b["x_hat"])
        bits = [float(sum(-torch.log2(v).sum() for v in o["likelihoods"].values())) for o in (a, b)]
        assert abs(bits[1] - bits[0]) < 0.01 * bits[0] + 1, bits  # the 8 new latents cost (almost) nothing
    target = Trainer(TrainConfig(family="ckbd-hyperprior", model_config=wide_config, steps=1, crop=64), None, None,
                     tmp_path / "run", log=lambda m: None)
    assert set(target.init_from(wide_path)) == set(wide.state_dict())
    with pytest.raises(ValueError, match="narrow"):
        widen_checkpoint(checkpoint, tmp_path / "narrow.pt", 16)
