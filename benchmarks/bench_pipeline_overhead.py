"""Beam overhead of ``nicbeam compress``: pipeline throughput over a plain Python loop doing the same work.

    PYTHONPATH=. python benchmarks/bench_pipeline_overhead.py [--images 144] [--codec webp]
        [--param method=6 --param quality=75] [--metrics none|fast|all] [--repeat 3]

Both sides run in this process, one after the other, on the same corpus (the Kodak PNGs copied until
there are ``--images`` files), with the same codec setting:

* loop: for each file: read bytes, ``nicbeam.image_input.load_image``, ``codec.encode``, (with
  ``--metrics`` other than ``none``: ``codec.decode`` + ``nicbeam.transforms.evaluate.quality``), write
  the stream to ``<out>/<rel>.nicb``;
* pipeline: ``nicbeam.pipelines.cli.main(["compress", IN, OUT, ...])`` with the CLI's default runner
  (FnApiRunner in-process, one worker) and the same ``--metrics``; it also matches the inputs, writes the
  metadata/errors Parquet tables and the run summary - that is the overhead being measured.

``apache_beam`` is imported before either timing (an import-time cost paid once per process, not per
image). With ``--repeat N`` the two alternate N times (order swapped every round) and the best wall time and
the best process CPU time of each are kept; the CPU-time ratio is printed too, as it is less
sensitive to other processes on the machine.

Goal: pipeline images/s >= 0.9 x loop images/s. The script reports; it does not assert.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_pipeline_common import make_kodak_corpus, reproduce_line  # noqa: E402

GOAL = 0.9


def run_loop(files: list[Path], root: Path, out: Path, codec_name: str, params: dict, metrics: str) -> float:
    from nicbeam.codecs.spec import make_setting
    from nicbeam.image_input import load_image
    from nicbeam.transforms.evaluate import quality

    codec = make_setting(codec_name, params).build()
    start = time.perf_counter()
    for f in files:
        data = f.read_bytes()
        pixels = load_image(data).pixels
        stream = codec.encode(pixels)
        if metrics != "none":
            quality(pixels, codec.decode(stream), metrics)
        target = out / (str(f.relative_to(root)) + ".nicb")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(stream)
    return time.perf_counter() - start


def run_pipeline(root: Path, out: Path, codec_name: str, param_args: list[str], metrics: str, run_id: str,
                 extra: list[str]) -> tuple[float, int, str]:
    from nicbeam.pipelines.cli import main

    argv = ["compress", str(root), str(out), "--codec", codec_name, "--metrics", metrics,
            "--run_id", run_id, "--progress_interval", "0"]
    for p in param_args:
        argv += ["--param", p]
    argv += extra
    err = io.StringIO()
    start = time.perf_counter()
    with redirect_stderr(err):
        rc = main(argv)
    return time.perf_counter() - start, rc, err.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=144,
                    help="number of inputs (Kodak copies), default 144 (~13 s of webp m6 work per side)")
    ap.add_argument("--codec", default="webp")
    ap.add_argument("--param", action="append", default=None, metavar="K=V",
                    help="codec parameter, repeatable (default: method=6 quality=75 for webp)")
    ap.add_argument("--metrics", choices=("none", "fast", "all"), default="none",
                    help="pipeline --metrics; the loop does the matching decode+quality work (default none)")
    ap.add_argument("--repeat", type=int, default=3, help="alternate loop/pipeline N times, keep the best")
    ap.add_argument("--beam-option", action="append", default=[], metavar="--name=value",
                    help="extra Beam option passed to the pipeline (default: none = CLI default runner)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()
    param_args = args.param if args.param is not None else (["method=6", "quality=75"] if args.codec == "webp" else [])
    from nicbeam.codecs.spec import parse_params

    params = parse_params(param_args)

    import apache_beam  # noqa: F401  (import cost outside both timings)

    tmp = Path(tempfile.mkdtemp(prefix="nicbeam-bench-overhead-"))
    try:
        root = tmp / "in"
        files = make_kodak_corpus(root, args.images)
        loop_times, pipe_times, loop_cpu, pipe_cpu = [], [], [], []
        for r in range(args.repeat):
            # alternate the order so neither side always runs first (warm caches, frequency, neighbours)
            for side in (("loop", "pipe") if r % 2 == 0 else ("pipe", "loop")):
                cpu0 = time.process_time()
                if side == "loop":
                    out_loop = tmp / f"out-loop-{r}"
                    loop_times.append(run_loop(files, root, out_loop, args.codec, params, args.metrics))
                    loop_cpu.append(time.process_time() - cpu0)
                    written = sum(1 for _ in out_loop.rglob("*.nicb"))
                    assert written == len(files), (written, len(files))
                    continue
                out_pipe = tmp / f"out-pipe-{r}"
                t, rc, log = run_pipeline(root, out_pipe, args.codec, param_args, args.metrics, f"bench-{r}",
                                          args.beam_option)
                pipe_cpu.append(time.process_time() - cpu0)
                written = sum(1 for p in out_pipe.rglob("*.nicb") if "_runs" not in p.parts)
                if rc != 0 or written != len(files):
                    print(log[-3000:], file=sys.stderr)
                    print(f"pipeline failed: rc={rc}, streams written {written}/{len(files)}", file=sys.stderr)
                    return 0
                pipe_times.append(t)
            print(f"[round {r + 1}/{args.repeat}] loop {loop_times[-1]:.2f} s (cpu {loop_cpu[-1]:.2f}), "
                  f"pipeline {pipe_times[-1]:.2f} s (cpu {pipe_cpu[-1]:.2f})", flush=True)
        loop_s, pipe_s = min(loop_times), min(pipe_times)
        loop_c, pipe_c = min(loop_cpu), min(pipe_cpu)
        n = len(files)
        ratio = (n / pipe_s) / (n / loop_s)
        setting = args.codec + "".join(f" {p}" for p in param_args)
        print()
        print("Beam overhead: nicbeam compress (default runner, in-process, 1 worker) vs plain loop")
        print(f"codec: {setting}; metrics: {args.metrics}; cpu cores: {os.cpu_count()}; best of {args.repeat}")
        print(f"{'':22}{'wall s':>10}{'images/s':>12}{'cpu s':>10}")
        print(f"{'images':22}{n:>10}")
        print(f"{'plain loop':22}{loop_s:>10.2f}{n / loop_s:>12.2f}{loop_c:>10.2f}")
        print(f"{'pipeline':22}{pipe_s:>10.2f}{n / pipe_s:>12.2f}{pipe_c:>10.2f}")
        print(f"{'ratio pipeline/loop':22}{ratio:>22.3f}   (by process CPU time: {loop_c / pipe_c:.3f})")
        print(f"{'goal':22}{'>= ' + format(GOAL, '.2f'):>22}  {'MET' if ratio >= GOAL else 'MISSED'}")
        print(f"all rounds: loop {', '.join(f'{t:.2f}' for t in loop_times)} s; "
              f"pipeline {', '.join(f'{t:.2f}' for t in pipe_times)} s")
        print("reproduce:", reproduce_line("benchmarks/bench_pipeline_overhead.py", sys.argv[1:]))
    finally:
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
