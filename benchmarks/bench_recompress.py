"""Savings, throughput and memory of ``nicbeam recompress`` on a Kodak-made archive.

    PYTHONPATH=. python benchmarks/bench_recompress.py [--images 24] [--target-psnr 38] [--memory-counts 100,1000]

Corpus (built in a temp folder): the Kodak PNGs, plus each saved by Pillow (libjpeg-turbo, standard Huffman
tables, baseline) as JPEG at qualities 50, 75, 90 with 4:2:0 and 4:4:4 chroma: 6 JPEGs + 1 PNG per image;
and (unless ``--no-variants``) q75 4:2:0 once with optimised Huffman tables and once progressive, to show
how much of the saving depends on how the JPEG was written. Throughput uses the 6 main JPEG classes.

1. Savings per mode: one run with ``--mode lossless-jpeg --mode lossless`` (JPEGs to JPEG XL lossless
   recompression, PNGs to the smallest of png/jpegxl/webp lossless), one with ``--mode target-quality
   --codec webp --target-psnr DB`` on the PNGs; savings per JPEG class from the manifest.
2. Throughput: the lossless-jpeg run on the JPEGs alone with 1 and with 2 worker processes
   (``--direct_running_mode=multi_processing``), files/s and MB/s of source read, wall clock of the whole
   command (pipeline start included) and the pipeline's own elapsed time.
3. Memory: peak RSS of the process tree recompressing ``N`` small JPEGs (lossless-jpeg) for each N.

Every figure is measured in the run that prints it; nothing is assumed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline_common import PYTHON, kodak_sources, reproduce_line, run_tree  # noqa: E402

QUALITIES = (50, 75, 90)
SUBSAMPLING = {"420": 2, "444": 0}


def jpeg_bytes(image, quality: int, subsampling: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality, subsampling=SUBSAMPLING[subsampling])
    return buf.getvalue()


def build_corpus(root: Path, images: int, variants: bool) -> dict[str, list[Path]]:
    from PIL import Image

    groups: dict[str, list[Path]] = defaultdict(list)
    for src in kodak_sources()[:images]:
        image = Image.open(src).convert("RGB")
        png = root / "png" / src.name
        png.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, png)
        groups["png"].append(png)
        for q in QUALITIES:
            for ss in SUBSAMPLING:
                path = root / f"jpeg_q{q}_{ss}" / (src.stem + ".jpg")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(jpeg_bytes(image, q, ss))
                groups[f"jpeg q{q} {ss}"].append(path)
        if variants:  # how the encoder's own choices move the saving: optimised Huffman tables, progressive
            for name, kwargs in (("optimized", {"optimize": True}), ("progressive", {"progressive": True})):
                path = root / f"variant_q75_420_{name}" / (src.stem + ".jpg")
                path.parent.mkdir(parents=True, exist_ok=True)
                buf = io.BytesIO()
                image.save(buf, "JPEG", quality=75, subsampling=2, **kwargs)
                path.write_bytes(buf.getvalue())
                groups[f"variant q75 420 {name}"].append(path)
    return groups


def small_jpegs(root: Path, count: int, size: int = 128) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        base = 128 + 90 * np.sin(xx[..., None] / (5 + i % 7) + np.arange(3)) * np.cos(yy[..., None] / 9)
        pixels = np.clip(base + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)
        sub = root / f"d{i // 100:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"img{i:05d}.jpg").write_bytes(jpeg_bytes(Image.fromarray(pixels), 85, "420"))


def recompress(src: Path, out: Path, *extra: str) -> dict:
    cmd = [PYTHON, "-m", "nicbeam", "recompress", str(src), str(out), "--progress_interval", "0", *extra]
    res = run_tree(cmd, poll_s=0.05)
    if res["rc"] != 0:
        print(res["stderr"], file=sys.stderr)
        raise SystemExit(f"recompress failed ({res['rc']}): {' '.join(cmd)}")
    latest = (out / "_LATEST").read_text().strip()
    res["summary"] = json.loads((out / "_runs" / latest / "summary.json").read_text())
    res["run"] = out / "_runs" / latest
    return res


def manifest_rows(run: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(p) for p in sorted((run / "manifest").glob("*.parquet"))]).to_pylist()


def pct(before: int, after: int) -> str:
    return f"{100.0 * (before - after) / before:6.2f} %" if before else "    n/a"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24, help="Kodak images to use (default all 24)")
    ap.add_argument("--target-psnr", type=float, default=38.0, help="target-quality run: webp at this PSNR")
    ap.add_argument("--memory-counts", default="100,1000", help="corpus sizes of the memory runs")
    ap.add_argument("--no-variants", action="store_true",
                    help="leave out the extra q75 4:2:0 JPEGs with optimised Huffman tables / progressive")
    ap.add_argument("--report-dir", help="copy the savings run's report (report.md, savings.png) here")
    ap.add_argument("--skip", action="append", default=[], choices=("savings", "throughput", "memory"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nicbeam-bench-recompress-"))
    print(f"# nicbeam recompress benchmark; {os.cpu_count()} cpu cores; reproduce: "
          f"{reproduce_line('benchmarks/bench_recompress.py', sys.argv[1:])}", flush=True)
    try:
        corpus = tmp / "corpus"
        groups = build_corpus(corpus, args.images, not args.no_variants)
        n_files = sum(len(v) for v in groups.values())
        total = sum(p.stat().st_size for v in groups.values() for p in v)
        print(f"corpus: {n_files} files, {total / 1e6:.2f} MB ({args.images} Kodak images: PNG + JPEG q"
              f"{'/'.join(map(str, QUALITIES))} x 4:2:0/4:4:4, Pillow {__import__('PIL').__version__})", flush=True)

        if "savings" not in args.skip:
            print("\n## 1. savings per mode", flush=True)
            res = recompress(corpus, tmp / "out-lossless", "--mode", "lossless-jpeg", "--mode", "lossless")
            rows = manifest_rows(res["run"])
            if args.report_dir:
                shutil.copytree(res["run"] / "report", args.report_dir, dirs_exist_ok=True)
            by_dir: dict[str, list[dict]] = defaultdict(list)
            for r in rows:
                by_dir[Path(r["rel_path"]).parts[0]].append(r)
            print(f"{'group':<30}{'files':>6}{'recompressed':>14}{'MB before':>11}{'MB after':>10}{'saved':>10}"
                  f"{'min':>8}{'max':>8}")
            for name in sorted(by_dir):
                rs = by_dir[name]
                before = sum(r["source_bytes"] for r in rs)
                after = sum(r["output_bytes"] if r["status"] == "recompressed" else r["source_bytes"] for r in rs)
                per = [100.0 * r["bytes_saved"] / r["source_bytes"] for r in rs]
                print(f"{name:<30}{len(rs):>6}{sum(r['status'] == 'recompressed' for r in rs):>14}"
                      f"{before / 1e6:>11.3f}{after / 1e6:>10.3f}{pct(before, after):>10}"
                      f"{min(per):>7.1f}%{max(per):>7.1f}%")
            issue = [r for r in rows if r["rel_path"].startswith("jpeg_q")]
            before = sum(r["source_bytes"] for r in issue)
            after = sum(r["output_bytes"] if r["status"] == "recompressed" else r["source_bytes"] for r in issue)
            print(f"JPEG XL lossless recompression of the {len(issue)} Pillow JPEGs (q50/75/90 x 4:2:0/4:4:4, "
                  f"standard Huffman tables, baseline): {before / 1e6:.3f} -> {after / 1e6:.3f} MB, saved "
                  f"{pct(before, after).strip()}")
            stats = res["summary"]["recompress"]
            for mode, g in stats["by_mode"].items():
                print(f"mode {mode}: {g['recompressed']}/{g['files']} files, {g['bytes_before'] / 1e6:.3f} -> "
                      f"{g['bytes_after'] / 1e6:.3f} MB, saved {g['saved_pct']:.2f} %")
            chosen = defaultdict(int)
            for r in rows:
                if r["mode"] == "lossless" and r["status"] == "recompressed":
                    chosen[r["setting"]] += 1
            print(f"lossless: smallest codec per PNG: {dict(chosen)}; kept {stats['kept_by_reason']}; "
                  f"failed {stats['failed_by_reason']}; wall {res['wall_s']:.1f} s")
            tq = recompress(corpus / "png", tmp / "out-tq", "--mode", "target-quality", "--codec", "webp",
                            "--target-psnr", str(args.target_psnr))
            trows = manifest_rows(tq["run"])
            st = tq["summary"]["recompress"]
            reached = [r["quality_reached"] for r in trows if r["status"] == "recompressed"]
            steps = [r["search_steps"] for r in trows if r["search_steps"]]
            qs = sorted(json.loads(r["params"])["quality"] for r in trows if r["status"] == "recompressed")
            print(f"mode target-quality (webp, PSNR >= {args.target_psnr:g} dB, PNG sources): "
                  f"{st['by_status']}, {st['bytes_before'] / 1e6:.3f} -> {st['bytes_after'] / 1e6:.3f} MB, saved "
                  f"{st['saved_pct']:.2f} %; reached PSNR {min(reached):.2f}..{max(reached):.2f} dB; webp quality "
                  f"{qs[0]}..{qs[-1]} (median {qs[len(qs) // 2]}); {min(steps)}..{max(steps)} trials per image; "
                  f"kept {st['kept_by_reason']}; wall {tq['wall_s']:.1f} s")

        if "throughput" not in args.skip:
            print("\n## 2. throughput, lossless-jpeg on the JPEGs", flush=True)
            jpegs = tmp / "jpegs"
            for name, paths in groups.items():
                if name.startswith("jpeg q"):
                    for p in paths:
                        dst = jpegs / p.parent.name / p.name
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(p, dst)
            mb = sum(p.stat().st_size for p in jpegs.rglob("*.jpg")) / 1e6
            files = sum(1 for _ in jpegs.rglob("*.jpg"))
            base = None
            print(f"load average (1 min) before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)")
            for workers in (1, 2):
                opts = [] if workers == 1 else ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
                res = recompress(jpegs, tmp / f"out-w{workers}", "--mode", "lossless-jpeg", *opts)
                elapsed = res["summary"]["elapsed_s"]
                base = base or res["wall_s"]
                print(f"{workers} worker process(es){' (in-process)' if workers == 1 else ''}: {files} files, "
                      f"{mb:.2f} MB in {res['wall_s']:.1f} s wall ({elapsed:.1f} s pipeline): "
                      f"{files / res['wall_s']:.2f} files/s, {mb / res['wall_s']:.2f} MB/s wall; "
                      f"{files / elapsed:.2f} files/s, {mb / elapsed:.2f} MB/s pipeline; speed-up vs 1: "
                      f"{base / res['wall_s']:.2f}x; load average after: {os.getloadavg()[0]:.1f}", flush=True)

        if "memory" not in args.skip:
            print("\n## 3. peak memory vs corpus size (lossless-jpeg, 128x128 JPEGs q85)", flush=True)
            counts = [int(c) for c in args.memory_counts.split(",")]
            peaks = {}
            for count in counts:
                src = tmp / f"mem-{count}"
                small_jpegs(src, count)
                res = recompress(src, tmp / f"mem-out-{count}", "--mode", "lossless-jpeg")
                peaks[count] = res["peak_tree_rss_kb"]
                s = res["summary"]
                print(f"{count} files: {res['wall_s']:.1f} s, {s['recompress']['by_status']}, tree peak "
                      f"{res['peak_tree_rss_kb'] / 1024:.1f} MiB, child maxrss {res['child_maxrss_kb'] / 1024:.1f} MiB",
                      flush=True)
            print(f"peak RSS {counts[-1]} / {counts[0]} files: {peaks[counts[-1]] / peaks[counts[0]]:.2f}x "
                  f"(flat: <= 1.2)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
