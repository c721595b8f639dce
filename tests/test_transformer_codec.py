"""tcm-hyperprior (CNN-Transformer codec): window attention against a brute-force reference, padding masks,
identity-at-init warm start, and the codec on tiny random models exported through the real export path."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from nicbeam.codecs import container  # noqa: E402
from nicbeam.codecs.errors import CodecError  # noqa: E402
from nicbeam.codecs.learned.transformer.blocks import MixtureBlock, SwinBlock  # noqa: E402
from nicbeam.codecs.learned.transformer.codec import TransformerHyperpriorCodec  # noqa: E402
from nicbeam.codecs.learned.transformer.model import TransformerHyperprior  # noqa: E402
from nicbeam.codecs.registry import get_codec  # noqa: E402
from nicbeam.training.export import write_weights  # noqa: E402
from nicbeam.training.registry import build_model  # noqa: E402
from tests.learned_helpers import (  # noqa: E402
    assert_damaged_streams_refused,
    assert_identical_across_threads_and_batches,
    smooth_image,
)

#: tiny model: window 6 does not divide the /4 and /8 maps of 64-pixel tiles (16 and 8), so the padding
#: masks are exercised by the codec too
TINY = {"N": 16, "M": 24, "lambdas": [0.003, 0.03, 0.3], "window": 6, "heads": 2, "depth": 2}


def _randomise_mixtures(model: TransformerHyperprior, seed: int) -> None:
    """Fresh mixture blocks are the identity (zero merge conv): give them random merges so tests see them act."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".merge." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = TransformerHyperprior(**TINY)
    _randomise_mixtures(model, 1)
    path = tmp_path_factory.mktemp("w") / "tiny-tcm.safetensors"
    write_weights(model, path, calibration=torch.rand(2, 3, 64, 64))
    return path


#: one torch intra-op thread unless a test asks for more (CI has 2 cores shared with other work)
pytestmark = pytest.mark.usefixtures("torch_threads")


def _reference_attention(block: SwinBlock, grid: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Brute force over all valid tokens of the map: token j is a key of token i iff both lie in the same
    (shifted) window of the unrolled frame, ``(p - shift) // window`` equal for rows and for columns."""
    attn, win = block.attn, block.window
    shift = block.shift if (h > win or w > win) else 0
    b, c = grid.shape[0], grid.shape[-1]
    tokens = grid[:, :h, :w].reshape(b, h * w, c)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    same = ((ys[:, None] - shift) // win == (ys[None, :] - shift) // win) & (
        (xs[:, None] - shift) // win == (xs[None, :] - shift) // win)
    rel = (ys[:, None] - ys[None, :] + win - 1) * (2 * win - 1) + (xs[:, None] - xs[None, :] + win - 1)
    rel = rel.clamp(0, (2 * win - 1) ** 2 - 1)  # pairs outside one window are masked anyway
    heads, d = attn.heads, c // attn.heads
    q, k, v = attn.qkv(tokens).reshape(b, h * w, 3, heads, d).permute(2, 0, 3, 1, 4)
    logits = q @ k.transpose(-2, -1) / math.sqrt(d) + attn.bias_table[rel].permute(2, 0, 1)
    logits = logits.masked_fill(~same, float("-inf"))
    out = (torch.softmax(logits, -1) @ v).transpose(1, 2).reshape(b, h * w, c)
    return attn.proj(out).reshape(b, h, w, c)


@pytest.mark.parametrize("h,w,shifted", [(13, 21, False), (13, 21, True), (8, 8, True), (1, 1, True), (3, 17, True)])
def test_window_attention_matches_brute_force_and_ignores_padding(h, w, shifted):
    torch.manual_seed(h * w)
    block = SwinBlock(8, heads=2, window=4, shifted=shifted).double()
    hp, wp = -(-h // 4) * 4, -(-w // 4) * 4
    grid = torch.randn(2, hp, wp, 8, dtype=torch.float64)
    for grad in (False, True):  # PyTorch's fused attention kernel (inference) and the written-out form (training)
        with torch.set_grad_enabled(grad):
            got = block.attend(grid, h, w)[:, :h, :w]
            expected = _reference_attention(block, grid, h, w)
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
            if grad:  # the training form's gradients are the reference's too (weights and bias table)
                weights = [block.attn.qkv.weight, block.attn.bias_table]
                mine = torch.autograd.grad(got.square().sum(), weights)
                ref = torch.autograd.grad(expected.square().sum(), weights)
                for a, r in zip(mine, ref):
                    torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-10)
            assert torch.isfinite(block.attend(grid, h, w)).all()  # padded rows too: no NaN to reach gradients
            # other values in the padding (any magnitude): the valid outputs do not change at all
            for fill in (0.0, 1e4, -1e4):
                other = grid.clone()
                other[:, h:] = fill + torch.randn_like(other[:, h:])
                other[:, :, w:] = fill + torch.randn_like(other[:, :, w:])
                assert torch.equal(block.attend(other, h, w)[:, :h, :w], got)


def test_mixture_block_any_size_and_identity_at_init():
    torch.manual_seed(0)
    block = MixtureBlock(16, heads=2, window=8, shifted=True)
    for h, w in ((1, 1), (5, 19), (24, 16)):
        x = torch.randn(2, 16, h, w)
        assert torch.equal(block(x), x)  # zero merge conv: the identity
    with torch.no_grad():
        block.merge.weight.normal_(0, 0.1)
        x = torch.randn(2, 16, 11, 13)
        y = block(x)
        assert y.shape == x.shape and not torch.allclose(y, x)
        # each image of a batch is processed alone
        torch.testing.assert_close(block(x[1:]), y[1:], rtol=1e-5, atol=1e-6)


def test_family_config_and_warm_start_from_mbt2018_mean(tmp_path):
    """--init-from an mbt2018-mean checkpoint copies every conv, hyperprior, density and gain parameter, and
    the warm-started model computes what the source model computes (fresh mixture blocks are the identity)."""
    from nicbeam.training.data import ImageCache, list_images
    from nicbeam.training.trainer import TrainConfig, Trainer

    model = build_model("tcm-hyperprior", **TINY)
    assert build_model("tcm-hyperprior", **model.config).config == model.config == TINY
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(smooth_image(i, 80, 96)).save(folder / f"train_{i}.png")
    data = {"folder": str(folder), "train_glob": ["*"], "val_glob": []}
    train = ImageCache(list_images(folder, ["*"]))
    mbt_config = {k: TINY[k] for k in ("N", "M", "lambdas")}
    source = Trainer(TrainConfig(family="mbt2018-mean", model_config=mbt_config, steps=2, batch=2, crop=64, data=data),
                     train, None, tmp_path / "mbt", log=lambda m: None)
    source.fit()
    target = Trainer(TrainConfig(family="tcm-hyperprior", model_config=TINY, steps=2, batch=2, crop=64, data=data),
                     train, None, tmp_path / "tcm", log=lambda m: None)
    copied = target.init_from(source.checkpoint_path)
    assert set(copied) == set(source.model.state_dict())  # all of mbt2018-mean, the z density included
    x = torch.rand(2, 3, 64, 128)
    q = torch.tensor([0, 2])
    source.model.eval()
    target.model.eval()
    with torch.no_grad():  # equal up to float32 rounding (the mixture stages' convolutions run channels-last)
        y = source.model.analysis(x, q)
        torch.testing.assert_close(target.model.analysis(x, q), y, rtol=1e-5, atol=1e-5)
        y_hat = torch.round(y)
        torch.testing.assert_close(target.model.synthesis(y_hat, q), source.model.synthesis(y_hat, q), rtol=1e-5, atol=1e-5)
        z_hat = torch.round(source.model.h_a(y))
        assert torch.equal(target.model.h_s(z_hat), source.model.h_s(z_hat))


@pytest.mark.parametrize("h,w", [(1, 1), (37, 53), (70, 90)])
def test_round_trip_real_bytes_odd_sizes(tiny_weights, h, w):
    codec = TransformerHyperpriorCodec(weights=tiny_weights, device="cpu", quality=2, tile=64)
    image = smooth_image(h + w, h, w)
    stream = codec.encode(image)
    header, payload = container.unpack(stream)
    assert header.codec == "tcm-hyperprior" and header.model_digest == codec.model_digest and len(payload) > 5
    decoded = codec.decode(stream)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    if h * w > 1:  # the tiny random model reconstructs something image-dependent, not a constant
        assert decoded.std() > 0
    # the latents the decoder reads are those the encoder coded
    stream2, latents = codec.encode_with_latents(image)
    assert stream2 == stream
    np.testing.assert_array_equal(codec.decode_latents(stream).y_symbols, latents.y_symbols)
    if (h, w) == (37, 53):  # encoder-side refinement (bf16 autocast where fast) runs through the attention too
        refined = TransformerHyperpriorCodec(weights=tiny_weights, device="cpu", quality=2, tile=64, refine=2)
        assert refined.decode(refined.encode(image)).shape == image.shape


def test_decode_identical_across_threads_and_batch(tiny_weights, torch_threads):
    codec = TransformerHyperpriorCodec(weights=tiny_weights, device="cpu", quality=3, tile=64)
    images = [smooth_image(s, 64, 64) for s in range(6)] + [smooth_image(9, 70, 90)]
    assert_identical_across_threads_and_batches(codec, images, torch_threads)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_encoded_stream_decodes_identically_on_cpu(tiny_weights):
    """Where a GPU is present: streams made on the GPU decode to the same images on the GPU and the CPU."""
    gpu = TransformerHyperpriorCodec(weights=tiny_weights, device="cuda", quality=3, tile=64)
    cpu = TransformerHyperpriorCodec(weights=tiny_weights, device="cpu", quality=3, tile=64)
    images = [smooth_image(s, 70, 90) for s in range(3)]
    streams = gpu.encode_batch(images)
    for stream, on_gpu, on_cpu in zip(streams, gpu.decode_batch(streams), cpu.decode_batch(streams)):
        np.testing.assert_array_equal(on_gpu, on_cpu)
        np.testing.assert_array_equal(cpu.decode(stream), on_cpu)


def test_tampered_and_truncated_streams_raise_bitstream_errors(tiny_weights):
    codec = TransformerHyperpriorCodec(weights=tiny_weights, device="cpu", quality=2, tile=64)
    assert_damaged_streams_refused(codec, smooth_image(5, 50, 90))  # 1 x 2 tiles


def test_missing_weights_is_a_clear_codec_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NICBEAM_WEIGHTS_DIR", str(tmp_path))
    codec = get_codec("tcm-hyperprior", quality=3)
    assert isinstance(codec, TransformerHyperpriorCodec)
    with pytest.raises(CodecError, match=r"tcm-hyperprior\.safetensors not found.*nicbeam train"):
        codec.encode(smooth_image(0, 16, 16))


def test_cli_train_smoke_and_export(tmp_path):
    """`nicbeam train --family tcm-hyperprior --steps 3` (bf16 autocast: the attention masks in bfloat16) trains,
    validates, checkpoints, exports; the codec loads the export."""
    import json

    from nicbeam.pipelines.cli import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(i, 72, 80)).save(folder / (f"val_{i}.png" if i == 2 else f"train_{i}.png"))
    run = tmp_path / "run"
    args = ["train", "--run-dir", str(run), "--family", "tcm-hyperprior", "--data", str(folder), "--val-glob", "val_*",
            "--lambdas", "0.003,0.03,0.3", "--steps", "3", "--batch", "2", "--crop", "64", "--log-every", "1",
            "--val-every", "3", "--autocast", "bf16", "--export", "tiny-cli", "--export-dir", str(tmp_path / "w")]
    for key in ("N", "M", "window", "heads", "depth"):
        args += ["--model-arg", f"{key}={TINY[key]}"]
    assert main(args) == 0
    log = (run / "train.log").read_text()
    assert "step 3/3" in log and "val step 3" in log
    sidecar = json.loads((tmp_path / "w" / "tiny-cli.json").read_text())
    assert sidecar["family"] == "tcm-hyperprior" and sidecar["config"] == TINY and sidecar["recipe"]["steps_done"] == 3
    codec = TransformerHyperpriorCodec(weights=tmp_path / "w" / "tiny-cli.safetensors", device="cpu", quality=3)
    assert codec.model_digest.hex() == sidecar["sha256"]
    image = smooth_image(4, 40, 50)
    assert codec.decode(codec.encode(image)).shape == image.shape
