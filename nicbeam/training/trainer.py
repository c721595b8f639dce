"""The generic Trainer every learned codec family uses.

Protocol a model implements (see :class:`nicbeam.nn.models.LearnedModel`):

* ``family`` (str) and ``config`` (JSON-able kwargs: ``build_model(family, **config)`` rebuilds it);
* ``num_qualities`` and ``lambdas`` (one Lagrange multiplier per rate point / quality index);
* ``forward(x, quality) -> {"x_hat": tensor, "likelihoods": {name: tensor}}`` with x in [0, 1];
* ``rate_distortion_loss(out, x, lmbda, distortion) -> {"loss", "bpp", "mse", ...}`` (lmbda: per-sample
  tensor; distortion: ``mse`` or ``ms-ssim``);
* ``aux_loss() -> tensor`` (0 when the family has no auxiliary parameters).

Checkpoints are plain dicts of tensors, numbers, strings and lists (``torch.load(weights_only=True)``
reads them), written atomically (temporary file + ``os.replace``) so a killed run always leaves a usable one.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from nicbeam.codecs.learned.refine import bf16_is_fast
from nicbeam.training.compact import load_optimizer_file
from nicbeam.training.config import TrainConfig
from nicbeam.training.data import ImageCache
from nicbeam.training.registry import build_model, family_downsampling


def nearest_quality_rows(source: list[float], target: list[float]) -> list[int]:
    """For each target lambda, the index of the source lambda nearest to it in log scale."""
    return [min(range(len(source)), key=lambda i: abs(math.log(source[i] / t))) for t in target]


def check_crops(cfg: "TrainConfig") -> None:
    """Training and validation crops must be multiples of the model's total downsampling (16 for the
    factorized model, 64 for the hyperprior), or the latent and hyper-latent grids do not line up."""
    step = family_downsampling(cfg.family)
    for name in ("crop", "val_crop"):
        if getattr(cfg, name) % step:
            raise ValueError(f"{name}={getattr(cfg, name)} is not a multiple of {step}, the downsampling of {cfg.family}")


def to_tensor(batch_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(batch_u8)).permute(0, 3, 1, 2).float().div_(255.0)


class Trainer:
    """Adam on the rate-distortion loss with a random quality per sample; resumable, atomic checkpoints."""

    def __init__(
        self,
        cfg: TrainConfig,
        train: ImageCache,
        val: ImageCache | None,
        run_dir: str | os.PathLike,
        log: Callable[[str], None] = print,
        device: str | torch.device = "cpu",
    ) -> None:
        """``device``: where the model trains (``cuda`` on a GPU machine); checkpoints load on any device."""
        self.cfg = cfg
        self.device = torch.device(device)
        self.train_data = train
        self.val_data = val
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = log
        torch.manual_seed(cfg.seed)
        check_crops(cfg)
        for name, zero in (("val_every", "only at the last step"), ("log_every", "only at the last step"),
                           ("snapshot_every", "never")):
            if getattr(cfg, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: {zero}), not {getattr(cfg, name)}")
        if cfg.autocast not in ("off", "bf16"):
            raise ValueError(f"autocast must be 'off' or 'bf16', not {cfg.autocast!r}")
        self.model = build_model(cfg.family, **cfg.model_config).to(self.device)
        #: memory format of the training crops (and of the 4-D weights, converted here): see ``cfg.channels_last``
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        #: the forward of training steps: compiled when ``cfg.compile`` (validation keeps the plain model, whose
        #: other shapes and iteration counts would each cost a compile)
        self.train_forward = torch.compile(self.model.forward, dynamic=False) if cfg.compile else self.model.forward
        main, aux = self._param_groups()
        self.optimizer = torch.optim.Adam(main, lr=cfg.lr)
        self.aux_optimizer = torch.optim.Adam(aux, lr=1e-3) if aux else None
        self.step = 0
        self.elapsed_s = 0.0
        #: CPU seconds of the training processes (all threads); a run whose checkpoint predates this record
        #: counts its earlier wall-clock seconds instead (an upper bound on one thread) up to ``cpu_estimated_until``
        self.cpu_s = 0.0
        self.cpu_estimated_until = 0
        self.history: list[dict[str, float]] = []
        self.trained_on: list[str] = []  # hardware of every session that trained this run (kept in checkpoints)
        self.lambdas = torch.tensor(self.model.lambdas, dtype=torch.float32, device=self.device)

    def _param_groups(self):
        """(main parameter groups, aux parameters). Parameters whose name starts with a prefix of
        ``lr_scales`` (or ``entropy_bottleneck.`` with ``entropy_lr_scale != 1``) form groups trained at
        ``lr * scale``; a prefix that names no parameter is an error (a typo would silently do nothing)."""
        aux_names = set(getattr(self.model, "aux_parameter_names", lambda: [])())
        named = [(n, p) for n, p in self.model.named_parameters() if n not in aux_names]
        aux = [p for n, p in self.model.named_parameters() if n in aux_names]
        scales = {k: float(v) for k, v in self.cfg.lr_scales.items()}
        if self.cfg.entropy_lr_scale != 1.0:
            scales.setdefault("entropy_bottleneck.", self.cfg.entropy_lr_scale)
        if not scales:
            return [p for _, p in named], aux
        unmatched = [k for k in scales if not any(n.startswith(k) for n, _ in named)]
        if unmatched:
            raise ValueError(f"LR scale prefixes {unmatched} name no parameter of {self.cfg.family}")
        groups: dict[float, list] = {}  # first-seen order: with entropy_lr_scale alone, [rest, densities] as before
        for n, p in named:
            groups.setdefault(next((v for k, v in scales.items() if n.startswith(k)), 1.0), []).append(p)
        return [{"params": ps, "lr_scale": scale} for scale, ps in groups.items()], aux

    @property
    def hardware(self) -> str:
        """What trained, for the recipe: the GPU's name, or the CPU thread count with the vector ISA PyTorch
        uses and whether bfloat16 is native (CPU seconds, and the cost of ``--autocast bf16``, depend on both)."""
        if self.device.type == "cuda":
            return f"GPU {torch.cuda.get_device_name(self.device)}"
        bf16 = "native bf16" if bf16_is_fast(self.device) else "no native bf16"
        return f"{torch.get_num_threads()} CPU thread(s) ({torch.backends.cpu.get_cpu_capability()}, {bf16})"

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def state(self) -> dict[str, Any]:
        return {
            "format": "nicbeam-train-1",
            "family": self.cfg.family,
            "train_config": json.dumps(asdict(self.cfg)),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": self.aux_optimizer.state_dict() if self.aux_optimizer else {},
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "cpu_s": self.cpu_s,
            "cpu_estimated_until": self.cpu_estimated_until,
            "history": json.dumps(self.history),
            "trained_on": json.dumps(self.trained_on),
        }

    def save_checkpoint(self, path: Path | None = None) -> Path:
        path = Path(path or self.checkpoint_path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        state = load_optimizer_file(path, torch.load(path, map_location="cpu", weights_only=True))
        saved = json.loads(state["train_config"])
        # compare the configs with defaults filled (a checkpoint older than a new, defaulted option still fits)
        if saved["family"] != self.cfg.family or build_model(saved["family"], **saved["model_config"]).config != self.model.config:
            raise ValueError(f"checkpoint {path} is for {saved['family']} {saved['model_config']}, not this model")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.aux_optimizer and state["aux_optimizer"]:
            self.aux_optimizer.load_state_dict(state["aux_optimizer"])
        self.step = int(state["step"])
        self.elapsed_s = float(state["elapsed_s"])
        if "cpu_s" in state:
            self.cpu_s, self.cpu_estimated_until = float(state["cpu_s"]), int(state["cpu_estimated_until"])
        else:
            self.cpu_s, self.cpu_estimated_until = self.elapsed_s, self.step
        self.history = json.loads(state["history"])
        self.trained_on = json.loads(state.get("trained_on", "[]"))

    def init_from(self, path: str | os.PathLike) -> list[str]:
        """Warm start: copy every parameter whose name and shape match from another run's checkpoint
        (e.g. a hyperprior's g_a / g_s / gains from a trained factorized model). Returns the copied names.

        The rate points may differ (say two lower lambdas added): each new quality starts from the source
        quality nearest in log-lambda, its gains scaled by sqrt(lambda ratio) (how the gains are initialised),
        and a per-quality density bank takes that quality's block."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        source = state["model"] if "model" in state else state
        saved = json.loads(state["train_config"]) if "train_config" in state else {}
        source_family = saved.get("family", state.get("family"))
        # a family may declare others whose entropy models it shares (tcm-hyperprior: mbt2018-mean's)
        same_family = source_family == self.cfg.family or source_family in getattr(self.model, "warm_start_families", ())
        target_lambdas = list(getattr(self.model, "lambdas", ()))
        source_lambdas = list(saved.get("model_config", {}).get("lambdas", target_lambdas))
        rows = nearest_quality_rows(source_lambdas, target_lambdas) if target_lambdas else []
        scale = torch.tensor([math.sqrt(t / source_lambdas[r]) for t, r in zip(target_lambdas, rows)])
        qs, qt = len(source_lambdas), len(target_lambdas)
        own_per_quality = getattr(self.model, "prior", None) == "per-quality"
        source_per_quality = saved.get("model_config", {}).get("prior") == "per-quality"
        own = self.model.state_dict()
        copied = []
        for k, v in source.items():
            if k not in own:
                continue
            if k.startswith("entropy_bottleneck"):
                # densities carry over only within a family (a hyperprior's z density is not the y density)
                if not same_family or own[k].shape[1:] != v.shape[1:]:
                    continue
                if own_per_quality and source_per_quality:
                    # per-quality bank -> per-quality bank: each quality's block from its nearest source quality
                    m = v.shape[0] // qs
                    own[k] = torch.cat([v[r * m:(r + 1) * m] for r in rows])
                elif own_per_quality and own[k].shape[0] % v.shape[0] == 0:
                    # a shared density seeds every block of a per-quality bank
                    own[k] = v.repeat(own[k].shape[0] // v.shape[0], *([1] * (v.dim() - 1)))
                elif not own_per_quality and not source_per_quality and own[k].shape == v.shape:
                    own[k] = v
                else:
                    continue
                copied.append(k)
            elif k in ("gain", "inv_gain") and v.shape[0] == qs and own[k].shape == (qt, *v.shape[1:]):
                factor = scale[:, None] if k == "gain" else 1.0 / scale[:, None]
                own[k] = v[rows] * factor.to(v.dtype)
                copied.append(k)
            elif own[k].shape == v.shape:
                own[k] = v
                copied.append(k)
        self.model.load_state_dict(own)
        return copied

    # ------------------------------------------------------------------ loop
    def train_step(self, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.cfg
        self.model.train()
        if cfg.hard_patches > 1:
            from nicbeam.training.data import hardest_patches

            crops = hardest_patches(self.train_data.sample(rng, cfg.batch * cfg.hard_patches, cfg.crop), cfg.batch)
        else:
            crops = self.train_data.sample(rng, cfg.batch, cfg.crop)
        x = to_tensor(crops).to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        q = torch.from_numpy(rng.integers(0, self.model.num_qualities, cfg.batch)).to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr_at(self.step) * group.get("lr_scale", 1.0)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=cfg.autocast == "bf16"):
            out = self.train_forward(x, q)
        out["x_hat"] = out["x_hat"].float()
        losses = self.model.rate_distortion_loss(out, x, self.lambdas[q], cfg.distortion)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        aux = self.model.aux_loss()
        if self.aux_optimizer is not None:
            self.aux_optimizer.zero_grad(set_to_none=True)
            aux.backward()
            self.aux_optimizer.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """bpp (from the likelihoods, rounded latents) and PSNR per quality on fixed validation crops."""
        if self.val_data is None:
            return {}
        self.model.eval()
        x = to_tensor(self.val_data.center_crops(self.cfg.val_crop, self.cfg.val_images)).to(self.device)
        result = {}
        qs = sorted({0, self.model.num_qualities // 2, self.model.num_qualities - 1})
        for qi in qs:
            q = torch.full((x.shape[0],), qi, dtype=torch.long, device=self.device)
            out = self.model(x, q)
            losses = self.model.rate_distortion_loss(out, x, self.lambdas[q], self.cfg.distortion)
            x_hat = out["x_hat"].clamp(0, 1)
            mse = ((x_hat - x) ** 2).mean(dim=(1, 2, 3))
            result[f"q{qi + 1}_bpp"] = round(float(losses["bpp"]), 4)
            if bool((mse > 0).all()):  # lossless families have no PSNR (it would be infinite: not JSON)
                result[f"q{qi + 1}_psnr"] = round(float((10 * torch.log10(1.0 / mse)).mean()), 3)
            if "ms_ssim" in losses:
                result[f"q{qi + 1}_ms_ssim"] = round(float(losses["ms_ssim"]), 5)
        return result

    def fit(self, max_minutes: float | None = None, until_cpu_s: float | None = None) -> None:
        """Train to ``cfg.steps``, or for ``max_minutes`` of this call, or until the run's CPU time reaches
        ``until_cpu_s`` (runs compared at equal budget stop at the same CPU time); SIGTERM / Ctrl-C stop after a
        final checkpoint."""
        import signal

        stop = {"flag": False}

        def _stop(signum, frame):
            stop["flag"] = True

        previous = None
        try:
            previous = signal.signal(signal.SIGTERM, _stop)
        except ValueError:  # not the main thread
            pass
        try:
            self._fit(max_minutes, until_cpu_s, stop)
        except KeyboardInterrupt:
            self.log(f"interrupted at step {self.step}")
            self.save_checkpoint()
            self.log(f"checkpoint step {self.step} -> {self.checkpoint_path}")
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _fit(self, max_minutes: float | None, until_cpu_s: float | None, stop: dict) -> None:
        cfg = self.cfg
        if self.hardware not in self.trained_on:
            self.trained_on.append(self.hardware)
        if cfg.autocast == "bf16" and not bf16_is_fast(self.device):
            self.log("warning: --autocast bf16 on a device without native bfloat16: PyTorch emulates it, and a "
                     "training step was measured 15-45x slower than float32 on such a CPU (AVX2); consider "
                     "resuming with --autocast off")
        rng = np.random.default_rng([cfg.seed, self.step])  # resuming gives a fresh, reproducible stream
        start = time.monotonic()
        base_elapsed = self.elapsed_s
        base_cpu, cpu_start = self.cpu_s, time.process_time()  # process time: every thread of this process
        # where each segment (start or resume) begins: a resume may change the step cost (--autocast, --batch, ...)
        self.history.append({"step": self.step, "cpu_s": round(self.cpu_s, 3), "segment_start": True})
        last_ckpt = start
        window: list[dict[str, float]] = []
        t_window = time.monotonic()
        while self.step < cfg.steps:
            if until_cpu_s is not None and self.cpu_s >= until_cpu_s:
                self.log(f"CPU budget of {until_cpu_s:g} s reached at step {self.step} ({self.cpu_s:.0f} CPU-s)")
                break
            metrics = self.train_step(rng)
            self.step += 1
            self.elapsed_s = base_elapsed + time.monotonic() - start
            self.cpu_s = base_cpu + time.process_time() - cpu_start
            window.append(metrics)
            if _due(self.step, cfg.log_every) or self.step == cfg.steps:
                mean = {k: sum(m[k] for m in window) / len(window) for k in window[0]}
                psnr = 10 * math.log10(1.0 / max(mean["mse"], 1e-12))
                rate = len(window) / max(1e-9, time.monotonic() - t_window)
                self.log(
                    f"step {self.step}/{cfg.steps} loss {mean['loss']:.4f} bpp {mean['bpp']:.4f} "
                    f"psnr {psnr:.2f} lr {cfg.lr_at(self.step):.2e} {rate:.2f} it/s elapsed {self.elapsed_s / 60:.1f} min "
                    f"cpu {self.cpu_s / 60:.1f} min"
                )
                self.history.append({"step": self.step, **{k: round(v, 5) for k, v in mean.items()}})
                window, t_window = [], time.monotonic()
            if self.val_data is not None and (_due(self.step, cfg.val_every) or self.step == cfg.steps):
                val = self.validate()
                # the CPU time at each validation lets runs of different step costs compare at equal budget
                self.log(f"val step {self.step} (cpu {self.cpu_s / 60:.1f} min): {json.dumps(val)}")
                self.history.append({"step": self.step, "cpu_s": round(self.cpu_s, 3), "val": val})
            now = time.monotonic()
            if _due(self.step, cfg.snapshot_every):
                self.save_checkpoint(self.run_dir / f"snapshot-step{self.step}.pt")
                self.log(f"snapshot step {self.step}")
            if now - last_ckpt >= cfg.checkpoint_every_s:
                self.save_checkpoint()
                self.log(f"checkpoint step {self.step} -> {self.checkpoint_path}")
                last_ckpt = now
            if max_minutes is not None and (now - start) / 60 >= max_minutes:
                self.log(f"time budget of {max_minutes} min reached at step {self.step}")
                break
            if stop["flag"]:
                self.log(f"SIGTERM: stopping at step {self.step}")
                break
        self.save_checkpoint()
        self.log(f"checkpoint step {self.step} -> {self.checkpoint_path}")


def _due(step: int, every: int) -> bool:
    """Whether a periodic action (log line, validation, snapshot) falls on ``step``; ``every`` 0: never (log lines
    and validations add the last step themselves)."""
    return every > 0 and step % every == 0
