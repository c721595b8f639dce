"""charm-hyperprior (channel-wise context, Minnen & Singh 2020): exact slice parameters across threads and batches,
the integer networks against the float model, the context lowering the rate of the later slices, and the weights
file's layout; tiny models exported for real. Round trips, tampered streams, refine, warm start and
`nicbeam train` are in test_context_hyperprior_codecs.py."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nicbeam.codecs.learned.channel_context import ChannelContextHyperpriorCodec  # noqa: E402
from nicbeam.entropy.channel_context_net import IntegerChannelContext  # noqa: E402
from nicbeam.entropy.integer_net import mean_scale_from_accumulator, scale_table, y_hat_fixed_point  # noqa: E402
from nicbeam.nn.channel_context import ChannelContextHyperprior  # noqa: E402
from nicbeam.training.export import write_weights  # noqa: E402
from tests.learned_helpers import (  # noqa: E402
    TINY_CONTEXT_CONFIGS, range_coded_bytes, rate_trained_codec, smooth_field, tiny_context_model,
)

FAMILY = "charm-hyperprior"
TINY = TINY_CONTEXT_CONFIGS[FAMILY]

#: one torch intra-op thread unless a test asks for more (CI has 2 cores shared with other work)
pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny-charm.safetensors"
    write_weights(tiny_context_model(FAMILY, 0), path, calibration=torch.rand(2, 3, 64, 64))
    return path


def _all_slices(net: IntegerChannelContext, z: torch.Tensor, y: torch.Tensor):
    """Every slice's (means, scale indices) for latents ``y``, slice after slice as the codec computes them."""
    h = net.hyper(z)
    decoded, out = h.new_zeros((z.shape[0], 0, *y.shape[-2:])), []
    for i in range(net.slices):
        mu, idx = net.slice_parameters(h, i, decoded)
        decoded = torch.cat([decoded, y_hat_fixed_point(torch.round(y[:, i * net.k : (i + 1) * net.k] - mu), mu)], 1)
        out.append((mu, idx))
    return out


def test_slice_parameters_exact_across_threads_and_batch(tiny_weights, torch_threads):
    net = ChannelContextHyperpriorCodec(weights=tiny_weights, device="cpu", quality=3).bundle.extras["int_charm"]
    assert net.slices == 3 and net.k == 8
    gen = torch.Generator().manual_seed(1)
    z = torch.randint(-6, 7, (6, 16, 2, 3), generator=gen).double()
    y = torch.randn(6, 24, 8, 12, generator=gen) * 8
    torch_threads(1)
    reference = _all_slices(net, z, y)
    singles = [_all_slices(net, z[i : i + 1], y[i : i + 1]) for i in range(6)]
    torch_threads(2)
    batched = _all_slices(net, z, y)
    for i, (mu, idx) in enumerate(reference):
        assert torch.equal(mu, batched[i][0]) and torch.equal(idx, batched[i][1])
        assert torch.equal(mu, torch.cat([s[i][0] for s in singles])) and torch.equal(idx, torch.cat([s[i][1] for s in singles]))
        assert torch.equal(mu * 256, torch.round(mu * 256)) and int(idx.max()) < len(scale_table())
    # the context is used: other earlier slices give other parameters for the later ones
    shifted = _all_slices(net, z, y + 5)
    assert torch.equal(shifted[0][0], reference[0][0]) and not torch.equal(shifted[2][0], reference[2][0])
    with pytest.raises(ValueError, match="needs 8 decoded channels"):
        net.slice_parameters(net.hyper(z), 1, torch.zeros((6, 16, 8, 12), dtype=torch.int64))


def test_integer_parameters_follow_the_float_model(tiny_weights):
    """The quantised networks compute the float model's entropy parameters up to their quantisation error."""
    net = ChannelContextHyperpriorCodec(weights=tiny_weights, device="cpu", quality=3).bundle.extras["int_charm"]
    model = tiny_context_model(FAMILY, 0).eval()  # the float networks the weights were exported from
    x = torch.stack([smooth_field(s, 64, 128) for s in range(2)])
    with torch.no_grad():
        y = model.analysis(x, torch.tensor([2, 1]))
        z = torch.round(model.h_a(y))
        means_f, log_scales_f = model.latent_parameters(y, model.h_s(z))
    log_table = np.log(scale_table())
    k = net.k
    for i, (mu, idx) in enumerate(_all_slices(net, z, y)):
        part = slice(i * k, (i + 1) * k)
        assert float((mu - means_f[:, part]).abs().max()) < 0.05
        # scale index bins are 0.105 wide in ln(scale): within one bin of the float log-scale
        ls_f = log_scales_f[:, part].clamp(float(log_table[0]), float(log_table[-1]))
        assert float((torch.from_numpy(log_table)[idx] - ls_f).abs().max()) < 0.2


def test_context_lowers_the_rate_of_the_later_slices(tmp_path):
    """Entropy model (h_s, slice transforms) of a tiny model trained 50 steps on the rate of smooth images: the
    slices after the first, range-coded for real, take fewer bytes with their parameters than the same latents
    coded with the hyperprior's parameters alone."""
    codec, y, z = rate_trained_codec(FAMILY, ("h_s.", "slice_transforms."), tmp_path / "ctx.safetensors")
    net, tables = codec.bundle.extras["int_charm"], codec.bundle.extras["g_tables"]
    h = net.hyper(z)
    later = slice(net.k, None)
    hyper_means, hyper_idx = mean_scale_from_accumulator(h, net.hs.out_frac, net.M)

    def coded_bytes(means: torch.Tensor, idx: torch.Tensor) -> int:
        return range_coded_bytes(torch.round(y[:, later] - means), idx, tables)

    slices = _all_slices(net, z, y)[1:]
    with_context = coded_bytes(torch.cat([s[0] for s in slices], 1), torch.cat([s[1] for s in slices], 1))
    hyperprior_only = coded_bytes(hyper_means[:, later], hyper_idx[:, later])
    # measured: 2332 vs 9400 bytes (h_s is trained with the slice transforms on top of it, so its own parameters
    # for the later slices are not their best alone; the test shows the slices' context acts, not its gain)
    assert with_context < 0.9 * hyperprior_only, (with_context, hyperprior_only)


def test_weights_layout_and_slice_count_checks(tiny_weights):
    from safetensors.torch import load_file

    tensors = load_file(str(tiny_weights))
    assert not any(k.startswith(("h_s.", "slice_transforms.")) for k in tensors)  # only the integer networks ship
    net = IntegerChannelContext.from_tensors(tensors, "int_hs.", TINY["M"])
    assert [n.w0.shape[1] for n in net.slice_nets] == [48, 56, 64]  # 2M + i * M/S inputs
    with pytest.raises(ValueError, match="do not divide|does not fit"):
        IntegerChannelContext.from_tensors(tensors, "int_hs.", 32)
    with pytest.raises(ValueError, match="must divide"):
        ChannelContextHyperprior(N=16, M=24, slices=5)
