"""Validation curves of training runs against their CPU time, in one table: runs whose steps cost differently
(e.g. ``tcm-hyperprior`` and ``mbt2018-mean`` from scratch) compare at equal CPU-seconds, not equal steps.

Reads each run's ``checkpoint.pt`` (its history holds every validation, and the CPU time where each segment of the
run began). Validations logged before the trainer recorded CPU time get an estimate, linear in steps between the
known points (step 0 at 0 s, recorded validations and segment starts, ``--anchor`` points, the checkpoint's own
step and ``cpu_s``), marked ``~``; an anchor gives the CPU time at a step known from elsewhere (an earlier
checkpoint), needed where the step cost changed before the trainer recorded segment starts.

    python benchmarks/equal_budget_curve.py tcm=checkpoints/tcm-scratch mbt=checkpoints/mbt-scratch \
        --anchor tcm=4044:4351 --anchor mbt=6811:4351 --reference mbt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def load_run(path: Path) -> dict:
    """A run directory's (or checkpoint file's) step, CPU seconds and validation history."""
    import torch

    ckpt = path / "checkpoint.pt" if path.is_dir() else path
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    if "cpu_s" not in state:
        raise ValueError(f"{ckpt}: no CPU time recorded (checkpoint predates the trainer's cpu_s)")
    return {"step": int(state["step"]), "cpu_s": float(state["cpu_s"]), "history": json.loads(state["history"]),
            "family": state.get("family", "?")}


def validation_points(run: dict, anchors: list[tuple[int, float]] = ()) -> list[dict]:
    """The run's validations, each with its CPU seconds (recorded, or estimated: ``estimated`` True) given extra
    known (step, CPU seconds) ``anchors``."""
    vals = [h for h in run["history"] if "val" in h]
    known = {0: 0.0, **{h["step"]: h["cpu_s"] for h in run["history"] if "cpu_s" in h}, **dict(anchors),
             run["step"]: run["cpu_s"]}
    steps, cpus = zip(*sorted(known.items()))
    if any(b < a for a, b in zip(cpus, cpus[1:])):
        raise ValueError(f"CPU time falls somewhere along the known points {sorted(known.items())}")
    points = []
    for h in vals:
        estimated = "cpu_s" not in h
        cpu = float(np.interp(h["step"], steps, cpus)) if estimated else float(h["cpu_s"])
        points.append({"step": h["step"], "cpu_s": cpu, "estimated": estimated, "val": h["val"]})
    return points


def qualities(points: list[dict]) -> list[str]:
    """The validated quality labels (``q1``, ``q6``, ...) in numeric order."""
    names = {k.split("_", 1)[0] for p in points for k in p["val"]}  # q6_bpp, q6_psnr, q6_ms_ssim -> q6
    return sorted(names, key=lambda q: int(q[1:]))


def _cpu_min(point: dict) -> str:
    return f"{'~' if point['estimated'] else ''}{point['cpu_s'] / 60:.1f}"


def bd_rate_vs(point: dict, reference: list[dict], qs: list[str]) -> str:
    """PSNR BD-rate and BD-PSNR of one validation against the reference run's validation nearest in CPU time
    (PCHIP over the validated qualities), with that validation's CPU minutes; or why they cannot be computed."""
    from nicbeam.metrics.rd import bd_psnr, bd_rate

    ref = min(reference, key=lambda r: abs(r["cpu_s"] - point["cpu_s"]))
    curve = lambda p: ([p["val"][f"{q}_bpp"] for q in qs], [p["val"][f"{q}_psnr"] for q in qs])  # noqa: E731
    try:
        value = (f"{bd_rate(*curve(ref), *curve(point), min_points=3):+.1f} % / "
                 f"{bd_psnr(*curve(ref), *curve(point), min_points=3):+.2f} dB")
    except ValueError as err:  # curves that do not overlap or are not yet monotonic this early
        value = f"n/a ({str(err).split(':')[0]})"
    return f"{value} (at {_cpu_min(ref)})"


def table(runs: dict[str, dict], anchors: dict[str, list[tuple[int, float]]] | None = None,
          reference: str | None = None) -> str:
    """Markdown: every validation of every run, ordered by CPU time; with ``reference``, each other run's
    validation also gets its PSNR BD-rate and BD-PSNR against the reference's validation nearest in CPU time."""
    anchors = anchors or {}
    points = {label: validation_points(run, anchors.get(label, [])) for label, run in runs.items()}
    rows = sorted(((label, p) for label, ps in points.items() for p in ps), key=lambda r: (r[1]["cpu_s"], r[0]))
    qs = qualities([p for _, p in rows])
    extra = [f"BD-rate / BD-PSNR vs {reference} (its CPU min)"] if reference else []
    header = ["run", "step", "CPU min"] + [f"{q} bpp / PSNR" for q in qs] + extra
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, p in rows:
        cells = [f"{p['val'][f'{q}_bpp']:.4f} / {p['val'][f'{q}_psnr']:.2f}" if f"{q}_bpp" in p["val"] else ""
                 for q in qs]
        if reference:
            cells.append("" if label == reference else bd_rate_vs(p, points[reference], qs))
        lines.append(f"| {label} | {p['step']:,} | {_cpu_min(p)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR", help="run directory or checkpoint file")
    parser.add_argument("--anchor", action="append", default=[], metavar="LABEL=STEP:CPU_S",
                        help="the CPU seconds of run LABEL at STEP, known from elsewhere (repeatable)")
    parser.add_argument("--reference", default=None, metavar="LABEL",
                        help="add each other run's PSNR BD-rate and BD-PSNR against this run at the nearest CPU time")
    args = parser.parse_args(argv)
    anchors: dict[str, list[tuple[int, float]]] = {}
    for spec in args.anchor:
        label, _, point = spec.partition("=")
        step, _, cpu = point.partition(":")
        try:
            anchors.setdefault(label, []).append((int(step), float(cpu)))
        except ValueError:
            parser.error(f"--anchor takes LABEL=STEP:CPU_S (e.g. tcm=4044:4351), not {spec!r}")
    runs = {}
    for spec in args.runs:
        label, _, path = spec.rpartition("=")
        run = load_run(Path(path))
        runs[label or Path(path).name] = run
        print(f"{label or path}: {run['family']}, step {run['step']:,}, {run['cpu_s']:,.0f} CPU-s")
    print()
    unknown = set(anchors) - set(runs)
    if unknown:
        parser.error(f"--anchor for runs not given: {sorted(unknown)}")
    if args.reference and args.reference not in runs:
        parser.error(f"--reference {args.reference!r} is not one of the runs {sorted(runs)}")
    print(table(runs, anchors, args.reference))


if __name__ == "__main__":
    main()
