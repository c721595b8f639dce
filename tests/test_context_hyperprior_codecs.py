"""The context-model hyperprior codecs (``ckbd-hyperprior``: checkerboard; ``charm-hyperprior``: channel-wise
slices), each on a tiny model exported for real: round trips at odd sizes with the decoder's latents equal to
the encoder's, identical streams and images across threads and batches, escapes, refine, tampered streams,
missing weights, warm start from mbt2018-mean and a `nicbeam train` smoke run. What is particular to one
model (its integer networks against the float one, its context lowering the rate) is in its own test file."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from nicbeam.codecs import container  # noqa: E402
from nicbeam.codecs.errors import CodecError  # noqa: E402
from nicbeam.codecs.learned.channel_context import ChannelContextHyperpriorCodec  # noqa: E402
from nicbeam.codecs.learned.checkerboard import CheckerboardHyperpriorCodec  # noqa: E402
from nicbeam.codecs.registry import get_codec  # noqa: E402
from nicbeam.training.export import write_weights  # noqa: E402
from nicbeam.training.registry import build_model  # noqa: E402
from tests.learned_helpers import (  # noqa: E402
    TINY_CONTEXT_CONFIGS, assert_damaged_streams_refused, assert_identical_across_threads_and_batches, narrow_tables,
    smooth_image, tiny_context_model,
)

#: family -> (codec class, tiny model config, the config's extra --model-arg flags for `nicbeam train`)
FAMILIES = {
    "ckbd-hyperprior": (CheckerboardHyperpriorCodec, TINY_CONTEXT_CONFIGS["ckbd-hyperprior"], []),
    "charm-hyperprior": (ChannelContextHyperpriorCodec, TINY_CONTEXT_CONFIGS["charm-hyperprior"],
                         ["--model-arg", "slices=3", "--model-arg", "hidden=16"]),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_weights(request, tmp_path_factory):
    """(family, codec class, path of a tiny exported weights file)."""
    family = request.param
    path = tmp_path_factory.mktemp("w") / f"tiny-{family}.safetensors"
    write_weights(tiny_context_model(family, 0), path, calibration=torch.rand(2, 3, 64, 64))
    return family, FAMILIES[family][0], path


#: one torch intra-op thread unless a test asks for more (CI has 2 cores shared with other work)
pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.mark.parametrize("h,w", [(1, 1), (37, 53), (70, 90)])
def test_round_trip_real_bytes_odd_sizes(family_weights, h, w):
    family, codec_class, weights = family_weights
    codec = codec_class(weights=weights, device="cpu", quality=2, tile=64)
    image = smooth_image(h + w, h, w)
    stream = codec.encode(image)
    header, payload = container.unpack(stream)
    assert header.codec == family and header.model_digest == codec.model_digest and len(payload) > 5
    decoded = codec.decode(stream)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    # the decoder's latents (every pass) are exactly the encoder's
    stream2, latents = codec.encode_with_latents(image)
    assert stream2 == stream
    decoded_latents = codec.decode_latents(stream)
    np.testing.assert_array_equal(decoded_latents.y_symbols, latents.y_symbols)
    np.testing.assert_array_equal(decoded_latents.y_hat, latents.y_hat)
    # and the synthesis of those latents is the decoded image
    if len(codec.tiles(h, w)) == 1:
        y_hat = torch.from_numpy(latents.y_hat)[None].double()
        x_hat = codec.synthesis_model.synthesis(y_hat, torch.tensor([1])).clamp(0, 1).mul(255).round().to(torch.uint8)
        np.testing.assert_array_equal(x_hat[0].permute(1, 2, 0).numpy()[:h, :w], decoded)


def test_streams_and_images_identical_across_threads_and_batches(family_weights, torch_threads):
    _, codec_class, weights = family_weights
    codec = codec_class(weights=weights, device="cpu", quality=3, tile=64)
    images = [smooth_image(s, 64, 64) for s in range(6)] + [smooth_image(9, 70, 90)]
    assert_identical_across_threads_and_batches(codec, images, torch_threads)


def test_tampered_and_truncated_streams_raise_bitstream_errors(family_weights):
    _, codec_class, weights = family_weights
    codec = codec_class(weights=weights, device="cpu", quality=2, tile=64)
    assert_damaged_streams_refused(codec, smooth_image(5, 50, 90))  # 1 x 2 tiles


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_missing_weights_is_a_clear_codec_error(tmp_path, monkeypatch, family):
    monkeypatch.setenv("NICBEAM_WEIGHTS_DIR", str(tmp_path))
    codec = get_codec(family, quality=3)
    assert isinstance(codec, FAMILIES[family][0])
    with pytest.raises(CodecError, match=rf"{family}\.safetensors not found.*nicbeam train"):
        codec.encode(smooth_image(0, 16, 16))


def test_refined_streams_decode_with_the_encoders_latents(family_weights):
    """refine=N changes only the encoder: the stream is coded with the exact parameters of the refined latents."""
    _, codec_class, weights = family_weights
    codec = codec_class(weights=weights, device="cpu", quality=3, refine=4)
    image = smooth_image(11, 48, 80)
    stream, latents = codec.encode_with_latents(image)
    assert container.parse_header(stream).params["refine"] == 4
    assert stream != codec_class(weights=weights, device="cpu", quality=3).encode(image)  # refining did something
    decoded = codec.decode_latents(stream)
    np.testing.assert_array_equal(decoded.y_symbols, latents.y_symbols)
    np.testing.assert_array_equal(decoded.y_hat, latents.y_hat)
    assert codec.decode(stream).shape == image.shape


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_warm_start_from_mbt2018_mean_starts_where_it_is(tmp_path, family):
    """--init-from an mbt2018-mean checkpoint of the same N, M copies all of it; with the residual branches at
    zero the context model then computes exactly what mbt2018-mean computes."""
    from nicbeam.training.trainer import TrainConfig, Trainer

    config = FAMILIES[family][1]
    mbt_config = {k: config[k] for k in ("N", "M", "lambdas")}
    torch.manual_seed(3)
    source = build_model("mbt2018-mean", **mbt_config)
    checkpoint = tmp_path / "mbt.pt"
    torch.save({"model": source.state_dict(), "train_config": json.dumps({"family": "mbt2018-mean", "model_config": mbt_config})},
               checkpoint)
    target = Trainer(TrainConfig(family=family, model_config=config, steps=1, crop=64), None, None,
                     tmp_path / "run", log=lambda m: None)
    copied = target.init_from(checkpoint)
    assert set(copied) == set(source.state_dict())
    assert build_model(family, **target.model.config).config == target.model.config == config
    x = torch.rand(2, 3, 64, 128)
    q = torch.tensor([0, 2])
    source.eval()
    target.model.eval()
    with torch.no_grad():
        a, b = source(x, q), target.model(x, q)
    assert torch.equal(a["x_hat"], b["x_hat"])
    for key in ("y", "z"):
        assert torch.equal(a["likelihoods"][key], b["likelihoods"][key])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_cli_train_smoke_and_export(tmp_path, family):
    """`nicbeam train --family F --steps 3` trains, checkpoints, exports; the codec loads the export."""
    from nicbeam.pipelines.cli import main

    codec_class, config, extra_args = FAMILIES[family]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(i, 72, 80)).save(folder / (f"val_{i}.png" if i == 2 else f"train_{i}.png"))
    run = tmp_path / "run"
    args = ["train", "--run-dir", str(run), "--family", family, "--data", str(folder), "--val-glob", "val_*",
            "--lambdas", "0.003,0.03,0.3", "--steps", "3", "--batch", "2", "--crop", "64", "--log-every", "1",
            "--val-every", "3", "--export", "tiny-cli", "--export-dir", str(tmp_path / "w"),
            "--model-arg", "N=16", "--model-arg", "M=24", *extra_args]
    assert main(args) == 0
    log = (run / "train.log").read_text()
    assert "step 3/3" in log and "val step 3" in log
    sidecar = json.loads((tmp_path / "w" / "tiny-cli.json").read_text())
    assert sidecar["family"] == family and sidecar["config"] == config and sidecar["recipe"]["steps_done"] == 3
    codec = codec_class(weights=tmp_path / "w" / "tiny-cli.safetensors", device="cpu", quality=3)
    assert codec.model_digest.hex() == sidecar["sha256"]
    image = smooth_image(4, 40, 50)
    assert codec.decode(codec.encode(image)).shape == image.shape


@pytest.mark.parametrize("key", ["z_tables", "g_tables"])
def test_escaped_latents_decode_exactly(family_weights, key):
    """With tables so narrow that most z or y symbols escape (0 among them), the stream decodes to the very
    latents the full tables give: escaped values are read before they become the next pass's context."""
    _, codec_class, weights = family_weights
    codec = codec_class(weights=weights, device="cpu", quality=3)
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
def test_gpu_encoded_stream_decodes_identically_on_cpu(family_weights):
    """Where a GPU is present: a stream made on the GPU decodes to the same image on the GPU and the CPU,
    singly and in a batch (entropy parameters never come from device float math)."""
    _, codec_class, weights = family_weights
    gpu = codec_class(weights=weights, device="cuda", quality=3)
    cpu = codec_class(weights=weights, device="cpu", quality=3)
    images = [smooth_image(s, 96, 128) for s in range(4)]
    streams = gpu.encode_batch(images)
    for stream, on_gpu, on_cpu in zip(streams, gpu.decode_batch(streams), cpu.decode_batch(streams)):
        np.testing.assert_array_equal(on_gpu, on_cpu)
        np.testing.assert_array_equal(cpu.decode(stream), on_cpu)
