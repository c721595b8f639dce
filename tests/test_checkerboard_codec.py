"""ckbd-hyperprior (checkerboard context model): exact entropy parameters of both passes across threads and
batches, integer networks against the float model, the compact context kernel, the context lowering the
non-anchor rate, widened warm starts; tiny models exported for real. What it shares with the other context
models (round trips, tampered streams, refine, `nicbeam train`) is in test_context_hyperprior_codecs.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from nicbeam.codecs.learned.checkerboard import CheckerboardHyperpriorCodec  # noqa: E402
from nicbeam.entropy.checkerboard_net import y_hat_fixed_point  # noqa: E402
from nicbeam.entropy.integer_net import scale_table  # noqa: E402
from nicbeam.nn.checkerboard import CheckerboardHyperprior, anchor_mask  # noqa: E402
from nicbeam.training.export import write_weights  # noqa: E402
from nicbeam.training.registry import build_model  # noqa: E402
from tests.learned_helpers import (  # noqa: E402
    TINY_CONTEXT_CONFIGS, range_coded_bytes, rate_trained_codec, smooth_field, tiny_context_model,
)

TINY = TINY_CONTEXT_CONFIGS["ckbd-hyperprior"]


def _tiny_model(seed: int) -> CheckerboardHyperprior:
    return tiny_context_model("ckbd-hyperprior", seed)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny-ckbd.safetensors"
    write_weights(_tiny_model(0), path, calibration=torch.rand(2, 3, 64, 64))
    return path


#: one torch intra-op thread unless a test asks for more (CI has 2 cores shared with other work)
pytestmark = pytest.mark.usefixtures("torch_threads")


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


def test_integer_parameters_follow_the_float_model(tiny_weights):
    """The quantised networks compute the float model's entropy parameters up to their quantisation error."""
    codec = CheckerboardHyperpriorCodec(weights=tiny_weights, device="cpu", quality=3, tile=64)
    net = codec.bundle.extras["int_ckbd"]
    model = _tiny_model(0).eval()  # the float networks the weights were exported from
    x = torch.stack([smooth_field(s, 64, 128) for s in range(2)])
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
    codec, y, z = rate_trained_codec("ckbd-hyperprior", ("h_s.", "context.", "entropy_parameters."),
                                     tmp_path / "ctx.safetensors")
    net, tables = codec.bundle.extras["int_ckbd"], codec.bundle.extras["g_tables"]
    h = net.hyper(z)
    anchors = anchor_mask(*y.shape[-2:])[0, 0]
    means_a, _ = net.anchor_parameters(h, anchors)
    anchor_y_hat = y_hat_fixed_point(torch.round(y[:, :, anchors] - means_a).long(), means_a)
    y_other = y[:, :, ~anchors]

    def coded_bytes(means: torch.Tensor, idx: torch.Tensor) -> int:
        return range_coded_bytes(torch.round(y_other - means), idx, tables)

    with_context = coded_bytes(*net.non_anchor_parameters(h, anchors, anchor_y_hat))
    hyperprior_only = coded_bytes(*net.anchor_parameters(h, ~anchors))
    # measured: 2780 vs 5632 bytes here; nearby settings (gains x20-x50, 30-50 steps, LR 3e-3, 1/16 fields)
    # gave 14-47 % fewer bytes with the context
    assert with_context < 0.9 * hyperprior_only, (with_context, hyperprior_only)


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
    x = torch.stack([smooth_field(s, 64, 128) for s in range(2)])
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
