"""Peak memory of ``nicbeam compress`` as the corpus grows: is it flat in the number of images?

    PYTHONPATH=. python benchmarks/bench_pipeline_memory.py [--counts 100,1000] [--size 96]
        [--codec jpeg] [--metrics fast] [--beam-option=--direct_running_mode=multi_processing ...]

For each count, ``count`` synthetic ``size`` x ``size`` RGB PNGs are written to a temp folder and one
fresh ``python -m nicbeam compress IN OUT --codec jpeg`` subprocess (the CLI's default runner unless
``--beam-option`` says otherwise) compresses them. Two peak-RSS figures per run:

* ``child maxrss``: the subprocess's own ``ru_maxrss`` (from ``os.wait4`` on that child, so runs do not
  mix; SDK worker processes of ``multi_processing`` count only as a max, not a sum);
* ``tree peak``: the largest sum of RSS over the subprocess and all its descendants, polled in ``/proc``
  every 50 ms.

Goal: flat, i.e. peak RSS(largest count) / peak RSS(smallest count) <= 1.2. The script reports only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline_common import PYTHON, make_synthetic_corpus, reproduce_line, run_tree  # noqa: E402

GOAL = 1.2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="100,1000", help="corpus sizes, comma-separated (first is the baseline)")
    ap.add_argument("--size", type=int, default=96, help="image side in pixels (default 96)")
    ap.add_argument("--codec", default="jpeg")
    ap.add_argument("--param", action="append", default=[], metavar="K=V")
    ap.add_argument("--metrics", choices=("none", "fast", "all"), default="fast", help="pipeline --metrics (default fast)")
    ap.add_argument("--beam-option", action="append", default=[], metavar="--name=value",
                    help="extra Beam option for the pipeline, repeatable")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="nicbeam-bench-memory-"))
    results = {}
    try:
        for count in counts:
            root = tmp / f"in-{count}"
            make_synthetic_corpus(root, count, args.size)
            out = tmp / f"out-{count}"
            cmd = [PYTHON, "-m", "nicbeam", "compress", str(root), str(out), "--codec", args.codec,
                   "--metrics", args.metrics, "--run_id", f"n{count}", "--progress_interval", "0"]
            for p in args.param:
                cmd += ["--param", p]
            cmd += args.beam_option
            res = run_tree(cmd, poll_s=0.05)
            res["written"] = sum(1 for p in out.rglob("*.nicb") if "_runs" not in p.parts)
            results[count] = res
            print(f"[{count} images] {res['wall_s']:.1f} s, rc {res['rc']}, streams {res['written']}/{count}, "
                  f"child maxrss {res['child_maxrss_kb'] / 1024:.1f} MiB, tree peak {res['peak_tree_rss_kb'] / 1024:.1f} MiB",
                  flush=True)
            if res["rc"] != 0:
                print(res["stderr"], file=sys.stderr)
    finally:
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    base, last = counts[0], counts[-1]
    print()
    print(f"Peak RSS of nicbeam compress vs corpus size ({args.size}x{args.size} PNGs, codec {args.codec}"
          f"{''.join(' ' + p for p in args.param)}, metrics {args.metrics}, "
          f"options: {' '.join(args.beam_option) or 'CLI default runner'}; cpu cores: {os.cpu_count()})")
    print(f"{'images':>8}{'seconds':>10}{'child maxrss MiB':>18}{'tree peak MiB':>15}")
    for c in counts:
        r = results[c]
        print(f"{c:>8}{r['wall_s']:>10.1f}{r['child_maxrss_kb'] / 1024:>18.1f}{r['peak_tree_rss_kb'] / 1024:>15.1f}")
    if base in results and last in results and last != base:
        rb, rl = results[base], results[last]
        r1 = rl["child_maxrss_kb"] / rb["child_maxrss_kb"]
        r2 = rl["peak_tree_rss_kb"] / rb["peak_tree_rss_kb"]
        print(f"ratio RSS({last})/RSS({base}): child maxrss {r1:.3f}, tree peak {r2:.3f}; goal <= {GOAL}: "
              f"{'MET' if max(r1, r2) <= GOAL else 'MISSED'}")
    print("reproduce:", reproduce_line("benchmarks/bench_pipeline_memory.py", sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
