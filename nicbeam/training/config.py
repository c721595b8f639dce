"""The training run's options (:class:`TrainConfig`), kept free of torch so that the CLI can show its defaults
without importing it."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any


@dataclass
class TrainConfig:
    family: str
    model_config: dict[str, Any]
    steps: int = 10000
    batch: int = 8
    crop: int = 128
    lr: float = 3e-4
    lr_final: float = 3e-5
    decay_start: float = 0.7  # fraction of steps after which the LR decays (cosine) to lr_final
    # linear LR warm-up over the first steps of a run: a warm start (--init-from) gets a fresh Adam, whose first
    # updates are ~lr per parameter whatever the gradient. Seen here without it: two warm-started runs lost
    # 0.65-0.85 dB validation PSNR at their top rate point in their first 1000 steps (fresh Adam; for one of
    # them the LR also went back up from its annealed value; both had two new rate points to learn)
    warmup_steps: int = 0
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every_s: float = 300.0
    val_every: int = 1000
    log_every: int = 50
    val_crop: int = 256
    val_images: int = 12
    distortion: str = "mse"  # mse | ms-ssim (the model's lambdas must be chosen for it)
    entropy_lr_scale: float = 1.0  # LR multiplier for the entropy-model densities (they must sharpen a lot)
    # LR multiplier per parameter-name prefix, e.g. {"slice_transforms.": 10}: a warm start (--init-from) can train
    # the parameters it adds faster than those it copied (first matching prefix wins; the densities' own
    # multiplier is ``entropy_lr_scale``)
    lr_scales: dict[str, float] = field(default_factory=dict)
    snapshot_every: int = 0  # keep a copy of the checkpoint every N steps (snapshot-stepN.pt), 0: never
    # "bf16": the analysis/synthesis transforms run under bfloat16 autocast (CPUs with AVX512-BF16/AMX and GPUs:
    # ~1.5x faster steps measured here); latents, entropy models and the loss stay float32. Validation is float32.
    autocast: str = "off"
    # True: the training step's forward (and so its backward) runs through torch.compile (inductor). Measured on
    # this CPU, 1 thread (benchmarks/bench_train_step.py --compile): an LSTM residual-scaling RNN step 1.31 -> 1.20 CPU-s
    # (1.09x) after ~2.5 CPU-min of compiling at every (re)start. Validation and export run the plain model.
    compile: bool = False
    # True: the model's 4-D weights and the training crops in channels-last memory, which the CPU convolutions
    # (oneDNN) run faster. Whole training steps, 1 thread, batch 4 of 256^2 (benchmarks/bench_train_step.py):
    # mbt2018-mean 1.17x (fp32), 2.04x with bf16 autocast (bf16 alone 1.64x); tcm-hyperprior 1.09x, 1.66x (1.57x).
    # Same model, float-rounding differences only.
    channels_last: bool = False
    # > 1: draw this many times `batch` crops and train on the `batch` that PNG compresses worst (Toderici et al.
    # 2017 train on the 32x32 patches with the worst PNG compression ratio); 0 or 1: plain random crops
    hard_patches: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    # one entry per `--resume` that changed the schedule: {"at_step": N, "changed": {option: [old, new]}}, so an
    # exported recipe tells the whole run, not only the options of its last segment
    resumes: list[dict[str, Any]] = field(default_factory=list)

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        start = int(self.decay_start * self.steps)
        if step < start:
            return self.lr
        t = min(1.0, (step - start) / max(1, self.steps - start))
        return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1 + math.cos(math.pi * t))


def train_defaults() -> dict[str, Any]:
    """Each :class:`TrainConfig` option that has a default, with that default (the CLI's help shows these)."""
    return {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}

