"""The generic trainer and ``nicbeam train``: real (tiny) training steps, atomic resumable checkpoints,
weights_only-safe checkpoint content, export with digest, refusal of Kodak."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from nicbeam.codecs.learned import FactorizedCodec  # noqa: E402
from nicbeam.pipelines.cli import main  # noqa: E402
from nicbeam.training.data import ImageCache, list_images  # noqa: E402
from nicbeam.training.registry import available_families, build_model  # noqa: E402
from nicbeam.training.trainer import TrainConfig, Trainer  # noqa: E402


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(4):
        arr = rng.integers(0, 255, (48 + 8 * i, 72, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"train_{i}.png")
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"val_{i}.jpg")
    return folder


def test_registry_and_protocol():
    assert {"bmshj2017-factorized", "mbt2018-mean"} <= set(available_families())
    for family in ("bmshj2017-factorized", "mbt2018-mean"):
        model = build_model(family, N=8, M=12, lambdas=[0.01, 0.1])
        assert build_model(family, **model.config).config == model.config
        x = torch.rand(2, 3, 64, 64)
        out = model(x, torch.tensor([0, 1]))
        assert out["x_hat"].shape == x.shape and out["likelihoods"]
        loss = model.rate_distortion_loss(out, x, torch.tensor([0.01, 0.1]))
        assert loss["loss"].requires_grad and float(loss["bpp"].detach()) > 0
        assert float(model.aux_loss()) == 0.0


def test_lr_schedule_warmup_constant_cosine():
    cfg = TrainConfig(family="mbt2018-mean", model_config={}, steps=100, lr=1e-3, lr_final=1e-5, decay_start=0.5,
                      warmup_steps=10)
    assert cfg.lr_at(0) == pytest.approx(1e-4) and cfg.lr_at(4) == pytest.approx(5e-4)
    assert cfg.lr_at(10) == cfg.lr_at(50) == 1e-3
    assert cfg.lr_at(75) == pytest.approx((1e-3 + 1e-5) / 2) and cfg.lr_at(100) == pytest.approx(1e-5)
    lrs = [cfg.lr_at(s) for s in range(50, 101)]
    assert lrs == sorted(lrs, reverse=True)


def test_data_split_crops_and_kodak_refusal(image_folder, tmp_path):
    train = list_images(image_folder, ["*"], exclude=["val_*"])
    assert [p.name for p in train] == [f"train_{i}.png" for i in range(4)]
    cache = ImageCache(train)
    batch = cache.sample(np.random.default_rng(1), 5, 32)
    assert batch.shape == (5, 32, 32, 3) and batch.dtype == np.uint8
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    with pytest.raises(ValueError, match="Kodak"):
        list_images(kodak)


def test_trainer_checkpoint_resume_and_export(image_folder, tmp_path):
    cfg = TrainConfig(family="bmshj2017-factorized", model_config={"N": 8, "M": 12, "lambdas": [0.005, 0.05]},
                      steps=3, batch=2, crop=32, log_every=1, val_every=3, val_crop=32, val_images=2,
                      data={"folder": str(image_folder), "train_glob": ["*"], "val_glob": ["val_*"]})
    train = ImageCache(list_images(image_folder, ["*"], ["val_*"]))
    val = ImageCache(list_images(image_folder, ["val_*"]))
    lines = []
    trainer = Trainer(cfg, train, val, tmp_path / "run", log=lines.append)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    assert trainer.step == 3 and any(line.startswith("val step 3 (cpu ") for line in lines)
    # each validation records the run's CPU time so that runs of different step costs compare at equal budget
    (val_entry,) = [h for h in trainer.history if "val" in h]
    assert val_entry["step"] == 3 and 0 < val_entry["cpu_s"] <= round(trainer.cpu_s, 3)
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    state = torch.load(trainer.checkpoint_path, weights_only=True)  # safe to load
    assert state["step"] == 3 and not list((tmp_path / "run").glob("*.tmp"))
    # resume continues from step 3 with identical weights
    cfg2 = TrainConfig(**{**cfg.__dict__, "steps": 5})
    resumed = Trainer(cfg2, train, val, tmp_path / "run", log=lines.append)
    resumed.load_checkpoint(trainer.checkpoint_path)
    assert resumed.step == 3
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k])
    resumed.fit()
    assert resumed.step == 5
    # each segment records where it began (a resume may change the step cost)
    starts = [(h["step"], h["cpu_s"]) for h in resumed.history if h.get("segment_start")]
    assert [s for s, _ in starts] == [0, 3] and starts[0][1] == 0 and starts[1][1] == round(trainer.cpu_s, 3)
    # export: safetensors + sidecar with digest; a codec loads it and codes an image
    from nicbeam.training.export import export_model

    paths = export_model(resumed, "tiny", tmp_path / "weights")
    sidecar = json.loads(paths["sidecar"].read_text())
    assert sidecar["sha256"] == hashlib.sha256(paths["weights"].read_bytes()).hexdigest()
    assert sidecar["recipe"]["steps_done"] == 5 and sidecar["recipe"]["lambdas"] == [0.005, 0.05]
    # CPU time is the processes' own (carried over the resume), next to the wall-clock time
    recipe = sidecar["recipe"]
    assert recipe["train_time_cpu_min"] == round(resumed.cpu_s / 60, 1) and resumed.cpu_s > state["cpu_s"] > 0
    assert "train_time_wall_min" in recipe and "train_time_cpu_note" not in recipe
    # the digest names the model: exporting the same checkpoint again gives the same bytes (safetensors alone
    # writes its metadata in a random order per map, so without canonicalisation these differ)
    again = [export_model(resumed, "tiny", tmp_path / f"again{i}")["weights"].read_bytes() for i in range(4)]
    assert all(raw == paths["weights"].read_bytes() for raw in again)
    codec = FactorizedCodec(weights=paths["weights"], device="cpu", quality=2)
    assert codec.model_digest.hex() == sidecar["sha256"]
    image = np.asarray(Image.open(image_folder / "val_0.jpg").convert("RGB"))
    assert codec.decode(codec.encode(image)).shape == image.shape
    with pytest.raises(Exception):
        FactorizedCodec(weights=paths["weights"], quality=3).encode(image)  # only 2 rate points


def _two_step_run(image_folder, tmp_path):
    """A tiny ``mbt2018-mean`` trained for 2 steps: its config, training images and trainer (checkpoint written)."""
    cfg = TrainConfig(family="mbt2018-mean", model_config={"N": 8, "M": 12, "lambdas": [0.005, 0.05]},
                      steps=2, batch=2, crop=64, val_crop=64, val_every=0,
                      data={"folder": str(image_folder), "train_glob": ["*"], "val_glob": ["val_*"]})
    train = ImageCache(list_images(image_folder, ["*"], ["val_*"]))
    trainer = Trainer(cfg, train, None, tmp_path / "run", log=lambda m: None)
    trainer.fit()
    return cfg, train, trainer


def test_compacted_checkpoint_keeps_the_model_and_resumes(image_folder, tmp_path):
    """``nicbeam.training.compact``: optimizer moments in bfloat16 (smaller file), model and counters exact, and
    the trainer resumes from it with moments equal to the bfloat16-rounded originals."""
    from nicbeam.training.compact import compact_checkpoint

    cfg, train, trainer = _two_step_run(image_folder, tmp_path)
    small = compact_checkpoint(trainer.checkpoint_path, tmp_path / "small.pt")
    assert small.stat().st_size < 0.8 * trainer.checkpoint_path.stat().st_size
    full, compact = (torch.load(p, weights_only=True) for p in (trainer.checkpoint_path, small))
    assert all(torch.equal(full["model"][k], compact["model"][k]) for k in full["model"])
    assert (compact["step"], compact["cpu_s"], compact["history"]) == (full["step"], full["cpu_s"], full["history"])
    resumed = Trainer(TrainConfig(**{**cfg.__dict__, "steps": 3}), train, None, tmp_path / "run2", log=lambda m: None)
    resumed.load_checkpoint(small)
    assert resumed.step == 2
    for index, moments in full["optimizer"]["state"].items():
        loaded = resumed.optimizer.state_dict()["state"][index]
        assert torch.equal(loaded["step"], moments["step"])
        for name in ("exp_avg", "exp_avg_sq"):
            assert loaded[name].dtype == torch.float32
            assert torch.equal(loaded[name], moments[name].to(torch.bfloat16).float())
    resumed.fit()
    assert resumed.step == 3


def test_split_checkpoint_resumes_and_refuses_a_missing_or_stale_optimizer_file(image_folder, tmp_path):
    """``compact --split-optimizer``: the optimizer state in a sibling file (per-file size limits); the trainer
    resumes from the pair as from the unsplit compacted file, and refuses a missing or other-step sibling."""
    from nicbeam.training.compact import compact_checkpoint, main as compact_main, optimizer_path

    cfg, train, trainer = _two_step_run(image_folder, tmp_path)
    whole = compact_checkpoint(trainer.checkpoint_path, tmp_path / "whole.pt")
    compact_main([str(trainer.checkpoint_path), str(tmp_path / "split.pt"), "--split-optimizer"])
    split, side = tmp_path / "split.pt", optimizer_path(tmp_path / "split.pt")
    assert side.name == "split.optimizer.pt"
    head = torch.load(split, weights_only=True)
    assert "optimizer" not in head and head["optimizer_file"] == "split.optimizer.pt"
    assert split.stat().st_size < 0.6 * whole.stat().st_size
    with pytest.raises(ValueError, match="already split"):
        compact_checkpoint(split, tmp_path / "again.pt", split_optimizer=True)

    def resumed_from(path):
        resumed = Trainer(TrainConfig(**{**cfg.__dict__, "steps": 3}), train, None, tmp_path / f"from-{path.stem}",
                          log=lambda m: None)
        resumed.load_checkpoint(path)
        return resumed

    a, b = resumed_from(whole), resumed_from(split)
    assert b.step == 2
    for index, moments in a.optimizer.state_dict()["state"].items():
        assert all(torch.equal(value, b.optimizer.state_dict()["state"][index][name]) for name, value in moments.items())
    b.fit()  # and its own next checkpoint is whole again
    assert b.step == 3 and "optimizer" in torch.load(b.checkpoint_path, weights_only=True)

    stale = torch.load(side, weights_only=True)
    stale["step"] = 1
    torch.save(stale, side)
    with pytest.raises(ValueError, match="optimizer state of step 1"):
        resumed_from(split)
    side.unlink()
    with pytest.raises(FileNotFoundError, match="which is missing"):
        resumed_from(split)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_autocast_without_native_bfloat16_is_warned_of(image_folder, tmp_path, monkeypatch, native):
    """Emulated bfloat16 (e.g. an AVX2-only CPU) makes bf16 training steps many times slower: the log says so,
    and the hardware record (kept with the run) says which kind of CPU trained."""
    import nicbeam.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "bf16_is_fast", lambda device: native)
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--family", "mbt2018-mean", "--data", str(image_folder),
                 "--val-glob", "val_*", "--model-arg", "N=8", "--model-arg", "M=12", "--lambdas", "0.01,0.1",
                 "--steps", "2", "--batch", "1", "--crop", "64", "--val-every", "0", "--log-every", "0",
                 "--autocast", "bf16"]) == 0
    log = (run / "train.log").read_text()
    # every 0 steps: only at the last step (this once divided by zero)
    assert [line.split()[:3] for line in log.splitlines() if line.startswith(("step ", "val step "))] == [
        ["step", "2/2", "loss"], ["val", "step", "2"]]
    assert ("without native bfloat16" in log) is not native
    assert ("native bf16)" if native else "no native bf16)") in log
    assert "glibc malloc keeps freed memory" in log or "allocator left as it is" in log


@pytest.mark.parametrize("name", ["val_every", "log_every", "snapshot_every"])
def test_negative_periods_are_refused(tmp_path, name):
    """A negative period would never fire (or, before, divide by zero): refused when the trainer is built."""
    cfg = TrainConfig(family="mbt2018-mean", model_config={"N": 8, "M": 12}, batch=1, crop=64, **{name: -1})
    with pytest.raises(ValueError, match=f"{name} must be >= 0"):
        Trainer(cfg, None, None, tmp_path / "run")


def test_cli_train_resume_export(image_folder, tmp_path):
    run = tmp_path / "cli-run"
    common = ["train", "--run-dir", str(run)]
    assert main(common + ["--family", "mbt2018-mean", "--data", str(image_folder), "--val-glob", "val_*",
                          "--model-arg", "N=8", "--model-arg", "M=12", "--lambdas", "0.01,0.1",
                          "--steps", "2", "--batch", "2", "--crop", "64", "--log-every", "1", "--val-every", "2"]) == 0
    # a resumed run may take a new schedule and batch; they are recorded in its config.json and used
    assert main(common + ["--resume", "--steps", "3", "--lr", "1e-4", "--lr-final", "1e-6", "--decay-start", "0.5",
                          "--batch", "3", "--checkpoint-every", "7"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["checkpoint_every_s"] == 7
    assert (config["steps"], config["lr"], config["lr_final"], config["decay_start"], config["batch"], config["crop"]) == (
        3, 1e-4, 1e-6, 0.5, 3, 64)
    assert "training to step 3: batch 3 crop 64 lr 0.0001" in (run / "train.log").read_text()
    # the earlier values are kept, so an export tells the whole schedule
    assert config["resumes"] == [{"at_step": 2, "changed": {"steps": [2, 3], "lr": [3e-4, 1e-4], "lr_final": [3e-5, 1e-6],
                                                            "decay_start": [0.7, 0.5], "batch": [2, 3]}}]
    with pytest.raises(SystemExit, match="multiple of 64"):  # a new crop is checked like a new run's
        main(common + ["--resume", "--steps", "4", "--crop", "96"])
    with pytest.raises(SystemExit, match="export-only"):  # --checkpoint would be silently ignored
        main(common + ["--resume", "--checkpoint", str(run / "checkpoint.pt")])
    assert "resumed mbt2018-mean at step 2" in (run / "train.log").read_text()
    # the corpus moved (another machine): the recorded folder is refused with a hint, --data replaces it
    moved = tmp_path / "moved-data"
    shutil.copytree(image_folder, moved)
    config = json.loads((run / "config.json").read_text())
    config["data"]["folder"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match="--data"):
        main(common + ["--resume", "--steps", "4"])
    assert main(common + ["--resume", "--steps", "4", "--data", str(moved)]) == 0
    assert json.loads((run / "config.json").read_text())["data"]["folder"] == str(moved)
    assert main(common + ["--export-only", "--export", "tiny-hyper", "--export-dir", str(tmp_path / "w")]) == 0
    from nicbeam.codecs.learned import MeanScaleHyperpriorCodec

    recipe = json.loads((tmp_path / "w" / "tiny-hyper.json").read_text())["recipe"]
    assert [r["at_step"] for r in recipe["resumes"]] == [2, 3] and "earlier values" in recipe["lr_schedule"]
    codec = MeanScaleHyperpriorCodec(weights=tmp_path / "w" / "tiny-hyper.safetensors", device="cpu", quality=2)
    image = np.asarray(Image.open(image_folder / "train_1.png"))
    assert codec.decode(codec.encode(image)).shape == image.shape


def test_per_quality_prior_warm_start_entropy_lr_and_snapshots(image_folder, tmp_path):
    """A per-quality factorized prior starts from a shared-prior run (its density seeds every quality block),
    trains its densities at lr * entropy_lr_scale, keeps snapshots, and exports weights a codec decodes."""
    data = {"folder": str(image_folder), "train_glob": ["*"], "val_glob": ["val_*"]}
    train = ImageCache(list_images(image_folder, ["*"], ["val_*"]))
    shared = Trainer(TrainConfig(family="bmshj2017-factorized", model_config={"N": 8, "M": 12, "lambdas": [0.005, 0.05]},
                                 steps=2, batch=2, crop=32, data=data), train, None, tmp_path / "shared", log=lambda m: None)
    shared.fit()
    cfg = TrainConfig(family="bmshj2017-factorized",
                      model_config={"N": 8, "M": 12, "lambdas": [0.005, 0.05], "prior": "per-quality"},
                      steps=4, batch=2, crop=32, lr=1e-4, entropy_lr_scale=10.0, snapshot_every=2, data=data)
    trainer = Trainer(cfg, train, None, tmp_path / "pq", log=lambda m: None)
    copied = trainer.init_from(shared.checkpoint_path)
    assert "g_a.0.weight" in copied and "entropy_bottleneck.matrices.0" in copied
    bank = trainer.model.entropy_bottleneck.matrices[0]
    assert bank.shape[0] == 24 and torch.equal(bank[:12], bank[12:])
    assert torch.equal(bank[:12], shared.model.entropy_bottleneck.matrices[0])
    trainer.fit()
    lrs = [g["lr"] for g in trainer.optimizer.param_groups]
    assert len(lrs) == 2 and lrs[1] == pytest.approx(10 * lrs[0])
    assert sorted(p.name for p in (tmp_path / "pq").glob("snapshot-step*.pt")) == ["snapshot-step2.pt", "snapshot-step4.pt"]
    # the two quality blocks have drifted apart: each quality learns its own density
    assert not torch.equal(bank[:12], bank[12:])
    from nicbeam.training.export import export_model

    paths = export_model(trainer, "tiny-pq", tmp_path / "weights")
    image = np.asarray(Image.open(image_folder / "val_0.jpg").convert("RGB"))
    for quality in (1, 2):
        codec = FactorizedCodec(weights=paths["weights"], device="cpu", quality=quality)
        assert codec.bundle.extras["y_tables"].length.size == 24
        assert codec.decode(codec.encode(image)).shape == image.shape


@pytest.mark.parametrize("family,extra", [("bmshj2017-factorized", {"prior": "per-quality"}), ("mbt2018-mean", {})])
def test_warm_start_with_added_rate_points(image_folder, tmp_path, family, extra):
    """A run with an extra, lower lambda warm-starts from one without it: the old rate points are copied
    unchanged (same outputs), the new one starts from its nearest neighbour with gains scaled by
    sqrt(lambda ratio), so it codes at a lower rate from step 0."""
    from nicbeam.training.trainer import nearest_quality_rows

    assert nearest_quality_rows([0.01, 0.1], [0.002, 0.01, 0.1]) == [0, 0, 1]
    data = {"folder": str(image_folder), "train_glob": ["*"], "val_glob": ["val_*"]}
    train = ImageCache(list_images(image_folder, ["*"], ["val_*"]))
    source = Trainer(TrainConfig(family=family, model_config={"N": 8, "M": 12, "lambdas": [0.01, 0.1], **extra},
                                 steps=2, batch=2, crop=64, data=data), train, None, tmp_path / "src", log=lambda m: None)
    source.fit()
    grown = Trainer(TrainConfig(family=family, model_config={"N": 8, "M": 12, "lambdas": [0.0025, 0.01, 0.1], **extra},
                                steps=2, batch=2, crop=64, data=data), train, None, tmp_path / "dst", log=lambda m: None)
    copied = grown.init_from(source.checkpoint_path)
    assert "gain" in copied and "inv_gain" in copied
    assert any(k.startswith("entropy_bottleneck") for k in copied)
    gain, src_gain = grown.model.gain.detach(), source.model.gain.detach()
    assert torch.allclose(gain[1:], src_gain) and torch.allclose(gain[0], src_gain[0] * 0.5)
    x = torch.from_numpy(np.asarray(Image.open(image_folder / "train_1.png").convert("RGB"))[:64, :64].copy())
    x = x.permute(2, 0, 1)[None].float() / 255
    source.model.eval()
    grown.model.eval()
    with torch.no_grad():
        for q_old, q_new in ((0, 1), (1, 2)):
            a = source.model(x, torch.tensor([q_old]))
            b = grown.model(x, torch.tensor([q_new]))
            assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-6)
            for name in a["likelihoods"]:
                assert torch.allclose(a["likelihoods"][name], b["likelihoods"][name], atol=1e-6)


@pytest.mark.parametrize("family", ["bmshj2017-factorized", "mbt2018-mean"])
def test_bf16_autocast_keeps_latents_and_rates_in_float32(family):
    """Under bfloat16 autocast the transforms run in bf16 but the latents, likelihoods and (float) outputs
    are float32, and rate and distortion stay close to the float32 forward."""
    model = build_model(family, N=16, M=24, lambdas=[0.01, 0.1]).eval()
    x = torch.rand(2, 3, 64, 64)
    q = torch.tensor([0, 1])
    with torch.no_grad():
        ref = model(x, q)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model.analysis(x, q)
            out = model(x, q)
    assert y.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in out["likelihoods"].values())
    for name in ref["likelihoods"]:
        bits = lambda o: float(-torch.log2(o["likelihoods"][name]).sum())  # noqa: E731
        assert bits(out) == pytest.approx(bits(ref), rel=0.02)
    assert float((out["x_hat"].float() - ref["x_hat"]).abs().max()) < 0.05


def test_train_with_autocast_records_it_and_the_warm_start_lineage(image_folder, tmp_path):
    """--autocast bf16 trains, is kept in the run config, and the exported sidecar names it together with the
    chain of runs the weights were warm-started from."""
    common = ["--data", str(image_folder), "--val-glob", "val_*", "--model-arg", "N=8", "--model-arg", "M=12",
              "--batch", "2", "--crop", "64", "--log-every", "1", "--val-every", "2", "--family", "mbt2018-mean"]
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train", "--run-dir", str(first), "--lambdas", "0.01,0.1", "--steps", "2"] + common) == 0
    assert main(["train", "--run-dir", str(second), "--lambdas", "0.005,0.01,0.1", "--steps", "2", "--autocast", "bf16",
                 "--warmup-steps", "5",
                 "--init-from", str(first / "checkpoint.pt"), "--export", "tiny-bf16",
                 "--export-dir", str(tmp_path / "w")] + common) == 0
    assert json.loads((second / "config.json").read_text())["autocast"] == "bf16"
    recipe = json.loads((tmp_path / "w" / "tiny-bf16.json").read_text())["recipe"]
    assert recipe["autocast"] == "bf16" and recipe["lr_schedule"].startswith("linear warm-up over 5 steps")
    # of the training, not of the exporting process; the ISA and bf16 support are what CPU seconds depend on
    assert recipe["hardware"].startswith("1 CPU thread(s) (") and "bf16)" in recipe["hardware"]
    assert [(e["family"], e["step"], len(e["model_config"]["lambdas"])) for e in recipe["warm_start_lineage"]] == [
        ("mbt2018-mean", 2, 2)]
    # a source run that is gone (say a run directory outside the repository) is named as such, not as an error
    from nicbeam.training.export import warm_start_lineage

    assert warm_start_lineage({"init_from": str(tmp_path / "gone" / "checkpoint.pt")}) == [
        {"checkpoint": str(tmp_path / "gone" / "checkpoint.pt"),
         "unavailable": "not found where the export ran (its recipe is that run's own record)"}]


def test_ms_ssim_distortion_trains_and_records_recipe(tmp_path):
    """--distortion ms-ssim: CompressAI's MS-SSIM lambdas by default, MS-SSIM in the loss, validation and recipe;
    crops too small for 5-scale MS-SSIM are refused."""
    folder = tmp_path / "big"
    folder.mkdir()
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:192, 0:192]
    for i in range(3):
        base = np.stack([(xx * (1 + c + i) + yy * (3 - c)) % 256 for c in range(3)], axis=-1).astype(np.float64)
        arr = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / (f"val_{i}.png" if i == 2 else f"train_{i}.png"))
    run = tmp_path / "msssim-run"
    common = ["train", "--run-dir", str(run), "--family", "bmshj2017-factorized", "--data", str(folder),
              "--val-glob", "val_*", "--model-arg", "N=8", "--model-arg", "M=12", "--distortion", "ms-ssim",
              "--steps", "2", "--batch", "2", "--log-every", "1", "--val-every", "2"]
    with pytest.raises(SystemExit, match="161"):
        main(common + ["--crop", "128"])
    with pytest.raises(SystemExit, match="multiple of 16"):
        main(common + ["--crop", "168"])
    assert main(common + ["--crop", "176"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["distortion"] == "ms-ssim" and config["model_config"]["lambdas"][0] == 2.40
    log = (run / "train.log").read_text()
    assert '"q1_ms_ssim"' in log  # validation reports MS-SSIM
    assert main(["train", "--run-dir", str(run), "--export-only", "--export", "tiny-msssim",
                 "--export-dir", str(tmp_path / "w")]) == 0
    sidecar = json.loads((tmp_path / "w" / "tiny-msssim.json").read_text())
    assert sidecar["recipe"]["distortion"].startswith("MS-SSIM")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_resumes_and_exports_for_the_cpu(image_folder, tmp_path):
    """Where a GPU is present: nicbeam train --device cuda trains (bf16 autocast), checkpoints hold CPU
    tensors, resuming works, and the exported weights code on the CPU."""
    run = tmp_path / "gpu-run"
    common = ["train", "--run-dir", str(run), "--device", "cuda"]
    assert main(common + ["--family", "mbt2018-mean", "--data", str(image_folder), "--val-glob", "val_*",
                          "--model-arg", "N=8", "--model-arg", "M=12", "--lambdas", "0.01,0.1", "--autocast", "bf16",
                          "--steps", "2", "--batch", "2", "--crop", "64", "--log-every", "1", "--val-every", "2"]) == 0
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert all(v.device.type == "cpu" for v in state["model"].values())
    assert main(common + ["--resume", "--steps", "3"]) == 0
    assert main(["train", "--run-dir", str(run), "--export-only", "--export", "gpu-tiny", "--export-dir", str(tmp_path / "w")]) == 0
    from nicbeam.codecs.learned import MeanScaleHyperpriorCodec

    codec = MeanScaleHyperpriorCodec(weights=tmp_path / "w" / "gpu-tiny.safetensors", device="cpu", quality=2)
    image = np.asarray(Image.open(image_folder / "train_1.png").convert("RGB"))
    assert codec.decode(codec.encode(image)).shape == image.shape
    assert "GPU" in json.loads((tmp_path / "w" / "gpu-tiny.json").read_text())["recipe"]["hardware"]


def test_cli_help_states_the_train_config_defaults():
    """The help of `nicbeam train` is built from TrainConfig's defaults, so changing one cannot leave it stale."""
    import argparse

    from nicbeam.pipelines.cmd_train import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    helps = {a.dest: a.help for a in parser._actions}
    cfg = TrainConfig(family="mbt2018-mean", model_config={})
    assert f"default {cfg.lr:g};" in helps["lr"] and f"default {cfg.steps};" in helps["steps"]
    assert f"default {cfg.decay_start})" in helps["decay_start"]
    defaults = {a.dest: a.default for a in parser._actions}
    assert (defaults["warmup_steps"], defaults["log_every"], defaults["val_every"]) == (
        cfg.warmup_steps, cfg.log_every, cfg.val_every)



def test_lr_scales_train_the_added_parameters_faster(image_folder, tmp_path):
    """--lr-scale PREFIX=FACTOR: the parameters a warm start adds (here charm-hyperprior's slice transforms) form
    their own group at FACTOR x the LR, kept through checkpoints; a prefix that names nothing is refused."""
    data = {"folder": str(image_folder), "train_glob": ["*"], "val_glob": ["val_*"]}
    train = ImageCache(list_images(image_folder, ["*"], ["val_*"]))
    config = {"N": 8, "M": 12, "lambdas": [0.01, 0.1], "slices": 2, "hidden": 8}
    cfg = TrainConfig(family="charm-hyperprior", model_config=config, steps=2, batch=2, crop=64, lr=1e-4,
                      lr_scales={"slice_transforms.": 10.0}, data=data)
    trainer = Trainer(cfg, train, None, tmp_path / "run", log=lambda m: None)
    trainer.fit()
    groups = trainer.optimizer.param_groups
    assert [g["lr_scale"] for g in groups] == [1.0, 10.0] and groups[1]["lr"] == pytest.approx(10 * groups[0]["lr"])
    scaled = {id(p) for p in groups[1]["params"]}
    assert scaled == {id(p) for n, p in trainer.model.named_parameters() if n.startswith("slice_transforms.")}
    resumed = Trainer(cfg, train, None, tmp_path / "run", log=lambda m: None)
    resumed.load_checkpoint(trainer.checkpoint_path)
    assert [g["lr_scale"] for g in resumed.optimizer.param_groups] == [1.0, 10.0]
    with pytest.raises(ValueError, match="name no parameter"):
        Trainer(TrainConfig(family="charm-hyperprior", model_config=config, lr_scales={"context.": 10.0}, data=data),
                train, None, tmp_path / "bad", log=lambda m: None)
    with pytest.raises(SystemExit, match="PREFIX=FACTOR"):
        main(["train", "--run-dir", str(tmp_path / "cli"), "--family", "charm-hyperprior", "--data", str(image_folder),
              "--lr-scale", "slice_transforms."])


@pytest.mark.parametrize("family", ["mbt2018-mean", "tcm-hyperprior"])
def test_channels_last_trains_the_same_model_and_switches_on_resume(image_folder, tmp_path, family):
    """``channels_last`` changes memory layout only: from the same seed the same weights, and on one batch the same
    loss and gradients up to float rounding; a contiguous run resumes with it; its export holds plain tensors."""
    common = dict(family=family, model_config={"N": 8, "M": 12, "lambdas": [0.005, 0.05], **(
        {"window": 4} if family == "tcm-hyperprior" else {})}, steps=2, batch=2, crop=64, val_every=0,
        data={"folder": str(image_folder), "train_glob": ["*"], "val_glob": ["val_*"]})
    train = ImageCache(list_images(image_folder, ["*"], ["val_*"]))
    plain = Trainer(TrainConfig(**common), train, None, tmp_path / "plain", log=lambda m: None)
    fast = Trainer(TrainConfig(**common, channels_last=True), train, None, tmp_path / "fast", log=lambda m: None)
    assert fast.model.g_a[0].weight.is_contiguous(memory_format=torch.channels_last)
    a, b = plain.model.state_dict(), fast.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    x, q = torch.rand(2, 3, 64, 64), torch.tensor([0, 1])
    losses, grads = [], []
    for trainer in (plain, fast):
        out = trainer.model.train()(x.contiguous(memory_format=trainer.memory_format), q)
        loss = trainer.model.rate_distortion_loss(out, x, trainer.lambdas[q])["loss"]
        trainer.model.zero_grad()
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert float((grads[1] - grads[0]).norm()) < 1e-4 * float(grads[0].norm())
    fast.fit()
    assert fast.step == 2
    plain.fit()
    resumed = Trainer(TrainConfig(**{**common, "steps": 3, "channels_last": True}), train, None, tmp_path / "plain",
                      log=lambda m: None)
    resumed.load_checkpoint(plain.checkpoint_path)
    resumed.fit()
    assert resumed.step == 3 and resumed.model.g_s[0].weight.is_contiguous(memory_format=torch.channels_last)
    from safetensors.torch import load_file

    from nicbeam.training.export import export_model

    paths = export_model(resumed, "tiny-cl", tmp_path / "w")
    assert all(t.is_contiguous() for t in load_file(str(paths["weights"])).values())


def test_training_stops_at_a_cpu_budget_and_resumes_past_it(image_folder, tmp_path):
    """``until_cpu_s`` (``nicbeam train --until-cpu-s``) stops a run once its CPU time, counted over all segments,
    reaches the budget, with a checkpoint; a higher budget continues it."""
    cfg = TrainConfig(family="bmshj2017-factorized", model_config={"N": 8, "M": 12, "lambdas": [0.005, 0.05]},
                      steps=100_000, batch=2, crop=32, val_every=0,
                      data={"folder": str(image_folder), "train_glob": ["*"], "val_glob": ["val_*"]})
    train = ImageCache(list_images(image_folder, ["*"], ["val_*"]))
    lines = []
    trainer = Trainer(cfg, train, None, tmp_path / "run", log=lines.append)
    trainer.fit(until_cpu_s=0.0)
    assert trainer.step == 0 and any(line.startswith("CPU budget of 0 s reached at step 0") for line in lines)
    trainer.fit(until_cpu_s=0.3)
    first = trainer.step
    assert 0 < first < cfg.steps and trainer.cpu_s >= 0.3
    assert torch.load(trainer.checkpoint_path, weights_only=True)["step"] == first
    trainer.fit(until_cpu_s=trainer.cpu_s + 0.2)
    assert trainer.step > first
