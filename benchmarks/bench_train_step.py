"""Training-step cost of one family under ``nicbeam train``'s speed options, as ratios measured in the same run:
CPU seconds per :meth:`Trainer.train_step` in float32, with ``--channels-last``, ``--autocast bf16`` and both;
``--compile`` adds each chosen setting through torch.compile, with its one-off compile cost and the steps it takes
to earn that back. Rounds alternate between the settings and the best round of each counts, so background load
inflates all alike as far as possible. ``--sdpa-baseline`` (window-attention families) adds bf16 + channels-last
with training's attention in PyTorch's ``scaled_dot_product_attention`` instead of the written-out form. Steps run
with glibc keeping freed memory, as ``nicbeam train`` does (:mod:`nicbeam.allocator`); ``--malloc default``
leaves glibc's defaults, and ``--malloc-ab`` times the chosen settings under both, alternating fresh processes.

Defaults: the issue-15 recipe (N=64, M=128, 10 lambdas, batch 4 of 256x256 crops, 1 thread)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_step.py --family tcm-hyperprior [--rounds 3] [--steps 3]

The issue-15 arms eager vs compiled, in the settings they train with::

    TORCHINDUCTOR_COMPILE_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_step.py \\
        --family tcm-hyperprior --settings bf16+channels-last --compile

The allocator setting, kept vs glibc's defaults (3 rounds of a fresh process each)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_step.py --family tcm-hyperprior \\
        --settings bf16+channels-last --malloc-ab

The RNN shared schedule's step (an LSTM residual-scaling network, float32, eager vs compiled)::

    TORCHINDUCTOR_COMPILE_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_step.py \\
        --family toderici-rnn --family-defaults --model-arg cell=lstm --model-arg framing=residual-scaling \\
        --batch 16 --crop 32 --hard-patches 4 --settings fp32 --compile --steps 5

The crops come from ``../shared/data/train`` when present, else from random images (the cost does not depend on the
pixels).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fresh_process_ab import best_of_fresh_processes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT.parent / "shared" / "data" / "train"
SETTINGS = {"fp32": {}, "channels-last": {"channels_last": True}, "bf16": {"autocast": "bf16"},
            "bf16+channels-last": {"autocast": "bf16", "channels_last": True}}
#: the issue-15 recipe's model settings (``--family-defaults`` leaves them out)
RECIPE = {"lambdas": [0.00045, 0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18],
          "N": 64, "M": 128}
SDPA_SETTING = "bf16+channels-last, SDPA in training"
COMPILED = " compiled"


def training_images(limit: int = 40) -> list[Path]:
    """Some training-corpus images, or random PNGs written to a temporary folder where the corpus is absent."""
    from nicbeam.training.data import list_images

    if TRAIN.is_dir():
        return list_images(TRAIN, ["*"], exclude=["bsds500_val_*"])[:limit]
    from PIL import Image

    folder = Path(tempfile.mkdtemp(prefix="bench-train-step-"))
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(folder / f"random_{i}.png")
    return sorted(folder.glob("*.png"))


def cpu_per_step(trainer, rng: np.random.Generator, steps: int) -> float:
    start = time.process_time()
    for _ in range(steps):
        trainer.train_step(rng)
    return (time.process_time() - start) / steps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="mbt2018-mean")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="model setting over the recipe's N=64, M=128 and 10 lambdas (repeatable)")
    parser.add_argument("--family-defaults", action="store_true",
                        help="start from the family's own model defaults instead of the issue-15 recipe")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--hard-patches", type=int, default=0, help="as nicbeam train --hard-patches")
    parser.add_argument("--settings", default=",".join(SETTINGS), metavar="NAME[,NAME...]",
                        help=f"which of {', '.join(SETTINGS)} to time (default: all)")
    parser.add_argument("--compile", action="store_true", help="add each chosen setting through torch.compile")
    parser.add_argument("--sdpa-baseline", action="store_true",
                        help="add bf16+channels-last with PyTorch's SDPA as training's window attention")
    parser.add_argument("--malloc", default="keep", choices=["keep", "default"],
                        help="keep: glibc keeps freed memory, as nicbeam train sets it; default: glibc's own settings")
    parser.add_argument("--malloc-ab", action="store_true",
                        help="time the settings with --malloc keep and default, in alternating fresh processes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="steps per round")
    args = parser.parse_args(argv)
    args.settings = [name.strip() for name in args.settings.split(",") if name.strip()]
    unknown = [name for name in args.settings if name not in SETTINGS]
    if unknown or not args.settings:
        parser.error(f"--settings takes names from {', '.join(SETTINGS)}, not {args.settings}")
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.malloc_ab:
        return malloc_ab(argv, args)
    if args.malloc == "keep":
        from nicbeam.allocator import keep_freed_memory

        print(keep_freed_memory(), file=sys.stderr)
    from nicbeam.codecs.learned.transformer.blocks import WindowAttention
    from nicbeam.pipelines.cmd_train import _parse_model_args
    from nicbeam.training.data import ImageCache
    from nicbeam.training.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    data = ImageCache(training_images())
    model_config = {**({} if args.family_defaults else RECIPE), **_parse_model_args(args.model_arg)}
    settings = {name: {**SETTINGS[name], "compile": False} for name in args.settings}
    if args.compile:
        settings.update({name + COMPILED: {**SETTINGS[name], "compile": True} for name in args.settings})
    if args.sdpa_baseline:
        settings[SDPA_SETTING] = {**SETTINGS["bf16+channels-last"], "compile": False}
    trainers, first_step = {}, {}
    for name, options in settings.items():
        WindowAttention.sdpa_in_training = name == SDPA_SETTING
        cfg = TrainConfig(family=args.family, model_config=model_config, batch=args.batch, crop=args.crop,
                          hard_patches=args.hard_patches, **options)
        trainer = Trainer(cfg, data, None, tempfile.mkdtemp(prefix="bench-train-step-"), log=lambda _: None)
        rng = np.random.default_rng(0)
        # warm-up (allocator, oneDNN primitive caches); a compiled trainer compiles here
        first_step[name] = cpu_per_step(trainer, rng, 1)
        trainers[name] = (trainer, rng)
    best = {name: float("inf") for name in settings}
    for _ in range(args.rounds):
        for name, (trainer, rng) in trainers.items():
            WindowAttention.sdpa_in_training = name == SDPA_SETTING
            best[name] = min(best[name], cpu_per_step(trainer, rng, args.steps))
    WindowAttention.sdpa_in_training = False
    baseline = best[args.settings[0]]
    result = {
        "family": args.family, "model_config": {k: v for k, v in trainers[args.settings[0]][0].model.config.items()
                                                if k != "lambdas"},
        "batch": args.batch, "crop": args.crop, "hard_patches": args.hard_patches, "malloc": args.malloc,
        "torch": torch.__version__,
        "cpu_s_per_step": {name: round(s, 3) for name, s in best.items()},
        f"speedup_vs_{args.settings[0]}": {name: round(baseline / s, 2) for name, s in best.items()},
    }
    if args.compile:
        result["compile"] = {name: compile_cost(first_step[name], first_step[name + COMPILED], best[name],
                                                best[name + COMPILED]) for name in args.settings}
    print(json.dumps(result, indent=1))


def malloc_ab(argv: list[str], args: argparse.Namespace) -> None:
    """Runs this benchmark (one round each) under ``--malloc keep`` and ``--malloc default`` in alternating fresh
    processes (an allocator setting cannot be undone inside one), ``args.rounds`` times; the best of each counts."""
    rest = [a for a in argv if a != "--malloc-ab"]
    commands = {malloc: [sys.executable, __file__, *rest, "--rounds", "1", "--malloc", malloc]
                for malloc in ("default", "keep")}
    best = best_of_fresh_processes(commands, args.rounds, lambda out: json.loads(out)["cpu_s_per_step"])
    print(json.dumps({
        "family": args.family, "batch": args.batch, "crop": args.crop, "rounds": args.rounds, "steps": args.steps,
        "cpu_s_per_step": best,
        "speedup_keep_vs_default": {name: round(best["default"][name] / s, 3) for name, s in best["keep"].items()},
    }, indent=1))


def compile_cost(first_eager: float, first_compiled: float, eager: float, compiled: float) -> dict:
    """The one-off compile cost (the compiled trainer's first step beyond the eager one's), the per-step speed-up and
    the steps it takes to earn the compile cost back (None where compiling does not make steps faster)."""
    compile_cpu_s = first_compiled - first_eager
    saved = eager - compiled
    return {"compile_cpu_s_this_process": round(compile_cpu_s, 1), "speedup": round(eager / compiled, 3),
            "break_even_steps": round(compile_cpu_s / saved) if saved > 0 else None}


if __name__ == "__main__":
    main()
