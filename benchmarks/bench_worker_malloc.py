"""Codec encode + decode CPU time with glibc keeping freed memory (``--worker_malloc keep``, the pipelines'
default; :mod:`nicbeam.allocator`) against glibc's own settings (``--worker_malloc default``), as a ratio measured
in the same run: each round runs every codec once per setting, in alternating fresh processes (an allocator setting
cannot be undone inside one); the best round of each counts. Images: the repo's samples (3 Kodak images), 1 thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_worker_malloc.py \\
        [--codec mbt2018-mean:quality=6 ...] [--rounds 3] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fresh_process_ab import best_of_fresh_processes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "kodak"
DEFAULT_CODECS = ["mbt2018-mean:quality=6", "tcm-hyperprior:quality=6", "bmshj2017-factorized:quality=6", "rnn-lstm-residual-scaling:quality=8",
                  "jpeg:quality=75", "webp:quality=80"]


def worker(spec: str, malloc: str, repeats: int) -> float:
    """CPU seconds of the best of ``repeats`` passes of encode + decode over the samples, after one warm-up pass."""
    import numpy as np
    from PIL import Image

    from nicbeam.codecs.spec import parse_codec_spec
    from nicbeam.transforms.codec_runtime import build_codec, prepare_worker

    prepare_worker(1, malloc)  # one PyTorch thread, and the allocator setting under test
    codec = build_codec(parse_codec_spec(spec)[0], device="cpu")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(SAMPLES.glob("*.png"))]

    def one_pass() -> None:
        for image in images:
            codec.decode(codec.encode(image))

    one_pass()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        one_pass()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", action="append", default=None, metavar="NAME:PARAM=VALUE")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per process (best counts)")
    parser.add_argument("--worker", nargs=2, metavar=("SPEC", "MALLOC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(worker(args.worker[0], args.worker[1], args.repeats))
        return
    codecs = args.codec or DEFAULT_CODECS
    commands = {(spec, malloc): [sys.executable, __file__, "--worker", spec, malloc, "--repeats", str(args.repeats)]
                for spec in codecs for malloc in ("default", "keep")}
    runs = best_of_fresh_processes(commands, args.rounds, lambda out: {"cpu_s": float(out.split()[-1])})
    best = {spec: {malloc: runs[spec, malloc]["cpu_s"] for malloc in ("default", "keep")} for spec in codecs}
    print(json.dumps({
        "images": sorted(p.name for p in SAMPLES.glob("*.png")), "rounds": args.rounds, "repeats": args.repeats,
        "cpu_s_encode_decode": {spec: {k: round(v, 3) for k, v in s.items()} for spec, s in best.items()},
        "speedup_keep_vs_default": {spec: round(s["default"] / s["keep"], 3) for spec, s in best.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
