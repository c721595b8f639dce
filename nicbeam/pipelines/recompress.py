"""The recompress job: an archive of JPEG/PNG files to smaller, verified nicbeam streams, resumably.

    MatchForRecompress -> RecompressFiles -> {manifest, errors} -> WriteTable each -> summary + report

Runs through :func:`nicbeam.pipelines.options.run_job` like compress (same runners, run directories,
progress and ``_SUCCESS``/``_LATEST``); the accounting reconciles the manifest (one row per input) instead
of a metadata table, and the end of a complete run writes ``_runs/<run>/report/`` (Markdown + plot).
"""

from __future__ import annotations

import argparse
import sys

from nicbeam.transforms.paths import join
from nicbeam.transforms.recompress import RecompressConfig


def build_batch(pipeline, cfg: RecompressConfig, input_spec: str):
    from nicbeam.transforms.recompress import MatchForRecompress, RecompressFiles
    from nicbeam.transforms.recompress_records import MANIFEST_SCHEMA
    from nicbeam.transforms.schema import ERROR_SCHEMA
    from nicbeam.transforms.write import WriteTable

    sources = pipeline | "Match" >> MatchForRecompress(input_spec, cfg.output, run_url=cfg.run_url,
                                                       progress_dir=cfg.progress_dir)
    outputs = sources | "Recompress" >> RecompressFiles(cfg)
    return {
        name: outputs[name] | f"Write{name.title()}" >> WriteTable(join(cfg.run_url, name), join(cfg.tmp_url, name),
                                                                   schema)
        for name, schema in (("manifest", MANIFEST_SCHEMA), ("errors", ERROR_SCHEMA))
    }


def read_manifest(run_url: str) -> list[dict]:
    """Every row of a run's committed manifest table."""
    import pyarrow.parquet as pq

    from nicbeam.transforms.paths import resolve

    fs, path = resolve(join(run_url, "manifest"))
    rows: list[dict] = []
    for name in sorted(fs.glob(path.rstrip("/") + "/*.parquet")):
        with fs.open(name, "rb") as handle:
            rows.extend(pq.read_table(handle).to_pylist())
    return rows


def summarize(run_url: str, *, job: str, settings: list[str], matched: int | None, counters: dict) -> dict:
    """Reconcile the run: every matched input exactly once in the manifest, every failure once in errors."""
    from collections import Counter

    from nicbeam.analysis.recompress_report import recompress_stats
    from nicbeam.transforms.accounting import table_column_values

    rows = read_manifest(run_url)
    errors = table_column_values(join(run_url, "errors"), ["source_uri", "reason"])
    per_source = Counter(r["source_uri"] for r in rows)
    duplicates = sum(n - 1 for n in per_source.values() if n > 1)
    failed = sorted(r["source_uri"] for r in rows if r["status"] == "failed")
    balanced = (matched is not None and matched == len(rows) and duplicates == 0
                and failed == sorted(errors["source_uri"]))
    return {
        "job": job,
        "inputs": matched,
        "settings": settings,
        "ok_rows": len(rows) - len(failed),
        "error_rows": len(failed),
        "errors_by_reason": dict(sorted(Counter(errors["reason"]).items())),
        "expected_outcomes": matched,
        "accounted_outcomes": len(rows),
        "duplicates": duplicates,
        "balanced": balanced,
        "counters": counters,
        "recompress": recompress_stats(rows),
    }


def check_paths(input_spec: str, output: str) -> None:
    """Refuse OUTPUT equal to INPUT or INPUT inside OUTPUT (OUTPUT inside INPUT is fine: it is excluded)."""
    from nicbeam.transforms.paths import glob_base, has_magic, is_within, resolve

    fs, path = resolve(input_spec)
    if not has_magic(path) and not fs.exists(path):
        raise SystemExit(f"nicbeam: INPUT {input_spec!r} does not exist")
    base = glob_base(path) if has_magic(path) else path
    root = fs.unstrip_protocol(base) if base else None
    if root and is_within(root, output):
        raise SystemExit(f"nicbeam: INPUT {input_spec!r} is OUTPUT {output!r} or inside it; outputs are excluded "
                         "from the match, so nothing would be recompressed. Choose an OUTPUT outside INPUT or "
                         "a sub-folder of it.")


def make_config(args: argparse.Namespace, run_id: str) -> RecompressConfig:
    from nicbeam.codecs.errors import InvalidParameterError
    from nicbeam.codecs.spec import make_setting, parse_codec_spec, parse_params
    from nicbeam.transforms.quality_search import METRICS

    from nicbeam.transforms.recompress_modes import MODES

    modes = tuple(dict.fromkeys(m.strip() for spec in args.mode for m in spec.split(",") if m.strip()))
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise InvalidParameterError(f"--mode {', '.join(unknown) or '(none)'}: choose from {', '.join(MODES)}")
    lossless = []
    if "lossless" in modes:
        for spec in args.lossless_codec or ["png", "jpegxl", "webp"]:
            for setting in parse_codec_spec(spec):
                if "lossless" in setting.param_dict and "lossless" not in setting.explicit:
                    setting = make_setting(setting.codec, {**{k: setting.param_dict[k] for k in setting.explicit},
                                                           "lossless": True})
                if not setting.build().lossless:
                    raise InvalidParameterError(f"--lossless-codec {spec}: {setting.label} is not lossless")
                lossless.append(setting)
    target = dict(codec=None, params=(), metric=None, value=None)
    if "target-quality" in modes:
        chosen = [(m, getattr(args, "target_" + m.replace("-", "_"))) for m in METRICS]
        chosen = [(m, v) for m, v in chosen if v is not None]
        if not args.codec or len(chosen) != 1:
            raise InvalidParameterError("--mode target-quality needs --codec NAME and exactly one of --target-psnr, "
                                        "--target-msssim, --target-psnr-hvs")
        fixed = make_setting(args.codec, parse_params(args.param))
        target = dict(codec=args.codec, params=tuple((k, fixed.param_dict[k]) for k in fixed.explicit),
                      metric=chosen[0][0], value=float(chosen[0][1]))
    settings = tuple([make_setting("jpeg-transcode")] if "lossless-jpeg" in modes else []) + tuple(lossless)
    return RecompressConfig.from_args(
        args, run_id, settings, modes=modes, lossless_settings=tuple(lossless), target_codec=target["codec"],
        target_params=target["params"], target_metric=target["metric"], target_value=target["value"],
        max_steps=args.max_steps, resume=not args.no_resume,
    )


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from nicbeam.codecs.errors import CodecError, UnknownCodecError
    from nicbeam.pipelines import options as opts
    from nicbeam.transforms.quality_search import knob_for

    check_paths(args.input, args.output)
    try:
        cfg = make_config(args, opts.check_run_id(args.run_id))
        if "target-quality" in cfg.modes:
            knob_for(cfg.target_codec, dict(cfg.target_params), device=cfg.device)
    except (CodecError, UnknownCodecError, ValueError) as exc:
        print(f"nicbeam recompress: {exc}", file=sys.stderr)
        return 2

    def after(summary: dict) -> None:
        from nicbeam.analysis.recompress_report import format_stats, write_report

        stats = summary["recompress"]
        print(format_stats(stats), file=sys.stderr)
        try:
            summary["report"] = write_report(read_manifest(cfg.run_url), stats, join(cfg.run_url, "report"),
                                             cfg.run_id)
            print(f"[nicbeam] report: {summary['report']}", file=sys.stderr)
        except Exception as exc:  # the tables stand without the report
            print(f"[nicbeam] report failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    return opts.run_job(
        job="recompress", args=args, extra=extra, cfg=cfg, settings=cfg.labels,
        build=lambda p, c: build_batch(p, c, args.input), after=after, summarize=summarize,
    )
