"""Multi-process scaling of ``nicbeam compress`` on the local runner: 2 workers over 1 worker.

    PYTHONPATH=. python benchmarks/bench_pipeline_scaling.py [--pause-pid PID] [--images 240] [--mode multi_processing]
        [--codec webp] [--param method=6 --param quality=75] [--metrics none] [--workers 1,2]

Each run is a fresh ``python -m nicbeam compress IN OUT ... --direct_running_mode=multi_processing
--direct_num_workers=N`` subprocess on the same corpus (Kodak PNGs copied until there are ``--images``);
the wall time is the whole command (start-up included). While it runs, its process tree is polled in
``/proc`` and the CPU seconds of every process are reported, to check that the encode work is actually
spread over the SDK worker processes (it is, only if the pipeline reshuffles after matching). With
``--startup-images K`` (default 2) each worker count is also run on K images first, which separates the
fixed start-up cost (Python + Beam import in the launcher and in every SDK worker) from the marginal
throughput.

The speed-up needs free cores: ``--pause-pid PID`` sends SIGSTOP to that process (e.g. a training run:
``pgrep -f "nicbeam train"``) for the duration of the measurements and SIGCONT afterwards, also on
Ctrl-C or SIGTERM.

Goal: speed-up(2 workers / 1 worker) >= 1.7 on a 2-core machine. The script reports; it does not assert.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline_common import PYTHON, make_kodak_corpus, paused, reproduce_line, run_tree  # noqa: E402

GOAL = 1.7


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=480,
                    help="number of inputs (Kodak copies), default 240 (~25 s of webp m6 work on one core)")
    ap.add_argument("--codec", default="webp")
    ap.add_argument("--param", action="append", default=None, metavar="K=V",
                    help="codec parameter, repeatable (default: method=6 quality=75 for webp)")
    ap.add_argument("--metrics", choices=("none", "fast", "all"), default="none")
    ap.add_argument("--workers", default="1,2", help="comma-separated --direct_num_workers values; first is the baseline")
    ap.add_argument("--mode", default="multi_processing", choices=("multi_processing", "multi_threading", "in_memory"),
                    help="--direct_running_mode for every run (default multi_processing)")
    ap.add_argument("--pause-pid", type=int, default=None, help="SIGSTOP this process while measuring")
    ap.add_argument("--startup-images", type=int, default=2,
                    help="also time each worker count on this many images, to separate start-up from "
                         "throughput (marginal images/s = extra images / extra seconds); 0: skip")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()
    param_args = args.param if args.param is not None else (["method=6", "quality=75"] if args.codec == "webp" else [])
    workers = [int(w) for w in args.workers.split(",")]
    signal.signal(signal.SIGTERM, _sigterm)

    tmp = Path(tempfile.mkdtemp(prefix="nicbeam-bench-scaling-"))
    results, small = {}, {}
    try:
        root = tmp / "in"
        files = make_kodak_corpus(root, args.images)
        small_root = tmp / "in-small"
        if args.startup_images:
            make_kodak_corpus(small_root, args.startup_images)
        runs = [(n, root, "") for n in workers]
        if args.startup_images:
            runs = [(n, small_root, "-small") for n in workers] + runs
        with paused(args.pause_pid):
            for n, src, tag in runs:
                out = tmp / f"out-w{n}{tag}"
                cmd = [PYTHON, "-m", "nicbeam", "compress", str(src), str(out), "--codec", args.codec,
                       "--metrics", args.metrics, "--run_id", f"w{n}{tag}", "--progress_interval", "0",
                       f"--direct_running_mode={args.mode}", f"--direct_num_workers={n}"]
                for p in param_args:
                    cmd += ["--param", p]
                res = run_tree(cmd)
                res["written"] = sum(1 for p in out.rglob("*.nicb") if "_runs" not in p.parts)
                expected = args.startup_images if tag else len(files)
                (small if tag else results)[n] = res
                print(f"[workers={n}{', start-up run' if tag else ''}] {res['wall_s']:.2f} s, rc {res['rc']}, "
                      f"streams {res['written']}/{expected}", flush=True)
                if res["rc"] != 0:
                    print(res["stderr"], file=sys.stderr)
    finally:
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    base = workers[0]
    n_img = len(files)
    setting = args.codec + "".join(f" {p}" for p in param_args)
    print()
    print(f"Scaling: nicbeam compress, --direct_running_mode={args.mode}, N workers vs "
          f"{base} worker(s)")
    print(f"codec: {setting}; metrics: {args.metrics}; images: {n_img}; cpu cores: {os.cpu_count()}; "
          f"paused pid: {args.pause_pid or 'none'}")
    print(f"{'workers':>8}{'seconds':>10}{'images/s':>10}{'speed-up':>10}   busy processes (CPU s, >= 0.5 s)")
    for n in workers:
        r = results.get(n)
        if r is None:
            continue
        busy = sorted(((cpu, pid, name) for pid, (cpu, name) in r["cpu_by_pid"].items()), reverse=True)
        busy_txt = ", ".join(
            f"{'sdk_worker' if 'sdk_worker' in name else 'main' if 'nicbeam' in name else 'other'}:{cpu:.1f}"
            for cpu, pid, name in busy if cpu >= 0.5
        )
        speed = results[base]["wall_s"] / r["wall_s"] if base in results else float("nan")
        print(f"{n:>8}{r['wall_s']:>10.2f}{n_img / r['wall_s']:>10.2f}{speed:>10.3f}   {busy_txt}")
    if base in results and len(workers) > 1 and workers[-1] in results:
        speed = results[base]["wall_s"] / results[workers[-1]]["wall_s"]
        print(f"speed-up {workers[-1]}/{base} workers: {speed:.3f}; goal >= {GOAL}: {'MET' if speed >= GOAL else 'MISSED'}")
    if small and all(n in small and n in results for n in workers):
        extra = n_img - args.startup_images
        print(f"start-up ({args.startup_images} images) and marginal throughput (the other {extra} images):")
        marginal = {}
        for n in workers:
            dt = results[n]["wall_s"] - small[n]["wall_s"]
            marginal[n] = extra / dt if dt > 0 else float("nan")
            print(f"{n:>8} workers: start-up run {small[n]['wall_s']:.2f} s; marginal {marginal[n]:.2f} images/s "
                  f"(x{marginal[n] / marginal[base]:.3f})")
    print("reproduce:", reproduce_line("benchmarks/bench_pipeline_scaling.py", sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
