"""Locating and reading shipped weight files with digest verification (torch-free, shared by every model codec).

Shipped weights live in ``nicbeam/weights/<name>.safetensors`` (package data) next to ``<name>.json``, whose
``sha256`` must match the file: a corrupted or swapped file is refused rather than silently producing streams
nobody else can decode. ``NICBEAM_WEIGHTS_DIR`` overrides the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from nicbeam.codecs.errors import CodecError


def weights_dir() -> Path:
    """The folder of shipped weights, or ``NICBEAM_WEIGHTS_DIR`` when set."""
    env = os.environ.get("NICBEAM_WEIGHTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "weights"


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """A path as given, or ``<weights_dir>/<name>.safetensors`` for a bare name."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors" or p.exists():
        return p
    return weights_dir() / f"{name_or_path}.safetensors"


def read_verified(path: Path, missing_hint: str) -> tuple[bytes, bytes]:
    """The file's bytes and SHA-256, refused when missing or when its ``.json`` sidecar names another digest."""
    if not path.exists():
        raise CodecError(f"{path} not found ({missing_hint})")
    data = path.read_bytes()
    digest = hashlib.sha256(data).digest()
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        expected = json.loads(sidecar.read_text()).get("sha256")
        if expected and expected != digest.hex():
            raise CodecError(f"{path}: SHA-256 {digest.hex()} does not match {sidecar.name} ({expected})")
    return data, digest
