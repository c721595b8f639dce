"""Export a trained model to ``<name>.safetensors`` + ``<name>.json`` (recipe and digest).

The safetensors file holds the float weights *and* the integer coding tables (and, for hyperpriors, the
integer hyper-synthesis), so the SHA-256 of the file -- the digest every stream carries -- covers
everything encoder and decoder must agree on. Metadata: ``family``, ``config`` (JSON), ``format``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

WEIGHTS_FORMAT = "nicbeam-learned-1"


def default_weights_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "weights"


def calibration_batch(trainer, count: int = 8, crop: int = 256) -> torch.Tensor:
    """Deterministic training-set crops (never Kodak) used to calibrate integer networks."""
    from nicbeam.training.data import ImageCache, list_images
    from nicbeam.training.trainer import to_tensor

    d = trainer.cfg.data
    paths = list_images(d["folder"], d.get("train_glob", ["*"]), exclude=d.get("val_glob", []))
    step = max(1, len(paths) // count)
    cache = ImageCache(paths[::step][:count])
    return to_tensor(cache.center_crops(crop, count))


def write_weights(model, path: str | os.PathLike, calibration: torch.Tensor | None = None) -> str:
    """Float weights + integer coding tensors -> ``path`` (atomic); returns the file's SHA-256 hex digest."""
    from safetensors.torch import save_file

    model = model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # float parameters replaced by an integer version at coding time (the hyperprior's h_s) are not shipped
    omitted = tuple(getattr(model, "omitted_from_weights", ()))
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if not k.startswith(omitted or ("\0",))}
    tensors.update({k: v.contiguous() for k, v in model.coding_tensors(calibration).items()})
    metadata = {"format": WEIGHTS_FORMAT, "family": model.family, "config": json.dumps(model.config),
                "omitted": json.dumps(list(omitted))}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    canonicalize_header(tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def canonicalize_header(path: str | os.PathLike) -> None:
    """Rewrite a safetensors header in place with its metadata keys sorted (same length, space-padded).

    safetensors writes the metadata map in a per-process random order (a Rust HashMap), so two exports of one
    checkpoint got different digests; with this they are byte-identical. Tensor data is not touched."""
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        metadata = header.pop("__metadata__", None)
        ordered = {"__metadata__": dict(sorted(metadata.items()))} if metadata is not None else {}
        ordered.update(header)  # tensor entries keep the writer's (deterministic) order and offsets
        raw = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(raw) > size:
            raise ValueError(f"{path}: canonical safetensors header is longer than the written one")
        f.seek(8)
        f.write(raw + b" " * (size - len(raw)))


def warm_start_lineage(data: dict[str, Any], limit: int = 10) -> list[dict[str, Any]]:
    """The chain of runs this one was warm-started from (``data["init_from"]``, then that run's, ...), each
    with its family, rate points and the step it was taken at, so a sidecar states all training behind it."""
    chain: list[dict[str, Any]] = []
    source = data.get("init_from")
    while source and len(chain) < limit:
        entry: dict[str, Any] = {"checkpoint": str(source)}
        chain.append(entry)
        config_path = Path(source).parent / "config.json"
        try:
            config = json.loads(config_path.read_text())
            entry.update(family=config["family"], model_config=config["model_config"])
            state = torch.load(source, map_location="cpu", weights_only=True)
            entry["step"] = int(state["step"])
            entry["train_time_wall_min"] = round(float(state.get("elapsed_s", 0.0)) / 60, 1)
            if "cpu_s" in state:
                entry["train_time_cpu_min"] = round(float(state["cpu_s"]) / 60, 1)
        except FileNotFoundError:  # e.g. a run directory outside the repository, gone since
            entry["unavailable"] = "not found where the export ran (its recipe is that run's own record)"
            break
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            entry["unavailable"] = f"{type(exc).__name__}: {exc}"
            break
        source = config.get("data", {}).get("init_from")
    return chain


def export_model(trainer, name: str, out_dir: str | os.PathLike | None = None, extra: dict[str, Any] | None = None) -> dict[str, Path]:
    import copy

    model = copy.deepcopy(trainer.model).cpu().eval()  # tables and calibration are computed on the CPU
    out_dir = Path(out_dir) if out_dir else default_weights_dir()
    calibration = calibration_batch(trainer) if model.family != "bmshj2017-factorized" else None
    path = out_dir / f"{name}.safetensors"
    write_weights(model, path, calibration)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cfg = trainer.cfg
    sidecar = {
        "name": name,
        "family": model.family,
        "config": model.config,
        "file": path.name,
        "sha256": digest,
        "bytes": path.stat().st_size,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recipe": {
            "data": cfg.data,
            "steps_done": trainer.step,
            "steps_planned": cfg.steps,
            "lambdas": None if getattr(model, "lossless", False) else list(model.lambdas),
            "distortion": getattr(model, "loss_description", None)
            or ("MSE (loss = lambda * 255^2 * MSE + bpp)" if cfg.distortion == "mse"
                else "MS-SSIM (loss = lambda * (1 - MS-SSIM) + bpp)"),
            "crop": cfg.crop,
            "batch": cfg.batch,
            "hard_patches": cfg.hard_patches,
            "optimizer": "Adam",
            "lr": cfg.lr,
            "lr_final": cfg.lr_final,
            "lr_schedule": (f"linear warm-up over {cfg.warmup_steps} steps, " if cfg.warmup_steps else "")
            + f"constant, cosine decay from {cfg.decay_start:.0%} of steps"
            + (" (the last segment's; `resumes` lists the earlier values)" if cfg.resumes else ""),
            "resumes": cfg.resumes,
            "train_time_wall_min": round(trainer.elapsed_s / 60, 1),
            # CPU time of the training processes (all their threads)
            "train_time_cpu_min": round(trainer.cpu_s / 60, 1),
            **({"train_time_cpu_note": f"up to step {trainer.cpu_estimated_until} (before CPU time was recorded) "
                "this counts wall-clock time, an upper bound for a 1-thread run"} if trainer.cpu_estimated_until else {}),
            "autocast": cfg.autocast,
            "compile": cfg.compile,
            "channels_last": cfg.channels_last,
            "warm_start_lineage": warm_start_lineage(cfg.data),
            "hardware": ", ".join(trainer.trained_on) or "unknown (checkpoint predates the record)",
            "seed": cfg.seed,
        },
        "last_validation": next((h["val"] for h in reversed(trainer.history) if "val" in h), None),
        "kodak": None,
    }
    if extra:
        sidecar.update(extra)
    json_path = out_dir / f"{name}.json"
    old = json.loads(json_path.read_text()) if json_path.exists() else {}
    if old.get("kodak") and old.get("sha256") == digest:
        sidecar["kodak"] = old["kodak"]
    json_path.write_text(json.dumps(sidecar, indent=1) + "\n")
    return {"weights": path, "sidecar": json_path}
