"""Per-setting rate-distortion summaries of ``nicbeam evaluate`` metadata, and their grouping into curves.

The metadata has one row per (image, codec setting) with the columns of
:data:`nicbeam.transforms.schema.METADATA_SCHEMA`. :func:`rd_summary` reduces it to one row per setting.

Which mean is an RD point
    Following CompressAI (``compressai.utils.eval_model`` averages each image's bpp and each image's PSNR
    over the test set), an RD point is the **mean per-image bpp** and the **mean per-image quality** of a
    setting over its images: ``bpp``, ``psnr_rgb``, ``psnr_y``, ``ms_ssim``, ``psnr_hvs`` and ``psnr_hvs_m``
    (and ``lpips``, ``nima_mean``, ``nima_std`` when ``evaluate --metric`` computed them) in the summary are such means, and they are what BD-rate, AUC and the plots use. For MS-SSIM in
    decibels the summary's ``ms_ssim_db`` is, again as in CompressAI (``compressai.utils.plot``), the dB
    value of the mean MS-SSIM, ``-10 log10(1 - mean(ms_ssim))``; the mean of the per-image dB values is
    kept as ``ms_ssim_db_mean`` for reference. ``bpp_aggregate`` (total bits / total pixels) weights large
    images more and is reported next to the mean but not used for curves.

    Quality means skip null values (a metric the job could not compute for an image, e.g. MS-SSIM of an
    image smaller than 161 pixels); ``n_<metric>`` counts the images behind each mean. A per-image value
    of +inf (identical reconstruction) makes the mean +inf, which is correct for lossless settings and
    makes a lossy point unusable for BD-rate (reported as such, never silently clipped).

Curves
    Lossy settings of one codec form RD curves: a curve is the codec name plus every parameter except the
    one *swept* parameter, the parameter that varies within the codec's settings (``quality`` for
    ``jpeg:quality=30,50,70,90``). When several parameters vary (``jpeg:quality=30,50:subsampling=420,444``)
    the swept one is the first of :data:`SWEPT_PARAM_NAMES` among them, else the one with the most
    distinct values; every combination of the others is its own curve. A curve is labelled by its codec
    and the parameters that tell it apart from the codec's other curves: ``jpeg (subsampling=444)``, or
    plain ``jpeg`` when the codec has a single curve. Lossless settings are not curve members (their
    ``curve`` is null); they are reported on their own.
"""

from __future__ import annotations

import glob as _glob
import json
import math
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

#: Parameter names taken as the swept (quality-like) parameter when several parameters of a codec vary,
#: in order of preference.
SWEPT_PARAM_NAMES: tuple[str, ...] = (
    "quality",
    "q",
    "quality_level",
    "level",
    "lmbda",
    "lambda",
    "distance",
    "qp",
    "crf",
    "cq_level",
    "rate",
    "bitrate",
    "bpp",
    "psnr",
)

#: Per-image quality columns averaged into each RD point (higher is better except :data:`LOWER_IS_BETTER`;
#: the perceptual ones are null unless the job ran ``--metric lpips`` / ``--metric nima``).
QUALITY_COLUMNS: tuple[str, ...] = ("psnr_rgb", "psnr_y", "ms_ssim", "psnr_hvs", "psnr_hvs_m", "lpips", "nima_mean",
                                    "nima_std")

#: Metric columns where lower is better (distances): BD-rate, plots and tables orient them accordingly.
LOWER_IS_BETTER: frozenset[str] = frozenset({"lpips"})

#: Readable names of the summary's metric columns, used by tables and plots.
METRIC_LABELS: dict[str, str] = {
    "bpp": "bpp",
    "psnr_rgb": "PSNR (RGB)",
    "psnr_y": "PSNR-Y",
    "ms_ssim": "MS-SSIM",
    "ms_ssim_db": "MS-SSIM (dB)",
    "ms_ssim_db_mean": "mean MS-SSIM dB",
    "psnr_hvs": "PSNR-HVS",
    "psnr_hvs_m": "PSNR-HVS-M",
    "lpips": "LPIPS",
    "nima_mean": "NIMA mean",
    "nima_std": "NIMA std",
}

#: Units of the summary's metric columns.
METRIC_UNITS: dict[str, str] = {
    "bpp": "bits/pixel",
    "psnr_rgb": "dB",
    "psnr_y": "dB",
    "ms_ssim": "",
    "ms_ssim_db": "dB",
    "ms_ssim_db_mean": "dB",
    "psnr_hvs": "dB",
    "psnr_hvs_m": "dB",
    "lpips": "",
    "nima_mean": "score 1-10",
    "nima_std": "",
}

#: Columns of the frame :func:`rd_summary` returns, in order.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "codec",
    "setting",
    "curve",
    "swept_param",
    "swept_value",
    "curve_params",
    "params",
    "lossless",
    "n_images",
    "total_pixels",
    "total_bytes",
    "bpp",
    "bpp_aggregate",
    "psnr_rgb",
    "psnr_y",
    "ms_ssim",
    "ms_ssim_db",
    "ms_ssim_db_mean",
    "psnr_hvs",
    "psnr_hvs_m",
    "lpips",
    "nima_mean",
    "nima_std",
    "n_psnr_rgb",
    "n_psnr_y",
    "n_ms_ssim",
    "n_psnr_hvs",
    "n_psnr_hvs_m",
    "n_lpips",
    "n_nima_mean",
    "n_nima_std",
    "encode_ms_mean",
    "encode_ms_median",
    "decode_ms_mean",
    "decode_ms_median",
    "encode_mpix_per_s",
    "decode_mpix_per_s",
)

_REQUIRED = ("source_uri", "codec", "setting", "bitstream_bytes", "width", "height")
_NUMERIC = (
    "bitstream_bytes",
    "bpp",
    "psnr_rgb",
    "psnr_y",
    "ms_ssim",
    "ms_ssim_db",
    "psnr_hvs",
    "psnr_hvs_m",
    "lpips",
    "nima_mean",
    "nima_std",
    "encode_ms",
    "decode_ms",
    "width",
    "height",
)


# --------------------------------------------------------------------------------------------- loading
def load_metadata(source: Any, *, dedupe: bool = True) -> pd.DataFrame:
    """Load evaluate-job metadata into a pandas DataFrame (one row per image and setting).

    ``source`` is a pyarrow Table, a pandas DataFrame, or where Parquet lives: a file, a directory (read
    recursively as a dataset; for a job's run folder holding ``metadata/`` that subfolder), a glob pattern, an fsspec URL (``gs://bucket/run/``, ``memory://...``), or a
    list of these. Columns of the metadata schema that are missing are added as nulls; ``bpp`` is
    recomputed from ``bitstream_bytes`` and the image size where it is null. With ``dedupe`` (default),
    repeated (``source_uri``, ``setting``) rows, e.g. from appending a re-run to the same directory, keep
    only the most recently created one.
    """
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
    elif isinstance(source, (pa.Table, pa.RecordBatch)):
        frame = source.to_pandas()
    else:
        frame = _read_parquet(source)
    return _normalise(frame, dedupe=dedupe)


def _read_parquet(source: Any) -> pd.DataFrame:
    import pyarrow.dataset as ds

    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    tables = []
    for item in sources:
        text = os.fspath(item)
        if "://" in text and not text.startswith("file://"):
            import fsspec

            fs, path = fsspec.core.url_to_fs(text)
            if not _glob.has_magic(path) and fs.isdir(path) and fs.isdir(path.rstrip("/") + "/metadata"):
                path = path.rstrip("/") + "/metadata"  # a run folder: its metadata/, not errors/
            paths = fs.glob(path) if _glob.has_magic(path) else [path]
            if not paths:
                raise FileNotFoundError(f"no metadata files match {text!r}")
            targets: Any = paths[0] if len(paths) == 1 else paths
            tables.append(ds.dataset(targets, format="parquet", filesystem=fs).to_table())
            continue
        text = text.removeprefix("file://")
        if _glob.has_magic(text):
            paths = sorted(_glob.glob(text, recursive=True))
            if not paths:
                raise FileNotFoundError(f"no metadata files match {text!r}")
            tables.append(ds.dataset(paths, format="parquet").to_table())
        elif os.path.exists(text):
            if os.path.isdir(os.path.join(text, "metadata")):
                text = os.path.join(text, "metadata")  # a run folder: its metadata/, not errors/
            tables.append(ds.dataset(text, format="parquet").to_table())
        else:
            raise FileNotFoundError(f"metadata path {text!r} does not exist")
    if not tables:
        raise ValueError("no metadata source given")
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
    return table.to_pandas()


def _normalise(frame: pd.DataFrame, *, dedupe: bool) -> pd.DataFrame:
    from nicbeam.transforms.schema import METADATA_SCHEMA

    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"metadata lacks required column(s) {', '.join(missing)}")
    for field in METADATA_SCHEMA:
        if field.name not in frame.columns:
            frame[field.name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    for column in _NUMERIC:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["lossless"] = frame["lossless"].map(lambda v: False if _is_missing(v) else bool(v)).astype(bool)
    pixels = frame["width"] * frame["height"]
    computed = 8.0 * frame["bitstream_bytes"] / pixels
    frame["bpp"] = frame["bpp"].where(frame["bpp"].notna(), computed)
    if dedupe and len(frame):
        frame = frame.reset_index(drop=True)
        order = frame["created_at"]
        if order.notna().any():
            frame = frame.assign(_order=pd.to_datetime(order, utc=True, errors="coerce"))
            frame = frame.sort_values("_order", kind="stable", na_position="first").drop(columns="_order")
        frame = frame.drop_duplicates(["source_uri", "setting"], keep="last").sort_index(kind="stable")
    return frame.reset_index(drop=True)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------- params
def _norm_value(value: Any) -> str:
    """Canonical text of a parameter value so that 420, "420" and 420.0 compare equal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number):
        return str(int(number)) if number.is_integer() else repr(number)
    return text


def parse_setting_label(label: str) -> tuple[str, dict[str, str]]:
    """Split a setting label ``NAME[:K=V][:K2=V2]`` into the codec name and its parameters (as text).

    Unlike :func:`nicbeam.codecs.spec.parse_codec_spec` this needs no codec registry, so metadata of codecs
    that are not installed here can still be read; ``K=V1,V2`` keeps ``V1,V2`` as one value.
    """
    parts = [p.strip() for p in str(label).split(":")]
    params: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if sep and key.strip():
            params[key.strip()] = value.strip()
    return parts[0], params


def codec_defaults(codec: str) -> dict[str, str]:
    """The declared parameter defaults of ``codec`` as canonical text; empty if it is not installed here."""
    try:
        from nicbeam.codecs import get_codec_class

        return {spec.name: _norm_value(spec.default) for spec in get_codec_class(codec).param_specs}
    except Exception:  # unknown or unimportable codec: nothing to fill in
        return {}


def setting_params(params_json: Any, label: str, defaults: Mapping[str, str] | None = None) -> dict[str, str]:
    """A setting's parameters as canonical text: ``defaults``, overridden by the label's parameters,
    overridden by the ``params`` JSON (which the job writes with every parameter resolved)."""
    _, params = parse_setting_label(label)
    result = dict(defaults or {})
    result.update({k: _norm_value(v) for k, v in params.items()})
    if isinstance(params_json, str) and params_json.strip():
        try:
            decoded = json.loads(params_json)
        except ValueError:
            decoded = None
        if isinstance(decoded, Mapping):
            result.update({str(k): _norm_value(v) for k, v in decoded.items()})
    elif isinstance(params_json, Mapping):
        result.update({str(k): _norm_value(v) for k, v in params_json.items()})
    return result


def _sort_key(value: str | None) -> tuple[int, float, str]:
    if value is None:
        return (2, 0.0, "")
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _format_params(params: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def assign_curves(settings: pd.DataFrame) -> pd.DataFrame:
    """Add ``curve``, ``swept_param``, ``swept_value`` and ``curve_params`` to a frame of settings.

    ``settings`` has one row per setting with ``codec``, ``setting``, ``params`` (JSON text or null) and
    ``lossless``. See the module docstring for the grouping rule. Parameters missing from both the JSON and
    the label take the codec's declared defaults when the codec is installed here.
    """
    out = settings.copy()
    out["curve"] = None
    out["swept_param"] = None
    out["swept_value"] = None
    out["curve_params"] = None
    defaults = {codec: codec_defaults(codec) for codec in out["codec"].unique()}
    parsed = {
        idx: setting_params(row["params"], row["setting"], defaults[row["codec"]]) for idx, row in out.iterrows()
    }
    lossy = out[~out["lossless"].astype(bool)]
    for codec, group in lossy.groupby("codec", sort=True):
        group_params = [parsed[idx] for idx in group.index]
        keys = sorted(set().union(*group_params)) if group_params else []
        varying = [k for k in keys if len({p.get(k) for p in group_params}) > 1]
        swept = _choose_swept(varying, keys, group_params)
        fixed_of = {
            idx: {k: v for k, v in sorted(parsed[idx].items()) if k != swept} for idx in group.index
        }
        # Parameters that tell this codec's curves apart name them; the rest is shared and left out.
        fixed_keys = sorted({k for f in fixed_of.values() for k in f})
        distinguishing = [k for k in fixed_keys if len({f.get(k) for f in fixed_of.values()}) > 1]
        for idx in group.index:
            fixed = fixed_of[idx]
            shown = {k: fixed.get(k, "default") for k in distinguishing}
            label = f"{codec} ({_format_params(shown)})" if shown else str(codec)
            out.at[idx, "curve"] = label
            out.at[idx, "swept_param"] = swept
            out.at[idx, "swept_value"] = parsed[idx].get(swept) if swept else None
            out.at[idx, "curve_params"] = json.dumps(fixed, sort_keys=True)
    return out


def _choose_swept(varying: Sequence[str], keys: Sequence[str], params: Sequence[Mapping[str, str]]) -> str | None:
    if len(varying) == 1:
        return varying[0]
    if varying:
        for name in SWEPT_PARAM_NAMES:
            if name in varying:
                return name
        return max(varying, key=lambda k: (len({p.get(k) for p in params}), -varying.index(k)))
    for name in SWEPT_PARAM_NAMES:
        if name in keys:
            return name
    return None


# --------------------------------------------------------------------------------------------- summary
def _db_of(value: float) -> float:
    if not np.isfinite(value):
        return float("nan")
    if value >= 1.0:
        return float("inf")
    return float(-10.0 * np.log10(1.0 - value))


def rd_summary(df: pd.DataFrame | Any) -> pd.DataFrame:
    """One row per (codec, setting): its RD point, curve membership, counts and timings.

    Columns are :data:`SUMMARY_COLUMNS`: ``bpp`` and the quality columns are means over the setting's
    images (the RD point, see the module docstring), ``bpp_aggregate`` is total bits over total pixels,
    ``ms_ssim_db`` is the dB value of the mean MS-SSIM and ``ms_ssim_db_mean`` the mean per-image dB,
    ``encode_ms_*`` / ``decode_ms_*`` are the mean and median per-image times and ``*_mpix_per_s`` the
    throughput (total pixels over total time). Rows are sorted by codec, curve, then mean bpp; lossless
    settings come after their codec's curves. Accepts anything :func:`load_metadata` accepts.
    """
    frame = load_metadata(df)
    rows = []
    for (codec, setting), group in frame.groupby(["codec", "setting"], sort=False, dropna=False):
        pixels = group["width"] * group["height"]
        params = group["params"].dropna()
        row: dict[str, Any] = {
            "codec": codec,
            "setting": setting,
            "params": params.iloc[0] if len(params) else None,
            "lossless": bool(group["lossless"].all()),
            "n_images": int(group["source_uri"].nunique()),
            "total_pixels": int(pixels.sum()) if pixels.notna().all() else float("nan"),
            "total_bytes": int(group["bitstream_bytes"].sum()),
            "bpp": float(group["bpp"].mean()),
            "bpp_aggregate": float(8.0 * group["bitstream_bytes"].sum() / pixels.sum()),
        }
        for column in QUALITY_COLUMNS:
            values = group[column].to_numpy(dtype=np.float64)
            present = values[~np.isnan(values)]
            row[column] = float(present.mean()) if present.size else float("nan")
            row[f"n_{column}"] = int(present.size)
        per_image_db = group["ms_ssim_db"].to_numpy(dtype=np.float64)
        per_image_db = per_image_db[~np.isnan(per_image_db)]
        row["ms_ssim_db"] = _db_of(row["ms_ssim"])
        row["ms_ssim_db_mean"] = float(per_image_db.mean()) if per_image_db.size else float("nan")
        for kind in ("encode", "decode"):
            times = group[f"{kind}_ms"].to_numpy(dtype=np.float64)
            times = times[~np.isnan(times)]
            row[f"{kind}_ms_mean"] = float(times.mean()) if times.size else float("nan")
            row[f"{kind}_ms_median"] = float(np.median(times)) if times.size else float("nan")
            total_s = times.sum() / 1000.0
            timed_pixels = pixels[group[f"{kind}_ms"].notna()].sum()
            row[f"{kind}_mpix_per_s"] = float(timed_pixels / 1e6 / total_s) if total_s > 0 else float("nan")
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    summary = assign_curves(pd.DataFrame(rows))
    summary["_lossless_order"] = summary["lossless"].astype(int)
    summary["_curve_order"] = summary["curve"].fillna("")
    summary = summary.sort_values(
        ["codec", "_lossless_order", "_curve_order", "bpp", "setting"], kind="stable"
    ).drop(columns=["_lossless_order", "_curve_order"])
    return summary[list(SUMMARY_COLUMNS)].reset_index(drop=True)


def curve_labels(summary: pd.DataFrame) -> list[str]:
    """The curves of a summary, in its row order (codec, then label)."""
    labels = summary["curve"].dropna()
    return list(dict.fromkeys(labels))


def curve_points(summary: pd.DataFrame, curve: str) -> pd.DataFrame:
    """The summary rows of one curve, sorted by mean bpp."""
    points = summary[summary["curve"] == curve]
    if points.empty:
        raise KeyError(f"no curve {curve!r}; curves: {', '.join(curve_labels(summary)) or 'none'}")
    return points.sort_values("bpp", kind="stable")


def corpus_stats(df: pd.DataFrame) -> dict[str, Any]:
    """Images, total pixels (each image once), settings and runs in a metadata frame."""
    images = df.drop_duplicates("source_uri")
    pixels = images["width"] * images["height"]
    sizes = sorted({(int(w), int(h)) for w, h in zip(images["width"], images["height"]) if w == w and h == h})
    runs = sorted(str(r) for r in df["run_id"].dropna().unique()) if "run_id" in df else []
    return {
        "n_images": int(len(images)),
        "total_pixels": int(pixels.sum()) if len(images) else 0,
        "n_rows": int(len(df)),
        "n_settings": int(df[["codec", "setting"]].drop_duplicates().shape[0]),
        "sizes": sizes,
        "runs": runs,
    }


def iter_curves(summary: pd.DataFrame) -> Iterable[tuple[str, pd.DataFrame]]:
    """(label, points sorted by bpp) for each curve of a summary."""
    for label in curve_labels(summary):
        yield label, curve_points(summary, label)
