"""AUC vs training steps of one RNN variant (issue 14's "training curve that shows whether more steps would
help"): each snapshot of a training run is exported through ``nicbeam train --export-only --checkpoint`` and
measured with ``bench_rnn_table``'s own rows and AUC (same Kodak images, same definition), beside the JPEG rows
of the same run as horizontal references.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rnn_training_curve.py --run-dir /work/train-runs/rnn-gru-oneshot \\
        --variant rnn-gru-oneshot [--steps 4000,8000,...] [--images 4] [--out benchmarks/results/rnn-curve-gru-oneshot]

Steps default to every ``snapshot-stepN.pt`` of the run plus its ``checkpoint.pt``. Each point costs about two
CPU-minutes at 4 images (16-iteration encode, raw and context-coded, and one progressive decode per image). The
CPU hours per point come from the checkpoint's own record (``cpu_s``; a run older than that record counts its
earlier wall-clock time, an upper bound, as the recipe says).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_rnn_table as table  # noqa: E402


def checkpoints(run_dir: Path, steps: list[int] | None) -> list[tuple[int, Path]]:
    """(step, path) of the run's snapshots and its checkpoint, optionally only those at ``steps``."""
    found = {int(p.stem.split("step")[1]): p for p in run_dir.glob("snapshot-step*.pt")}
    final = run_dir / "checkpoint.pt"
    if final.exists():
        found.setdefault(record(final)[0], final)
    chosen = sorted(found.items()) if steps is None else [(s, found[s]) for s in steps if s in found]
    missing = [] if steps is None else sorted(set(steps) - set(found))
    if missing:
        raise SystemExit(f"no snapshot at steps {missing} in {run_dir} (have {sorted(found)})")
    return chosen


@functools.lru_cache(maxsize=None)
def record(path: Path) -> tuple[int, float]:
    """(step, CPU hours) a checkpoint records (loaded once per path)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return int(state["step"]), float(state.get("cpu_s", state["elapsed_s"])) / 3600


def plot(points: list[dict], references: list[dict], variant: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric, label in zip(axes, ("ms_ssim_auc", "psnr_hvs_auc"), ("MS-SSIM AUC", "PSNR-HVS AUC")):
        ax.plot([p["step"] for p in points], [p[metric] for p in points], "-o", label=variant)
        ax.plot([p["step"] for p in points], [p[f"raw_{metric}"] for p in points], ":.", label=f"{variant} raw bits")
        for ref, style in zip(references, ("--", "-.")):
            ax.axhline(ref[metric], linestyle=style, color="0.4", label=ref["row"])
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{label} over [{table.INTERVAL[0]}, {table.INTERVAL[1]}] bpp")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    from PIL import Image

    from nicbeam.pipelines.cli import main as cli

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--variant", required=True, help="the codec the run trains, e.g. rnn-gru-oneshot")
    ap.add_argument("--steps", default=None, help="comma-separated snapshot steps (default: all)")
    ap.add_argument("--kodak", type=Path, default=table.KODAK)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None, help="writes OUT.json, OUT.md, OUT.png")
    args = ap.parse_args()
    out = args.out or table.RESULTS / f"rnn-curve-{args.variant.removeprefix('rnn-')}"
    steps = [int(s) for s in args.steps.split(",")] if args.steps else None
    points_to_measure = checkpoints(args.run_dir, steps)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(args.kodak.glob("kodim*.png"))[: args.images]]
    references = [table.jpeg_row(s, images) for s in ("444", "420")]
    for ref in references:
        for metric in ("ms_ssim", "psnr_hvs"):
            ref[f"{metric}_auc"], _ = table.area(ref["curve"], metric)
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for step, path in points_to_measure:
            export_dir = Path(tmp) / f"step{step}"
            if cli(["train", "--run-dir", str(args.run_dir), "--export-only", "--checkpoint", str(path),
                    "--export", args.variant, "--export-dir", str(export_dir)]) != 0:
                raise SystemExit(f"export of {path} failed")
            coded, raw = table.rnn_rows(args.variant, export_dir / f"{args.variant}.safetensors", images, 1, 0)
            point = {"step": step, "cpu_hours": round(record(path)[1], 3)}
            for metric in ("ms_ssim", "psnr_hvs"):
                point[f"{metric}_auc"], _ = table.area(coded["curve"], metric)
                point[f"raw_{metric}_auc"], _ = table.area(raw["curve"], metric)
            point["psnr_16"] = coded["curve"][-1]["psnr"]
            point["bpp_16"] = coded["curve"][-1]["bpp"]
            points.append(point)
            print(f"step {step}: {json.dumps(point)}", flush=True)
    header = (f"{args.variant}, run {args.run_dir.name}: AUC vs training step on the first {len(images)} Kodak images "
              f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); AUC as bench_rnn_table.py (mean curve, "
              f"[{table.INTERVAL[0]}, {table.INTERVAL[1]}] bpp, linear, flat extension); CPU hours from the checkpoints")
    lines = ["| step | CPU h | MS-SSIM AUC | PSNR-HVS AUC | raw bits MS-SSIM / PSNR-HVS AUC | PSNR / bpp at 16 it. |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {p['step']} | {p['cpu_hours']:.2f} | {p['ms_ssim_auc']:.4f} | {p['psnr_hvs_auc']:.2f} | "
              f"{p['raw_ms_ssim_auc']:.4f} / {p['raw_psnr_hvs_auc']:.2f} | {p['psnr_16']:.2f} / {p['bpp_16']:.3f} |" for p in points]
    lines += [f"| {r['row']} (same images) | | {r['ms_ssim_auc']:.4f} | {r['psnr_hvs_auc']:.2f} | | |" for r in references]
    text = header + "\n\n" + "\n".join(lines) + "\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"header": header, "points": points, "references": [
        {k: r[k] for k in ("row", "ms_ssim_auc", "psnr_hvs_auc")} for r in references]}, indent=1) + "\n")
    plot(points, references, args.variant, out.with_suffix(".png"))
    print(f"wrote {out}.md/.json/.png")


if __name__ == "__main__":
    main()
