"""Loading learned-codec weights (safetensors) with digest verification, shared between codec instances.

Shipped weights live in ``nicbeam/weights/<name>.safetensors`` (package data) next to ``<name>.json``, whose
``sha256`` must match the file: a corrupted or swapped file is refused rather than silently producing
streams nobody else can decode. The digest (SHA-256 of the file bytes) is what every stream header carries.
``NICBEAM_WEIGHTS_DIR`` overrides the folder.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nicbeam.codecs.errors import CodecError
from nicbeam.codecs.weights_file import read_verified, resolve_weights, weights_dir  # noqa: F401 (re-exported)

_CACHE: dict[tuple[str, str], "Bundle"] = {}
_LOCK = threading.Lock()




@dataclass
class Bundle:
    """A loaded model (on ``device``) with its integer coding tensors (CPU) and digest."""

    path: Path
    family: str
    config: dict[str, Any]
    model: Any
    tensors: dict[str, torch.Tensor]
    digest: bytes
    device: torch.device
    extras: dict[str, Any]


def load_bundle(path: Path, device: torch.device) -> Bundle:
    key = (str(path.resolve()), str(device))
    with _LOCK:
        bundle = _CACHE.get(key)
        if bundle is None:
            bundle = _load(path, device)
            _CACHE[key] = bundle
        return bundle


def _load(path: Path, device: torch.device) -> Bundle:
    from safetensors import safe_open
    from safetensors.torch import load

    from nicbeam.training.registry import available_families, build_model

    data, digest = read_verified(path, "learned-codec weights: train and export them with `nicbeam train`")
    tensors = load(data)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    family = meta.get("family", "")
    if family not in available_families():
        raise CodecError(f"{path}: unknown model family {family!r}")
    config = json.loads(meta["config"])
    model = build_model(family, **config)
    float_state = {k: v for k, v in tensors.items() if not (k.startswith("tables.") or k.startswith("int_hs."))}
    omitted = tuple(json.loads(meta.get("omitted", "[]")))
    result = model.load_state_dict(float_state, strict=False)
    missing = [k for k in result.missing_keys if not (omitted and k.startswith(omitted))]
    if missing or result.unexpected_keys:
        raise CodecError(f"{path}: weights do not fit {family} {config}: missing {missing[:3]}, "
                         f"unexpected {result.unexpected_keys[:3]}")
    model.eval().requires_grad_(False).to(device)
    coding = {k: v for k, v in tensors.items() if k.startswith("tables.") or k.startswith("int_hs.")}
    return Bundle(path, family, config, model, coding, digest, device, {})


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
