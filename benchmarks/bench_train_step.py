"""Training-step cost of one family under ``nicbeam train``'s speed options, as ratios against plain float32 in the
same run: CPU seconds per :meth:`Trainer.train_step` with ``--channels-last``, ``--autocast bf16`` and both
(rounds alternate between the settings; the best round of each counts, so background load inflates all alike as
far as possible). Defaults: the issue-15 recipe (N=64, M=128, batch 4 of 256x256 crops, 10 lambdas, 1 thread).
``--sdpa-baseline`` (window-attention families) adds bf16 + channels-last with training's attention in PyTorch's
``scaled_dot_product_attention`` instead of the written-out form the models use.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_step.py --family tcm-hyperprior [--rounds 3] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np
import torch

from bench_train_compile import cpu_per_step, training_images

SETTINGS = {"fp32": {}, "channels-last": {"channels_last": True}, "bf16": {"autocast": "bf16"},
            "bf16 + channels-last": {"autocast": "bf16", "channels_last": True}}
LAMBDAS = [0.00045, 0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18]
SDPA_SETTING = "bf16 + channels-last, SDPA in training"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="mbt2018-mean")
    parser.add_argument("--model-arg", action="append", default=["N=64", "M=128"], metavar="KEY=VALUE")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="steps per round")
    parser.add_argument("--sdpa-baseline", action="store_true",
                        help="add bf16 + channels-last with PyTorch's SDPA as training's window attention")
    args = parser.parse_args()
    from nicbeam.codecs.learned.transformer.blocks import WindowAttention
    from nicbeam.pipelines.cmd_train import _parse_model_args
    from nicbeam.training.data import ImageCache
    from nicbeam.training.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    data = ImageCache(training_images())
    model_config = {"lambdas": LAMBDAS, **_parse_model_args(args.model_arg)}
    settings = {**SETTINGS, **({SDPA_SETTING: SETTINGS["bf16 + channels-last"]} if args.sdpa_baseline else {})}
    trainers = {}
    for name, options in settings.items():
        WindowAttention.sdpa_in_training = name == SDPA_SETTING
        cfg = TrainConfig(family=args.family, model_config=model_config, batch=args.batch, crop=args.crop, **options)
        trainer = Trainer(cfg, data, None, tempfile.mkdtemp(prefix="bench-train-step-"), log=lambda _: None)
        rng = np.random.default_rng(0)
        cpu_per_step(trainer, rng, 1)  # warm-up (allocator, oneDNN primitive caches)
        trainers[name] = (trainer, rng)
    best = {name: float("inf") for name in settings}
    for _ in range(args.rounds):
        for name, (trainer, rng) in trainers.items():
            WindowAttention.sdpa_in_training = name == SDPA_SETTING
            best[name] = min(best[name], cpu_per_step(trainer, rng, args.steps))
    print(json.dumps({
        "family": args.family, "model_config": {k: v for k, v in model_config.items() if k != "lambdas"},
        "batch": args.batch, "crop": args.crop, "torch": torch.__version__,
        "cpu_s_per_step": {name: round(s, 3) for name, s in best.items()},
        "speedup_vs_fp32": {name: round(best["fp32"] / s, 2) for name, s in best.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
