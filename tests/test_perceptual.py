"""LPIPS and NIMA (nicbeam.metrics.perceptual) on seeded random weights the tests save themselves: key layouts
of torchvision / lpips checkpoints, orientation, determinism, weight errors, and the metrics through the
evaluate Beam job into the metadata, BD-rate, plots and report. Random weights are NOT perceptual models:
these tests check the machinery, not how well the scores agree with people.
"""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from nicbeam.metrics.perceptual import PerceptualWeightsError, load_scorer
from nicbeam.metrics.perceptual.lpips import LPIPSNet, load_lpips, random_lpips_state
from nicbeam.metrics.perceptual.nima import NIMANet, load_nima, map_state, random_nima_state
from tests.test_pipeline_compress import cli, encoded, latest_run, read_table, smooth, write_tree


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    data = encoded(Image.fromarray(image), "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on the 2 shared CI cores, more threads oversubscribe and run many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """Seeded random LPIPS (AlexNet, safetensors) and NIMA (MobileNetV2, torch.save) weight files."""
    folder = tmp_path_factory.mktemp("weights")
    lpips_path, nima_path = folder / "lpips_alex.safetensors", folder / "nima_mobilenet_v2.pt"
    save_file(random_lpips_state("alex", seed=0), str(lpips_path))
    torch.save(random_nima_state("mobilenet_v2", seed=0), nima_path)
    return {"lpips": lpips_path, "nima": nima_path}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return smooth(72, 96, seed=3)


# ------------------------------------------------------------------------------------------ LPIPS
def test_lpips_zero_for_identical_and_grows_with_jpeg_distortion(weights, image):
    net = load_lpips([str(weights["lpips"])])
    assert net.net == "alex" and net.distance(image, image.copy()) == 0.0
    values = [net.distance(image, jpeg_round_trip(image, q)) for q in (95, 75, 40, 10)]
    assert all(v > 0 for v in values)
    assert values == sorted(values), values  # lower JPEG quality -> larger distance
    again = load_lpips([str(weights["lpips"])]).distance(image, jpeg_round_trip(image, 40))
    assert again == values[2]  # deterministic: same weights, same image, same value


def test_lpips_loads_torchvision_and_lpips_checkpoint_layouts(tmp_path, weights, image):
    """A torchvision trunk file + an lpips-package heads file, and a saved lpips.LPIPS, give the same net."""
    state = random_lpips_state("alex", seed=0)
    trunk = {k: v for k, v in state.items() if k.startswith("features.")}
    trunk["classifier.1.weight"] = torch.zeros(4, 9216)  # torchvision's full alexnet file carries its classifier
    heads = {f"lin{k}.model.1.weight": state[f"lin{k}.weight"] for k in range(5)}
    torch.save(trunk, tmp_path / "alexnet-owt.pth")
    torch.save(heads, tmp_path / "alex.pth")
    slices = {1: range(0, 2), 2: range(2, 5), 3: range(5, 8), 4: range(8, 10), 5: range(10, 12)}
    lpips_model = {f"net.slice{s}.{i}.{p}": state[f"features.{i}.{p}"]
                   for s, idx in slices.items() for i in idx for p in ("weight", "bias") if f"features.{i}.{p}" in state}
    lpips_model.update(heads)
    lpips_model["scaling_layer.shift"] = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    torch.save({"state_dict": {f"module.{k}": v for k, v in lpips_model.items()}}, tmp_path / "lpips_full.pth")

    distorted = jpeg_round_trip(image, 30)
    reference = load_lpips([str(weights["lpips"])])
    two_files = load_lpips([str(tmp_path / "alexnet-owt.pth"), str(tmp_path / "alex.pth")])
    full = load_lpips([str(tmp_path / "lpips_full.pth")])
    expected = reference.distance(image, distorted)
    assert two_files.distance(image, distorted) == expected and full.distance(image, distorted) == expected
    assert reference.digest == hashlib.sha256(weights["lpips"].read_bytes()).hexdigest()
    assert two_files.digest != reference.digest


def test_lpips_vgg_trunk_is_recognised(tmp_path):
    path = tmp_path / "vgg.safetensors"
    save_file(random_lpips_state("vgg", seed=1), str(path))
    net = load_lpips([str(path)])
    a = smooth(32, 40, seed=1)
    assert net.net == "vgg" and net.distance(a, a) == 0.0
    assert net.distance(a, jpeg_round_trip(a, 10)) > net.distance(a, jpeg_round_trip(a, 90)) > 0


def test_trunks_have_torchvision_parameter_counts():
    """AlexNet / VGG16 features and MobileNetV2 (with its 1000-way classifier) as torchvision counts them."""
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(LPIPSNet("alex").features) == 2_469_696
    assert count(LPIPSNet("vgg").features) == 14_714_688
    assert count(NIMANet("mobilenet_v2").features) + 1280 * 1000 + 1000 == 3_504_872


def test_lpips_undefined_below_the_trunk_minimum_side(weights):
    scorer = load_scorer(["lpips"], [str(weights["lpips"])])
    tiny = smooth(20, 24)
    assert scorer.score(tiny, jpeg_round_trip(tiny, 20))["lpips"] is None
    assert scorer.score(tiny, tiny)["lpips"] == 0.0


# ------------------------------------------------------------------------------------------ NIMA
def test_nima_mean_and_std_of_the_predicted_distribution(tmp_path, image):
    """A head with zero weights and known biases predicts softmax(bias) for every image: check the moments."""
    state = random_nima_state("mobilenet_v2", seed=0)
    logits = torch.linspace(-2.0, 2.5, 10)
    state["classifier.1.weight"] = torch.zeros(10, 1280)
    state["classifier.1.bias"] = logits
    save_file(state, str(tmp_path / "nima.safetensors"))
    net = load_nima([str(tmp_path / "nima.safetensors")])
    p = torch.softmax(logits.double(), 0).numpy()
    scores = np.arange(1, 11)
    mean = float((p * scores).sum())
    std = math.sqrt(float((p * (scores - mean) ** 2).sum()))
    (got_mean, got_std), = net.scores([image])
    assert got_mean == pytest.approx(mean, abs=1e-9) and got_std == pytest.approx(std, abs=1e-9)


def test_nima_random_weights_deterministic_and_in_range(weights, image):
    first = load_nima([str(weights["nima"])]).scores([image, jpeg_round_trip(image, 10)])
    second = load_nima([str(weights["nima"])]).scores([image, jpeg_round_trip(image, 10)])
    assert first == second
    assert all(1.0 <= m <= 10.0 and 0.0 <= s <= 4.5 for m, s in first)


def test_nima_head_names_the_trunk():
    assert map_state({"classifier.1.weight": torch.zeros(10, 25088)})[0] == "vgg16"
    assert map_state({"classifier.1.weight": torch.zeros(10, 1280)})[0] == "mobilenet_v2"


# ------------------------------------------------------------------------------------------ weight errors
def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    state = random_lpips_state("alex", seed=0)
    cases = {}
    (tmp / "empty.pt").write_bytes(b"")
    cases["empty"] = (tmp / "empty.pt", "is empty")
    (tmp / "garbage.pt").write_bytes(b"not a checkpoint at all")
    cases["garbage"] = (tmp / "garbage.pt", "neither safetensors nor a weights-only torch file")
    save_file({k: v for k, v in state.items() if k.startswith("features.")}, str(tmp / "trunk_only.safetensors"))
    cases["no heads"] = (tmp / "trunk_only.safetensors", "lack lin0.weight")
    negative = dict(state, **{"lin2.weight": -state["lin2.weight"] - 1})
    save_file(negative, str(tmp / "negative.safetensors"))
    cases["negative heads"] = (tmp / "negative.safetensors", "negative weights")
    save_file(random_nima_state(), str(tmp / "nima.safetensors"))
    cases["a NIMA file"] = (tmp / "nima.safetensors", "no AlexNet/VGG16 trunk")
    cases["missing"] = (tmp / "nowhere.pt", "does not exist")
    return cases


def test_weight_paths_option_before_environment(monkeypatch, tmp_path):
    from nicbeam.metrics.perceptual import weight_paths

    monkeypatch.setenv("NICBEAM_LPIPS_WEIGHTS", "gs://bucket/trunk.pth:relative/heads.pth")
    assert weight_paths("lpips", None) == ("gs://bucket/trunk.pth", str(Path("relative/heads.pth").resolve()))
    assert weight_paths("lpips", [str(tmp_path / "x.pt")]) == (str(tmp_path / "x.pt"),)


def test_bad_lpips_weights_give_clear_errors(tmp_path):
    for name, (path, message) in _bad_files(tmp_path).items():
        with pytest.raises(PerceptualWeightsError, match=message):
            load_lpips([str(path)])


def test_imagenet_classifier_is_not_taken_for_a_nima_head(tmp_path):
    state = random_nima_state()
    state["classifier.1.weight"], state["classifier.1.bias"] = torch.zeros(1000, 1280), torch.zeros(1000)
    torch.save(state, tmp_path / "mobilenet_v2-imagenet.pth")
    with pytest.raises(PerceptualWeightsError, match="1000 outputs, expected 10"):
        load_nima([str(tmp_path / "mobilenet_v2-imagenet.pth")])


# ------------------------------------------------------------------------------------------ evaluate job
def test_missing_or_bad_weights_stop_evaluate_before_the_pipeline(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NICBEAM_LPIPS_WEIGHTS", raising=False)
    monkeypatch.delenv("NICBEAM_NIMA_WEIGHTS", raising=False)
    src = write_tree(tmp_path / "in", {f"{i}.png": encoded(Image.fromarray(smooth(40, 48, i)), "PNG")
                                       for i in range(3)})
    out = tmp_path / "out"
    bad = _bad_files(tmp_path)
    runs = [
        (["--metric", "lpips"], "pass --lpips-weights PATH or set NICBEAM_LPIPS_WEIGHTS"),
        (["--metric", "nima"], "pass --nima-weights PATH or set NICBEAM_NIMA_WEIGHTS"),
        (["--metric", "lpips", "--lpips-weights", str(bad["missing"][0])], "does not exist"),
        (["--metric", "lpips", "--lpips-weights", str(bad["garbage"][0])], "neither safetensors"),
        (["--metric", "lpips", "--lpips-weights", str(bad["no heads"][0]), "--metrics", "none"], "--metrics none"),
        (["--bd-metric", "sharpness"], "unknown BD-rate metric"),
    ]
    for extra, message in runs:
        assert cli("evaluate", src, out, "--codec", "jpeg:quality=50", *extra) == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("nicbeam evaluate:") == 1, err
        assert not out.exists()  # nothing ran: no run folder, no error rows


def test_evaluate_with_lpips_and_nima_metadata_bd_rate_and_report(tmp_path, weights, monkeypatch, capsys):
    monkeypatch.setenv("NICBEAM_LPIPS_WEIGHTS", str(weights["lpips"]))  # LPIPS from the environment
    files = {"a.png": encoded(Image.fromarray(smooth(64, 80, 1)), "PNG"),
             "b.png": encoded(Image.fromarray(smooth(56, 72, 2)), "PNG"),
             "tiny.png": encoded(Image.fromarray(smooth(20, 24, 3)), "PNG")}  # below AlexNet's 31 px: LPIPS null
    src = write_tree(tmp_path / "in", files)
    out = tmp_path / "out"
    code = cli("evaluate", src, out, "--codec", "jpeg:quality=15,35,60,90", "--codec", "webp:quality=15,35,60,90",
               "--metrics", "fast", "--metric", "lpips", "--metric", "nima", "--nima-weights", str(weights["nima"]),
               "--bd-metric", "lpips", "--bd-metric", "psnr", "--progress_interval", "0")
    assert code == 0, capsys.readouterr().err
    run = latest_run(out)
    meta = pd.DataFrame(read_table(run, "metadata"))
    assert len(meta) == 24 and read_table(run, "errors") == []
    lpips_id = "alex:" + hashlib.sha256(weights["lpips"].read_bytes()).hexdigest()
    nima_id = "mobilenet_v2:" + hashlib.sha256(weights["nima"].read_bytes()).hexdigest()
    assert set(meta["lpips_model"]) == {lpips_id} and set(meta["nima_model"]) == {nima_id}
    assert meta["nima_mean"].between(1, 10).all() and (meta["nima_std"] > 0).all()
    tiny = meta[meta["source_uri"].str.endswith("tiny.png")]
    assert tiny["lpips"].isna().all()
    net = load_lpips([str(weights["lpips"])])
    original = np.asarray(Image.open(src / "a.png").convert("RGB"))
    for codec in ("jpeg", "webp"):
        rows = meta[meta["source_uri"].str.endswith("a.png") & (meta["codec"] == codec)]
        rows = rows.assign(q=rows["setting"].str.extract(r"quality=(\d+)")[0].astype(int)).sort_values("q")
        assert rows["lpips"].is_monotonic_decreasing and (rows["lpips"] > 0).all(), rows[["setting", "lpips"]]
    # the job's value is the metric's value on the codec's own reconstruction
    from nicbeam.codecs import decode, get_codec

    decoded = decode(get_codec("jpeg", quality=35).encode(original))
    row = meta[meta["source_uri"].str.endswith("a.png") & (meta["setting"] == "jpeg:quality=35")].iloc[0]
    assert row["lpips"] == pytest.approx(net.distance(original, decoded), rel=1e-6)

    report = run / "report"
    summary = pd.read_csv(report / "summary.csv")
    assert {"lpips", "nima_mean", "nima_std", "n_lpips"} <= set(summary.columns)
    assert (summary["n_lpips"] == 2).all()  # tiny.png has no LPIPS
    bd = pd.read_csv(report / "bd_rate.csv")
    assert {"bd_rate_lpips", "bd_rate_psnr_rgb", "bd_lpips"} <= set(bd.columns)
    assert "bd_rate_psnr_y" not in bd.columns  # --bd-metric chose the metrics
    webp = bd[bd["curve"] == "webp"].iloc[0]
    assert math.isfinite(webp["bd_rate_lpips"]) and math.isfinite(webp["bd_rate_psnr_rgb"])
    assert (report / "rd_lpips.png").stat().st_size > 0 and (report / "rd_nima_mean.png").stat().st_size > 0
    text = (report / "report.md").read_text()
    assert "LPIPS (lower = closer)" in text and lpips_id in text and "rd_lpips.png" in text


# ------------------------------------------------------------------------------------------ BD-rate, plots
def test_bd_rate_of_a_lower_is_better_metric():
    from nicbeam.metrics import bd_psnr, bd_rate

    rates, lpips = [0.25, 0.5, 1.0, 2.0], [0.40, 0.25, 0.14, 0.07]
    half = [r / 2 for r in rates]  # the test curve reaches each LPIPS with half the bits
    assert bd_rate(rates, lpips, half, lpips, higher_is_better=False) == pytest.approx(-50.0)
    assert bd_psnr(rates, lpips, half, lpips, higher_is_better=False) < 0  # lower LPIPS at equal rate
    with pytest.raises(ValueError, match="monotonic"):
        bd_rate(rates, lpips, half, lpips)  # a falling curve taken as higher-is-better is refused


def _frame(lpips_of_webp_scale: float) -> pd.DataFrame:
    rows = []
    for codec in ("jpeg", "webp"):
        for i, q in enumerate((20, 40, 60, 80)):
            for image in ("a", "b"):
                size = 2000 * (i + 1) * (0.7 if codec == "webp" else 1.0)
                lpips = 0.4 / (i + 1) * (lpips_of_webp_scale if codec == "webp" else 1.0)
                rows.append({"source_uri": f"/in/{image}.png", "codec": codec, "setting": f"{codec}:quality={q}",
                             "params": f'{{"quality":{q}}}', "lossless": False, "bitstream_bytes": size,
                             "payload_bytes": size, "width": 64, "height": 64, "psnr_rgb": 28.0 + 2 * i,
                             "lpips": lpips, "lpips_model": "alex:00", "run_id": "r"})
    return pd.DataFrame(rows)


def test_report_bd_rate_plots_and_tables_orient_lpips(tmp_path):
    from nicbeam.analysis import bd_table, rd_summary, write_report
    from nicbeam.analysis.plots import _metric_axis_label

    summary = rd_summary(_frame(1.0))
    # webp: same LPIPS with 30 % fewer bytes -> negative BD-rate on LPIPS, as on PSNR
    table = bd_table(summary, "jpeg", ("psnr_rgb", "lpips")).set_index("curve")
    assert table.loc["webp", "bd_rate_lpips"] == pytest.approx(-30.0, abs=1e-6)
    assert table.loc["webp", "bd_rate_psnr_rgb"] == pytest.approx(-30.0, abs=1e-6)
    worse = bd_table(rd_summary(_frame(1.5)), "jpeg", ("lpips",)).set_index("curve")
    assert worse.loc["webp", "bd_lpips"] > 0  # higher LPIPS at equal rate: worse, positive
    assert "lower is better" in _metric_axis_label("lpips")

    write_report(_frame(1.0), tmp_path / "report", anchor="jpeg")
    bd = pd.read_csv(tmp_path / "report" / "bd_rate.csv")
    assert "bd_rate_lpips" in bd.columns and "bd_rate_psnr_hvs" in bd.columns  # lpips added to the defaults
    assert (tmp_path / "report" / "rd_lpips.png").exists()
    assert not (tmp_path / "report" / "rd_nima_mean.png").exists()  # no NIMA in this run: no empty plot


def test_a_failing_metric_is_an_error_row_and_the_run_balances(tmp_path, weights, monkeypatch):
    monkeypatch.setenv("NICBEAM_FAULTS", "perceptual_metric@b.png")
    monkeypatch.setenv("NICBEAM_FAULT_DIR", str(tmp_path))
    src = write_tree(tmp_path / "in", {n: encoded(Image.fromarray(smooth(40, 48, i)), "PNG")
                                       for i, n in enumerate(("a.png", "b.png"))})
    out = tmp_path / "out"
    assert cli("evaluate", src, out, "--codec", "jpeg:quality=30,70", "--metrics", "fast", "--metric", "lpips",
               "--lpips-weights", str(weights["lpips"]), "--no_report", "--progress_interval", "0") == 0
    run = latest_run(out)
    errors = read_table(run, "errors")
    assert [(Path(e["source_uri"]).name, e["stage"], e["reason"]) for e in errors] == [
        ("b.png", "metric", "metric_failure")]
    meta = read_table(run, "metadata")
    assert len(meta) == 3 and all(r["lpips"] is not None for r in meta)
    assert (run / "_SUCCESS").exists()
