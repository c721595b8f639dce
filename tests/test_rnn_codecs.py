"""RNN codecs after Toderici et al.: the eight registered variants round-trip real bytes, progressive streams
cut exactly, decoding is deterministic across threads and batches, damaged payloads raise BitstreamError,
the integer context model codes what the float one predicts, and the family trains through the Trainer.

Tiny randomly initialised networks, exported to a tmp dir (no shipped weights, no ../shared)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from nicbeam.codecs import container  # noqa: E402
from nicbeam.codecs.errors import BitstreamError, CodecError, PayloadError  # noqa: E402
from nicbeam.codecs.learned.rnn.binarizer import Binarizer  # noqa: E402
from nicbeam.codecs.learned.rnn.bitcoding import decode_context, encode_context  # noqa: E402
from nicbeam.codecs.learned.rnn.cells import CELLS, make_cell  # noqa: E402
from nicbeam.codecs.learned.rnn.codec import VARIANTS  # noqa: E402
from nicbeam.codecs.learned.rnn.context import IntegerBitContext  # noqa: E402
from nicbeam.codecs.learned.rnn.network import RNNCompressionModel  # noqa: E402
from nicbeam.codecs.learned.rnn.progressive import truncate_iterations  # noqa: E402
from nicbeam.codecs.registry import available_codecs, get_codec  # noqa: E402
from nicbeam.pipelines.cli import main  # noqa: E402
from nicbeam.training.data import hardest_patches, png_sizes  # noqa: E402
from nicbeam.training.export import write_weights  # noqa: E402

TINY = {"enc_channels": [8, 12, 16, 16], "dec_channels": [16, 16, 8, 8], "context_hidden": 4, "iterations": 6}


def _image(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * (2 + c) + yy * (3 - c)) % 256 for c in range(3)], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def weights(tmp_path_factory, one_thread):
    """One tiny random network per variant, exported like trained weights (integer context model included)."""
    out = tmp_path_factory.mktemp("rnn-weights")
    paths = {}
    for i, (name, (cell, framing)) in enumerate(VARIANTS.items()):
        torch.manual_seed(i)
        model = RNNCompressionModel(cell=cell, framing=framing, **TINY)
        paths[name] = out / f"{name}.safetensors"
        write_weights(model, paths[name], calibration=torch.rand(2, 3, 48, 48))
    return paths


def _codec(weights, name="rnn-gru-oneshot", **params):
    return get_codec(name, weights=weights[name], device="cpu", **params)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions on 2 threads of a busy 2-core machine spend most of their time waiting; the
    thread-count test switches to 2 explicitly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_all_eight_variants_are_registered_and_round_trip(weights):
    assert set(VARIANTS) <= set(available_codecs()) and len(VARIANTS) == 8
    image = _image(0, 21, 38)  # not a multiple of 16: padded and cropped
    for name in VARIANTS:
        for entropy in ("context", "none"):
            codec = _codec(weights, name, quality=3, entropy=entropy)
            stream = codec.encode(image)
            header, payload = container.unpack(stream)
            assert header.layered and header.codec == name and header.params["quality"] == 3
            assert len(container.unpack_layers(payload)) == 3
            decoded = codec.decode(stream)
            assert decoded.shape == image.shape and decoded.dtype == np.uint8
            # reconstruction equals the network's own k-iteration output (the bits were decoded exactly)
            x = torch.from_numpy(np.pad(image, ((0, 11), (0, 10), (0, 0)), mode="edge")).permute(2, 0, 1)[None] / 255.0
            model = codec.decoder_model
            with torch.no_grad():
                codes, _ = codec.model.run(x, 3)
                ref = model.decode([c.double() for c in codes]).clamp(0, 1).mul(255).round()
            ref = ref[0].permute(1, 2, 0).numpy().astype(np.uint8)[:21, :38]
            assert np.array_equal(decoded, ref), name


def test_raw_bits_are_exactly_32_per_block_and_iteration(weights):
    image = _image(1, 32, 48)  # 2 x 3 blocks
    stream = _codec(weights, quality=4, entropy="none").encode(image)
    _, payload = container.unpack(stream)
    layers = container.unpack_layers(payload)
    assert [len(layer) for layer in layers] == [4 + 6 * 32 // 8] * 4  # u32 tile length + 24 bytes of bits


def test_cut_stream_equals_encode_at_fewer_iterations(weights, tmp_path):
    image = _image(2, 40, 70)
    for entropy in ("context", "none"):
        full = _codec(weights, quality=6, entropy=entropy).encode(image)
        for k in (1, 4):
            direct = _codec(weights, quality=k, entropy=entropy).encode(image)
            assert truncate_iterations(full, k) == direct
            # the generic layer cut keeps quality=6 in the header and still decodes the same pixels
            generic = container.truncate_layers(full, k)
            assert np.array_equal(_codec(weights).decode(generic), _codec(weights).decode(direct))
    src, out = tmp_path / "full.nicb", tmp_path / "cut.nicb"
    src.write_bytes(full)
    assert main(["truncate", str(src), str(out), "--iterations", "2"]) == 0
    assert out.read_bytes() == _codec(weights, quality=2, entropy="none").encode(image)
    assert main(["truncate", str(src), str(out), "--iterations", "7"]) == 2  # more than the stream holds
    src.write_bytes(full[:-3])
    assert main(["truncate", str(src), str(out), "--iterations", "2"]) == 2  # damaged input


def test_target_bpp_keeps_the_iterations_that_fit(weights):
    image = _image(6, 32, 48)  # raw: a layer is 4 + (4 + 24) bytes, the payload 4 + 32 k bytes = 0.0208 + 0.1667 k bpp
    for target, kept in ((0.01, 1), (0.52, 2), (0.53, 3), (5.0, 6)):
        stream = _codec(weights, quality=6, entropy="none", bpp=target).encode(image)
        header, payload = container.unpack(stream)
        assert header.params["quality"] == kept and len(payload) == 4 + 32 * kept
        assert np.array_equal(_codec(weights).decode(stream),
                              _codec(weights).decode(_codec(weights, quality=kept, entropy="none").encode(image)))
    context = _codec(weights, quality=6, bpp=1.0).encode(image)
    assert 8 * container.parse_header(context).payload_length <= 1.0 * 32 * 48


def test_decode_identical_across_threads_batches_and_tiles(weights, threads):
    codec = _codec(weights, "rnn-lstm-residual-scaling", quality=3, tile=64)
    images = [_image(s, 70, 90) for s in range(3)]  # 4 tiles each, edge tiles of 6 / 26 pixels
    streams = codec.encode_batch(images)
    assert streams == [codec.encode(im) for im in images]  # a stream does not depend on its batch
    threads(1)
    single = [codec.decode(s) for s in streams]
    threads(2)
    batched = codec.decode_batch(streams)
    assert all(np.array_equal(a, b) for a, b in zip(single, batched))
    # streams of different iteration counts batch together too
    mixed = codec.decode_batch([streams[0], truncate_iterations(streams[1], 2)])
    assert np.array_equal(mixed[0], single[0])


def test_damaged_streams_raise_bitstream_errors(weights):
    codec = _codec(weights, quality=3)
    image = _image(4, 32, 32)
    stream = codec.encode(image)
    for cut in (len(stream) - 1, len(stream) // 2, 10):
        with pytest.raises(BitstreamError):
            codec.decode(stream[:cut])
    flipped = bytearray(stream)
    flipped[-5] ^= 0x10
    with pytest.raises(BitstreamError):
        codec.decode(bytes(flipped))
    header, payload = container.unpack(stream)
    layers = container.unpack_layers(payload)

    def repack(new_layers, **params):
        h = container.Header(**{**header.__dict__, "params": {**header.params, **params}})
        return container.pack(h, container.pack_layers(new_layers))

    extra_word = container.pack_chunks([container.unpack_chunks(layers[1], 0, 1)[0] + b"\x12\x34\x56\x78"])
    bad = {
        "more layers than quality": repack(layers + layers[:1]),
        "tile blob not whole words": repack([layers[0], container.pack_chunks([b"\x01\x02\x03"]), layers[2]]),
        "data after the last bit": repack([layers[0], extra_word, layers[2]]),
        "two tiles in a one-tile layer": repack([layers[0] + layers[0]] + layers[1:]),
    }
    raw = container.unpack_layers(container.unpack(_codec(weights, quality=2, entropy="none").encode(image))[1])
    bad["raw bits too short"] = repack([raw[0], container.pack_chunks([b"\x00" * 31])], quality=2, entropy="none")
    for reason, data in bad.items():
        with pytest.raises(PayloadError):
            codec.decode(data)
            pytest.fail(reason)


def test_weights_of_another_variant_are_refused(weights):
    with pytest.raises(CodecError, match="lstm"):
        get_codec("rnn-gru-oneshot", weights=weights["rnn-lstm-oneshot"], device="cpu", quality=2).encode(_image(5, 16, 16))


def test_integer_context_model_codes_what_the_float_model_predicts():
    torch.manual_seed(1)
    model = RNNCompressionModel(cell="gru", framing="one-shot", **{**TINY, "iterations": 4})
    with torch.no_grad():  # a context model with real structure: bits repeat their previous iteration
        model.context.prev.weight.normal_(0, 0.5)
        model.context.bias.normal_(0, 1)
    codes = torch.stack(model.eval().run(torch.rand(1, 3, 64, 64), 4)[0], dim=1)  # 1, 4, 32, 4, 4
    ctx = IntegerBitContext.from_float(model.context, codes)
    assert all(float(ctx.cur_w[c, c:].abs().sum()) == 0 for c in range(32))  # causal over channels
    bits = (codes[0] > 0).to(torch.uint8).numpy()
    float_bits = float(model.context.code_length(codes).sum().detach())
    coded = 0
    for t in range(4):
        prev = bits[t - 1] if t else None
        blob = encode_context(ctx, bits[t], prev, t)
        assert np.array_equal(decode_context(ctx, blob, prev, t, bits[t].shape), bits[t])
        coded += 8 * len(blob)
    # integer probabilities and 32-bit word granularity cost little over the float model's estimate
    assert coded <= float_bits * 1.05 + 4 * 64
    float_logits = model.context.logits(codes)[0, 2].double()
    int_logits = (ctx.prev_logits(bits[1].astype(np.int8) * 2 - 1, 2) + ctx.cur_logits(bits[2].astype(np.int8) * 2 - 1))
    assert torch.allclose(int_logits.double() / 256, float_logits, atol=0.05)


def test_cells_and_binarizer():
    x = torch.randn(2, 6, 8, 8)
    for kind in CELLS:
        cell = make_cell(kind, 6, 10, stride=2)
        out, state = cell(x, None)
        out2, _ = cell(x, state)
        assert out.shape == (2, 10, 4, 4) and not torch.equal(out, out2)  # the state carries over
    binarizer = Binarizer(6, 32)
    binarizer.train()
    b = binarizer(x)
    assert set(torch.unique(b.detach()).tolist()) <= {-1.0, 1.0} and b.requires_grad
    binarizer.eval()
    t = torch.tanh(binarizer.proj(x))
    assert torch.equal(binarizer(x), torch.where(t >= 0, 1.0, -1.0))


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_fresh_decoder_depends_on_its_codes(cell):
    """Every cell type starts with a decoder whose output moves when the codes flip (the LSTM and associative
    LSTM gate/key offsets in ``init_biases``): with all-zero biases a fresh LSTM decoder moved by ~1e-4 and
    the associative one by < 3e-11, and their one-shot training never left a grey image."""
    torch.manual_seed(0)
    model = RNNCompressionModel(cell=cell, framing="one-shot").eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert model.code_sensitivity(x) > 1e-3


def test_hardest_patches_and_training_through_nicbeam_train(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    flat = np.full((4, 32, 32, 3), 128, dtype=np.uint8)
    noisy = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    patches = np.concatenate([flat[:2], noisy[:1], flat[2:], noisy[1:]])
    assert png_sizes(noisy).min() > png_sizes(flat).max()
    assert np.array_equal(hardest_patches(patches, 2), noisy)
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(3):
        Image.fromarray(_image(i, 64, 80)).save(data / f"train_{i}.png")
    Image.fromarray(_image(9, 64, 64)).save(data / "val_0.png")
    run = tmp_path / "run"
    args = ["train", "--family", "toderici-rnn", "--run-dir", str(run), "--data", str(data), "--val-glob", "val_*",
            "--steps", "2", "--batch", "2", "--crop", "32", "--hard-patches", "3", "--log-every", "1",
            "--val-every", "2", "--model-arg", "cell=residual-gru", "--model-arg", "framing=residual-scaling",
            "--threads", "1"]
    args += [a for k, v in {**TINY, "iterations": 3}.items() for a in ("--model-arg", f"{k}={json.dumps(v)}")]
    assert main(args) == 0
    # the resumed segment trains through torch.compile: recorded, and dynamo really compiled the step (graph
    # capture and AOT autograd as in training; the "aot_eager" backend skips inductor's C++ build, minutes on CI)
    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    assert main(["train", "--run-dir", str(run), "--resume", "--steps", "3", "--compile"]) == 0
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    assert json.loads((run / "config.json").read_text())["resumes"] == [{"at_step": 2, "changed": {
        "steps": [2, 3], "compile": [False, True]}}]
    assert main(["train", "--run-dir", str(run), "--export-only", "--export", "rnn-resgru-residual-scaling",
                 "--export-dir", str(tmp_path / "w")]) == 0
    sidecar = json.loads((tmp_path / "w" / "rnn-resgru-residual-scaling.json").read_text())
    assert sidecar["recipe"]["steps_done"] == 3 and "iterations" in sidecar["recipe"]["distortion"]
    assert sidecar["recipe"]["compile"] is True
    assert json.loads((run / "config.json").read_text())["hard_patches"] == 3 == sidecar["recipe"]["hard_patches"]
    codec = get_codec("rnn-resgru-residual-scaling", weights=tmp_path / "w" / "rnn-resgru-residual-scaling.safetensors",
                      quality=3, device="cpu")
    image = _image(7, 30, 30)
    assert codec.decode(codec.encode(image)).shape == image.shape


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_shipped_weights_on_a_real_photograph(name):
    """Shipped weights of a variant (skipped for those without): on a real photograph (kodim23 from samples/, a
    256x384 crop), rate and PSNR rise with the iterations, a stream cut to K iterations is byte for byte the
    K-iteration encode, and the weights are the ones their sidecar names."""
    from pathlib import Path

    from nicbeam.codecs.learned.weights import weights_dir

    if not (weights_dir() / f"{name}.safetensors").exists():
        pytest.skip(f"no shipped weights for {name}")
    photo = np.asarray(Image.open(Path(__file__).parent.parent / "samples" / "kodak" / "kodim23.png").convert("RGB"))
    image = np.ascontiguousarray(photo[128:384, 128:512])
    full = get_codec(name, quality=16, device="cpu")
    assert full.model_digest.hex() == json.loads((weights_dir() / f"{name}.json").read_text())["sha256"]
    stream = full.encode(image)
    sizes, psnrs = [], []
    for k in (1, 4, 16):
        cut = truncate_iterations(stream, k)
        assert cut == get_codec(name, quality=k, device="cpu").encode(image)
        decoded = full.decode(cut)
        sizes.append(len(cut))
        psnrs.append(10 * np.log10(255**2 / float(((decoded.astype(np.float64) - image) ** 2).mean())))
    assert sizes[0] < sizes[1] < sizes[2] and psnrs[0] < psnrs[1] < psnrs[2], (sizes, psnrs)
    # a trained network, not a random one: measured at 1 / 4 / 16 iterations rnn-gru-oneshot (step 17000) 21.3 / 27.0 /
    # 32.3 dB, rnn-gru-residual-scaling (the shared 6000-step schedule) 19.0 / 23.9 / 26.2 dB,
    # rnn-lstm-residual-scaling (the same schedule) 17.3 / 23.7 / 25.6 dB, rnn-resgru-oneshot (64x64 crops from
    # step 2500) 21.8 / 27.2 / 30.6 dB, rnn-lstm-oneshot (the same schedule) 18.9 / 24.4 / 27.0 dB,
    # rnn-resgru-residual-scaling (64x64 crops) 21.5 / 26.7 / 29.7 dB, rnn-lstm-additive (64x64 crops from step 3000)
    # 18.5 / 24.9 / 27.5 dB, rnn-assoclstm-oneshot (the same schedule) 20.7 / 25.7 / 27.4 dB
    assert psnrs[2] > 25, psnrs
