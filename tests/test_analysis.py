"""Tests for nicbeam.analysis on metadata made by really running codecs on small synthetic images."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from nicbeam.analysis import (
    auc_table,
    bd_table,
    common_bpp_range,
    curve_labels,
    load_metadata,
    lossless_table,
    rd_summary,
    resolve_anchor,
    write_report,
)
from nicbeam.codecs import get_codec
from nicbeam.codecs.spec import parse_codec_spec
from nicbeam.metrics import bpp, ms_ssim_batch, ms_ssim_db, psnr, psnr_hvs_hvsm, psnr_y
from nicbeam.transforms.schema import METADATA_SCHEMA

SIDE = 192  # MS-SSIM needs sides >= 161
SPECS = (
    "jpeg:quality=30,50,70,90:subsampling=420",
    "jpeg:quality=30,50,70,90:subsampling=444",
    "webp:quality=30,50,70,90",
    "webp:quality=40,80:method=4",  # a 2-point curve: BD-rate must say why it is missing
    "webp:lossless=true",
)


def synthetic_image(seed: int) -> np.ndarray:
    """Smooth gradients and waves plus seeded texture, like a small photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    channels = []
    for c in range(3):
        fx, fy, phase = rng.uniform(0.02, 0.12, 2).tolist() + [rng.uniform(0, 2 * np.pi)]
        base = 60 + 120 * (xx + (c + 1) * yy) / ((c + 2) * SIDE)
        wave = 40 * np.sin(fx * xx + phase) * np.cos(fy * yy)
        channels.append(base + wave + rng.normal(0, 6 + 3 * c, (SIDE, SIDE)))
    return np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


def _evaluate(images: dict[str, np.ndarray]) -> pa.Table:
    """Rows shaped like the evaluate job's: every image through every setting, metrics from nicbeam.metrics."""
    rows = []
    created = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    for spec in SPECS:
        for setting in parse_codec_spec(spec):
            codec = get_codec(setting.codec, **setting.param_dict)
            decoded = {}
            for uri, image in images.items():
                start = time.perf_counter()
                stream = codec.encode(image)
                encode_ms = (time.perf_counter() - start) * 1000
                start = time.perf_counter()
                out = codec.decode(stream)
                decode_ms = (time.perf_counter() - start) * 1000
                decoded[uri] = out
                hvs, hvs_m = psnr_hvs_hvsm(image, out)
                rows.append(
                    {
                        "run_id": "test-run",
                        "source_uri": uri,
                        "source_bytes": None,
                        "source_format": "PNG",
                        "source_mode": "RGB",
                        "width": image.shape[1],
                        "height": image.shape[0],
                        "codec": setting.codec,
                        "setting": setting.label,
                        "params": json.dumps(codec.params, sort_keys=True),
                        "lossless": codec.lossless,
                        "codec_implementation": codec.implementation(),
                        "codec_version": codec.payload_version,
                        "model_digest": None,
                        "bitstream_uri": None,
                        "bitstream_bytes": len(stream),
                        "bpp": bpp(len(stream), image.shape[0], image.shape[1]),
                        "psnr_rgb": psnr(image, out),
                        "psnr_y": psnr_y(image, out),
                        "ms_ssim": None,
                        "ms_ssim_db": None,
                        "psnr_hvs": hvs,
                        "psnr_hvs_m": hvs_m,
                        "encode_ms": encode_ms,
                        "decode_ms": decode_ms,
                        "device": "cpu",
                        "worker": "pytest",
                        "nicbeam_version": "test",
                        "created_at": created,
                    }
                )
            scores = ms_ssim_batch([(images[u], decoded[u]) for u in images])
            for row, score in zip(rows[-len(images):], scores):
                row["ms_ssim"] = score
                row["ms_ssim_db"] = ms_ssim_db(score)
    return pa.Table.from_pylist(rows, schema=METADATA_SCHEMA)


@pytest.fixture(scope="module")
def metadata() -> pa.Table:
    import torch

    images = {f"mem://corpus/img{i}.png": synthetic_image(i) for i in range(2)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny MS-SSIM batches: thread start-up costs more than it saves on shared CPUs
    try:
        return _evaluate(images)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def summary(metadata: pa.Table) -> pd.DataFrame:
    return rd_summary(metadata)


JPEG_420, JPEG_444 = "jpeg (subsampling=420)", "jpeg (subsampling=444)"
WEBP_M4, WEBP_M6 = "webp (method=4)", "webp (method=6)"


# --- loading and summary ------------------------------------------------------------------------------


def test_load_metadata_from_parquet_dir_glob_and_table(metadata: pa.Table, tmp_path) -> None:
    half = metadata.num_rows // 2
    (tmp_path / "run").mkdir()
    pq.write_table(metadata.slice(0, half), tmp_path / "run" / "part-0.parquet")
    pq.write_table(metadata.slice(half), tmp_path / "run" / "part-1.parquet")
    from_dir = load_metadata(tmp_path / "run")
    from_glob = load_metadata(str(tmp_path / "run" / "*.parquet"))
    from_file_list = load_metadata([tmp_path / "run" / "part-0.parquet", tmp_path / "run" / "part-1.parquet"])
    from_table = load_metadata(metadata)
    for frame in (from_dir, from_glob, from_file_list):
        assert len(frame) == metadata.num_rows
        key = ["setting", "source_uri"]
        pd.testing.assert_frame_equal(
            frame.sort_values(key).reset_index(drop=True)[["setting", "source_uri", "bpp", "psnr_rgb"]],
            from_table.sort_values(key).reset_index(drop=True)[["setting", "source_uri", "bpp", "psnr_rgb"]],
        )
    # A job's run folder: its metadata/ is read, errors/ (another schema) is not.
    run = tmp_path / "job"
    (run / "metadata").mkdir(parents=True)
    (run / "errors").mkdir()
    pq.write_table(metadata, run / "metadata" / "part-0.parquet")
    pq.write_table(pa.table({"reason": ["decode"]}), run / "errors" / "part-0.parquet")
    assert len(load_metadata(run)) == metadata.num_rows
    # A re-run appended to the same folder does not double-count images.
    doubled = load_metadata(pa.concat_tables([metadata, metadata]))
    assert len(doubled) == metadata.num_rows
    with pytest.raises(FileNotFoundError):
        load_metadata(tmp_path / "missing")


def test_summary_means_match_direct_numpy(metadata: pa.Table, summary: pd.DataFrame) -> None:
    df = metadata.to_pandas()
    assert len(summary) == df["setting"].nunique() == 8 + 4 + 2 + 1
    for _, row in summary.iterrows():
        rows = df[df["setting"] == row["setting"]]
        assert row["n_images"] == 2
        assert row["bpp"] == pytest.approx(np.mean(8.0 * rows["bitstream_bytes"] / (rows["width"] * rows["height"])))
        assert row["bpp_aggregate"] == pytest.approx(
            8.0 * rows["bitstream_bytes"].sum() / (rows["width"] * rows["height"]).sum()
        )
        for column in ("psnr_rgb", "psnr_y", "ms_ssim", "psnr_hvs", "psnr_hvs_m"):
            expected = np.mean(rows[column].to_numpy(dtype=float))
            if np.isinf(expected):
                assert np.isinf(row[column])
            else:
                assert row[column] == pytest.approx(expected, rel=1e-12)
        mean_ms_ssim = np.mean(rows["ms_ssim"].to_numpy(dtype=float))
        if mean_ms_ssim < 1:
            assert row["ms_ssim_db"] == pytest.approx(-10 * np.log10(1 - mean_ms_ssim))
            assert row["ms_ssim_db_mean"] == pytest.approx(np.mean(rows["ms_ssim_db"].to_numpy(dtype=float)))
        assert row["encode_ms_mean"] == pytest.approx(rows["encode_ms"].mean())
        assert row["decode_ms_median"] == pytest.approx(rows["decode_ms"].median())
    # Real codecs behave: higher JPEG quality means more bits and higher PSNR on these images.
    jpeg = summary[summary["curve"] == JPEG_420].sort_values("bpp")
    assert list(jpeg["swept_value"]) == ["30", "50", "70", "90"]
    assert np.all(np.diff(jpeg["psnr_rgb"].to_numpy()) > 0)


def test_curves_group_by_codec_and_fixed_params(summary: pd.DataFrame) -> None:
    assert curve_labels(summary) == [JPEG_420, JPEG_444, WEBP_M4, WEBP_M6]
    sizes = summary.groupby("curve")["setting"].count().to_dict()
    assert sizes == {JPEG_420: 4, JPEG_444: 4, WEBP_M4: 2, WEBP_M6: 4}
    assert set(summary.loc[summary["codec"] == "jpeg", "swept_param"]) == {"quality"}
    assert json.loads(summary.loc[summary["curve"] == JPEG_444, "curve_params"].iloc[0])["subsampling"] == "444"
    lossless = summary[summary["lossless"]]
    assert list(lossless["setting"]) == ["webp:lossless=true"]
    assert lossless["curve"].isna().all()
    table = lossless_table(summary)
    assert list(table["setting"]) == ["webp:lossless=true"] and table["exact"].iloc[0] is True
    assert table["bpp"].iloc[0] > summary.loc[summary["curve"] == WEBP_M6, "bpp"].max()


def test_curves_without_params_json_use_labels_and_codec_defaults(metadata: pa.Table) -> None:
    frame = metadata.to_pandas()
    frame["params"] = None  # labels list only explicit parameters; defaults come from the codec registry
    assert curve_labels(rd_summary(frame)) == [JPEG_420, JPEG_444, WEBP_M4, WEBP_M6]


def test_anchor_resolution(summary: pd.DataFrame) -> None:
    assert resolve_anchor(summary) == JPEG_420
    assert resolve_anchor(summary, JPEG_444) == JPEG_444
    assert resolve_anchor(summary, "jpeg:quality=30,50,70,90:subsampling=444") == JPEG_444
    assert resolve_anchor(summary, "jpeg") == JPEG_420  # the codec's default subsampling
    assert resolve_anchor(summary, "webp:method=4") == WEBP_M4
    with pytest.raises(ValueError, match="matches no curve"):
        resolve_anchor(summary, "avif")


# --- BD-rate and AUC ----------------------------------------------------------------------------------


def test_bd_rate_of_curve_against_itself_is_zero(summary: pd.DataFrame) -> None:
    for anchor in (JPEG_420, WEBP_M6):
        table = bd_table(summary, anchor).set_index("curve")
        for metric in ("psnr_rgb", "psnr_y", "ms_ssim_db", "psnr_hvs", "psnr_hvs_m"):
            assert table.loc[anchor, f"bd_rate_{metric}"] == pytest.approx(0.0, abs=1e-9)
            assert table.loc[anchor, f"bd_{metric}"] == pytest.approx(0.0, abs=1e-9)
        assert table.loc[anchor, "note"] == ""


def test_bd_table_values_and_short_curve_note(summary: pd.DataFrame) -> None:
    table = bd_table(summary, JPEG_420).set_index("curve")
    # 4:4:4 keeps full chroma: it costs bits at equal PSNR on these colourful images, finite either way.
    assert math.isfinite(table.loc[JPEG_444, "bd_rate_psnr_rgb"])
    assert math.isfinite(table.loc[WEBP_M6, "bd_rate_psnr_rgb"]) or table.loc[WEBP_M6, "note"]
    short = table.loc[WEBP_M4]
    assert short["n_points"] == 2
    assert all(math.isnan(short[f"bd_rate_{m}"]) for m in ("psnr_rgb", "ms_ssim_db", "psnr_hvs_m"))
    assert "at least 4" in short["note"] and "2 usable point" in short["note"]
    # The same comparison with a 2-point anchor: every other curve gets NaN with a note, no exception.
    against_short = bd_table(summary, WEBP_M4)
    assert against_short["bd_rate_psnr_rgb"].isna().all()
    assert against_short["note"].str.contains("anchor has 2 usable point").all()


def test_bd_table_without_overlap_is_nan_with_note(summary: pd.DataFrame) -> None:
    # Keep only the two lowest JPEG 4:2:0 points and the two highest 4:4:4 ones, relabelled as 4-point curves
    # by requiring 2 points: their PSNR ranges do not overlap.
    low = summary[summary["curve"] == JPEG_420].nsmallest(2, "bpp")
    high = summary[summary["curve"] == JPEG_444].nlargest(2, "bpp")
    assert low["psnr_rgb"].max() < high["psnr_rgb"].min()
    table = bd_table(pd.concat([low, high]), JPEG_420, metrics=("psnr_rgb",), min_points=2).set_index("curve")
    assert math.isnan(table.loc[JPEG_444, "bd_rate_psnr_rgb"])
    assert "no quality overlap" in table.loc[JPEG_444, "note"]


def test_auc_over_common_interval(summary: pd.DataFrame) -> None:
    low, high = common_bpp_range(summary)
    curve_ranges = summary.dropna(subset=["curve"]).groupby("curve")["bpp"].agg(["min", "max"])
    assert low == pytest.approx(curve_ranges["min"].max()) and high == pytest.approx(curve_ranges["max"].min())
    table = auc_table(summary).set_index("curve")
    assert (table["bpp_min"] == low).all() and (table["bpp_max"] == high).all()
    for curve in (JPEG_420, JPEG_444, WEBP_M6):
        for metric in ("psnr_rgb", "ms_ssim", "psnr_hvs", "psnr_hvs_m"):
            value = table.loc[curve, f"auc_{metric}"]
            points = summary[summary["curve"] == curve]
            lo, hi = points[metric].min(), points[metric].max()
            assert lo * (high - low) - 1e-9 <= value <= hi * (high - low) + 1e-9
    # A range outside a curve's rates: NaN with a note, not an exception.
    outside = auc_table(summary, (0.01, 100.0))
    assert outside["auc_psnr_rgb"].isna().all() and outside["note"].str.contains("not covered").all()


# --- report -------------------------------------------------------------------------------------------


def test_write_report_files_and_plots(metadata: pa.Table, tmp_path) -> None:
    out = tmp_path / "report"
    path = write_report(metadata, out)
    assert path == out / "report.md" and path.is_file()
    for name in ("summary.csv", "summary.parquet", "bd_rate.csv", "auc.csv"):
        assert (out / name).stat().st_size > 0
    assert len(pd.read_csv(out / "summary.csv")) == 15
    assert len(pq.read_table(out / "summary.parquet")) == 15
    bd = pd.read_csv(out / "bd_rate.csv")
    assert set(bd["anchor"]) == {JPEG_420} and len(bd) == 4

    text = path.read_text(encoding="utf-8")
    assert text.startswith("# ")
    assert "2 images" in text.splitlines()[2] and "73,728" in text
    assert f"## BD-rate vs `{JPEG_420}`" in text and "Negative" in text
    assert "webp:lossless=true" in text and "## Timing" in text and "## Area under" in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"rd_psnr_rgb.png", "rd_ms_ssim_db.png", "rd_psnr_hvs_m.png", "timing.png"} <= set(images)
    for name in images:
        assert not name.startswith("/")
        with Image.open(out / name) as png:
            assert png.format == "PNG"
            assert png.width > 300 and png.height > 200


def test_write_report_to_fsspec_url_and_spec_anchor(metadata: pa.Table) -> None:
    url = "memory://nicbeam-test-analysis/report"
    location = write_report(metadata, url, anchor="jpeg:subsampling=444")
    assert location == f"{url}/report.md"
    fs = fsspec.filesystem("memory")
    with fsspec.open(location, "rt", encoding="utf-8") as handle:
        text = handle.read()
    assert f"## BD-rate vs `{JPEG_444}`" in text
    with fsspec.open(f"{url}/rd_psnr_rgb.png", "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    with fsspec.open(f"{url}/summary.parquet", "rb") as handle:
        assert pq.read_table(handle).num_rows == 15
    fs.rm("/nicbeam-test-analysis", recursive=True)


def test_write_report_compare_to_adds_bd_sections(metadata: pa.Table, tmp_path) -> None:
    out = tmp_path / "report"
    path = write_report(metadata, out, compare_to=["jpeg:subsampling=444", "nosuchcodec"])
    text = path.read_text(encoding="utf-8")
    assert f"## BD-rate vs `{JPEG_420}`" in text and f"## BD-rate vs `{JPEG_444}`" in text
    assert "`nosuchcodec`" in text
    bd = pd.read_csv(out / "bd_rate.csv")
    assert set(bd["anchor"]) == {JPEG_420, JPEG_444} and len(bd) == 8
    # each anchor is 0 against itself, and the two tables are each other's inverse in sign
    self_rows = bd[bd["curve"] == bd["anchor"]]
    assert len(self_rows) == 2 and (self_rows["bd_rate_psnr_rgb"].abs() < 1e-9).all()
    a = bd[(bd["anchor"] == JPEG_420) & (bd["curve"] == JPEG_444)]["bd_rate_psnr_rgb"].item()
    b = bd[(bd["anchor"] == JPEG_444) & (bd["curve"] == JPEG_420)]["bd_rate_psnr_rgb"].item()
    assert (a > 0) == (b < 0)
