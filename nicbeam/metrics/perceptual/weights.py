"""Reading user-supplied weights for the perceptual metrics: safetensors or ``torch.load(weights_only=True)``
files, local or on any fsspec filesystem, one file or several merged (later files win on equal keys).

Nothing is ever downloaded: a metric without weights is an error, raised before any image is touched
as :class:`PerceptualWeightsError` with one message saying which file and what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Environment variables naming the weights when no option does (several files separated by ``os.pathsep``).
ENV_VARS = {"lpips": "NICBEAM_LPIPS_WEIGHTS", "nima": "NICBEAM_NIMA_WEIGHTS"}
#: Prefixes stripped from checkpoint keys (DataParallel, Lightning-style and wrapper checkpoints).
_STRIP_PREFIXES = ("module.", "model.", "base_model.", "backbone.")
#: Top-level keys of a training checkpoint that hold the state dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


class PerceptualWeightsError(ValueError):
    """Weights for a perceptual metric are missing, unreadable or do not fit its network."""


def weight_paths(metric: str, given: Sequence[str] | None) -> tuple[str, ...]:
    """The weight files of ``metric``: the option's values, else its environment variable; absolute if local."""
    paths = [p for p in (given or []) if p]
    if not paths:
        env = os.environ.get(ENV_VARS[metric], "")
        # split on os.pathsep, but not on the colon of a URL scheme (gs://bucket/weights.pth)
        paths = [p for p in re.split(re.escape(os.pathsep) + r"(?!//)", env) if p.strip()]
    if not paths:
        raise PerceptualWeightsError(
            f"{metric}: no weights given; pass --{metric}-weights PATH or set {ENV_VARS[metric]} "
            "(nothing is downloaded; see docs/perceptual.md for where the weights come from)"
        )
    return tuple(p if "://" in p else os.path.abspath(os.path.expanduser(p)) for p in paths)


def _read(path: str) -> bytes:
    import fsspec

    try:
        with fsspec.open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise PerceptualWeightsError(f"weights file {path!r} does not exist") from None
    except OSError as exc:
        raise PerceptualWeightsError(f"weights file {path!r} cannot be read: {exc}") from None
    if not data:
        raise PerceptualWeightsError(f"weights file {path!r} is empty")
    return data


def _parse(data: bytes, path: str) -> dict[str, Any]:
    """A flat {name: tensor} dict from safetensors bytes or a ``torch.save`` file (weights only)."""
    import torch

    if len(data) > 8 and data[8:9] == b"{":  # safetensors: u64 header length, then a JSON header
        from safetensors.torch import load as load_safetensors

        try:
            return dict(load_safetensors(data))
        except Exception as exc:
            raise PerceptualWeightsError(f"{path!r} is not a valid safetensors file: {exc}") from None
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PerceptualWeightsError(
            f"{path!r} is neither safetensors nor a weights-only torch file: {first}"
        ) from None
    for _ in range(2):  # {"state_dict": {...}} or {"model": {...}} checkpoints
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
    if not isinstance(obj, Mapping):
        raise PerceptualWeightsError(f"{path!r} holds a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise PerceptualWeightsError(f"{path!r} holds no tensors")
    return tensors


def strip_prefixes(name: str) -> str:
    """A checkpoint key without wrapper prefixes (``module.features.0.weight`` -> ``features.0.weight``)."""
    changed = True
    while changed:
        changed = False
        for prefix in _STRIP_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix):], True
    return name


def load_state(paths: Iterable[str]) -> tuple[dict[str, Any], str]:
    """Merge the files' tensors (later files override) and return them with the weights digest.

    The digest is the SHA-256 of the file for one file (what ``sha256sum`` prints), else the SHA-256 of
    the files' hex digests joined by ``+`` in the order given.
    """
    merged: dict[str, Any] = {}
    digests = []
    for path in paths:
        data = _read(path)
        digests.append(hashlib.sha256(data).hexdigest())
        merged.update({strip_prefixes(k): v for k, v in _parse(data, path).items()})
    if not digests:
        raise PerceptualWeightsError("no weights files given")
    digest = digests[0] if len(digests) == 1 else hashlib.sha256("+".join(digests).encode()).hexdigest()
    return merged, digest


def load_into(module: Any, state: Mapping[str, Any], what: str) -> None:
    """Copy ``state`` into ``module`` after checking every key is present with the right shape."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise PerceptualWeightsError(f"{what}: the weights lack {shown}")
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in own.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise PerceptualWeightsError(f"{what}: wrong tensor shapes: {', '.join(wrong[:4])}")
    filled = {k: state.get(k, v) for k, v in own.items()}
    nonfinite = [k for k, v in filled.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if nonfinite:
        raise PerceptualWeightsError(f"{what}: non-finite values in {', '.join(nonfinite[:4])}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in filled.items()})
