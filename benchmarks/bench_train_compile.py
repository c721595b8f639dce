"""Training-step cost with and without ``nicbeam train --compile`` (torch.compile, inductor), as a ratio measured in
the same run: the one-off compile cost at start, then CPU seconds per step of :meth:`Trainer.train_step` for the
eager and the compiled trainer (rounds alternate between the two; the best round of each counts, so background
load inflates both alike as far as possible).

Default: the RNN shared schedule's step (``toderici-rnn``, batch 16, 32x32 crops, hard patches 4) for the cell and
framing given. The crops come from ``../shared/data/train`` when present, else from random images (the cost does not
depend on the pixels).

    TORCHINDUCTOR_COMPILE_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_compile.py \\
        --model-arg cell=lstm --model-arg framing=residual-scaling [--rounds 3] [--steps 5]

The issue-15 arms (both trainers in bf16 autocast and channels-last, as those runs train)::

    TORCHINDUCTOR_COMPILE_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_compile.py \\
        --family tcm-hyperprior --model-arg N=64 --model-arg M=128 --batch 4 --crop 256 --hard-patches 0 \\
        --autocast bf16 --channels-last
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT.parent / "shared" / "data" / "train"


def training_images(limit: int = 40) -> list[Path]:
    """Some training-corpus images, or random PNGs written to a temporary folder where the corpus is absent."""
    from nicbeam.training.data import list_images

    if TRAIN.is_dir():
        return list_images(TRAIN, ["*"], exclude=["bsds500_val_*"])[:limit]
    from PIL import Image

    folder = Path(tempfile.mkdtemp(prefix="bench-compile-"))
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(folder / f"random_{i}.png")
    return sorted(folder.glob("*.png"))


def cpu_per_step(trainer, rng: np.random.Generator, steps: int) -> float:
    start = time.process_time()
    for _ in range(steps):
        trainer.train_step(rng)
    return (time.process_time() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="toderici-rnn")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--hard-patches", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="steps per round")
    parser.add_argument("--autocast", default="off", choices=["off", "bf16"], help="as nicbeam train --autocast")
    parser.add_argument("--channels-last", action="store_true", help="as nicbeam train --channels-last")
    args = parser.parse_args()
    from nicbeam.pipelines.cmd_train import _parse_model_args
    from nicbeam.training.data import ImageCache
    from nicbeam.training.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    data = ImageCache(training_images())
    trainers, first_step = {}, {}
    for compiled in (False, True):
        cfg = TrainConfig(family=args.family, model_config=_parse_model_args(args.model_arg), batch=args.batch,
                          crop=args.crop, hard_patches=args.hard_patches, compile=compiled, autocast=args.autocast,
                          channels_last=args.channels_last)
        trainer = Trainer(cfg, data, None, tempfile.mkdtemp(prefix="bench-compile-run-"), log=lambda _: None)
        rng = np.random.default_rng(0)
        first_step[compiled] = cpu_per_step(trainer, rng, 1)  # the compiled trainer compiles here
        trainers[compiled] = (trainer, rng)
    compile_cpu_s = first_step[True] - first_step[False]
    best = {False: float("inf"), True: float("inf")}
    for _ in range(args.rounds):
        for compiled, (trainer, rng) in trainers.items():
            best[compiled] = min(best[compiled], cpu_per_step(trainer, rng, args.steps))
    result = {
        "family": args.family, "model_config": trainers[False][0].model.config, "batch": args.batch,
        "crop": args.crop, "autocast": args.autocast, "channels_last": args.channels_last, "torch": torch.__version__,
        "compile_cpu_s_this_process": round(compile_cpu_s, 1),
        "eager_cpu_s_per_step": round(best[False], 3), "compiled_cpu_s_per_step": round(best[True], 3),
        "speedup": round(best[False] / best[True], 3),
        "break_even_steps": round(compile_cpu_s / max(best[False] - best[True], 1e-9)),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
