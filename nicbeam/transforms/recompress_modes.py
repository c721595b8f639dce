"""What ``nicbeam recompress`` does to one file, per mode, as plain functions (no Beam): an :class:`Outcome`.

* ``lossless-jpeg``: JPEG bytes -> ``jpeg-transcode``; the stream is decoded back and must equal the
  original file byte for byte.
* ``lossless``: a lossless source (PNG, ...) -> the smallest of the given lossless codecs whose decoded
  pixels equal the decoded source exactly. Sources that cannot be held exactly as 8-bit RGB (translucent
  alpha, more than 8 bits, several frames, an ICC profile that would be dropped) are kept.
* ``target-quality``: any image -> the codec at the lowest rate setting that meets the target metric,
  found by :func:`nicbeam.transforms.quality_search.search`.

A file is *kept* (the original stays the copy to keep, nothing written) when no mode applies, the target
cannot be reached, or the output would not be smaller; it *failed* when it cannot be read or processed.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nicbeam.codecs.spec import CodecSetting

MODES = ("lossless-jpeg", "lossless", "target-quality")
#: Image-input refusals that mean "cannot be held exactly as 8-bit RGB" (kept), not "broken" (failed).
_KEEP_REASONS = {"alpha", "high_bit_depth", "multi_frame", "unsupported_mode"}


@dataclass
class Outcome:
    """The decision for one file; ``stream`` is set only for ``recompressed``."""

    status: str
    mode: str | None = None
    reason: str | None = None
    message: str | None = None
    stage: str | None = None  # failed only: where it failed (load, encode, verify)
    setting: CodecSetting | None = None
    stream: bytes | None = None
    verified: bool = False
    source_format: str | None = None
    width: int | None = None
    height: int | None = None
    quality_reached: float | None = None
    search_steps: int | None = None
    candidates: dict[str, Any] = field(default_factory=dict)
    encode_ms: float | None = None


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def sniff_format(data: bytes) -> str | None:
    """Pillow's format name from the file header alone (no pixel decode); None when Pillow does not know it."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format
    except Exception:
        return None


def mode_for(data: bytes, modes: tuple[str, ...]) -> tuple[str | None, str]:
    """The first mode in ``modes`` that applies to this file, or (None, the reason none does)."""
    reason = "no_mode"
    for mode in modes:
        if mode == "lossless-jpeg":
            if is_jpeg(data):
                return mode, ""
            reason = "not_jpeg"
        elif mode == "lossless":
            if not is_jpeg(data):
                return mode, ""
            reason = "lossy_source"
        elif mode == "target-quality":
            return mode, ""
        else:
            raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    return None, reason


def _kept_if_larger(outcome: Outcome, source_bytes: int) -> Outcome:
    if outcome.status == "recompressed" and len(outcome.stream) >= source_bytes:
        outcome.status, outcome.reason = "kept", "would_grow"
        outcome.message = (f"smallest verified output {len(outcome.stream)} B is not smaller than the source "
                           f"{source_bytes} B")
        outcome.stream = None
    return outcome


def lossless_jpeg(data: bytes, setting: CodecSetting, codec) -> Outcome:
    """JPEG -> JPEG XL lossless recompression, verified byte for byte by decoding the stream back."""
    from nicbeam.codecs.errors import UnsupportedInputError

    out = Outcome("recompressed", "lossless-jpeg", setting=setting, source_format="JPEG")
    start = time.perf_counter()
    try:
        stream = codec.encode(data)
    except UnsupportedInputError as exc:
        return Outcome("kept", "lossless-jpeg", "unsupported_jpeg", str(exc), setting=setting, source_format="JPEG")
    except Exception as exc:
        return Outcome("failed", "lossless-jpeg", "codec_failure", f"{type(exc).__name__}: {exc}", "encode",
                       setting=setting, source_format="JPEG")
    try:
        back = codec.decode(stream)
    except Exception as exc:
        return Outcome("failed", "lossless-jpeg", "verify_failed", f"stream does not decode: {exc}", "verify",
                       setting=setting, source_format="JPEG")
    out.encode_ms = 1000.0 * (time.perf_counter() - start)
    if back != data:
        return Outcome("failed", "lossless-jpeg", "verify_mismatch", "decoded JPEG differs from the original",
                       "verify", setting=setting, source_format="JPEG")
    from nicbeam.codecs.jpeg_transcode import read_jpeg_frame

    frame = read_jpeg_frame(data)
    out.width, out.height = frame.width, frame.height
    out.stream, out.verified = stream, True
    out.candidates = {setting.label: len(stream)}
    return _kept_if_larger(out, len(data))


def load_pixels(data: bytes, mode: str, load_options: dict) -> tuple[Any, Outcome | None]:
    """Decode the source; lossless mode refuses every conversion that is not pixel-preserving."""
    from nicbeam.image_input import ImageInputError, load_image

    options = dict(load_options)
    if mode == "lossless":
        options.update(alpha="refuse", high_bit_depth="refuse", frames="refuse")
    try:
        loaded = load_image(data, **options)
    except ImageInputError as exc:
        status = "kept" if exc.reason in _KEEP_REASONS else "failed"
        return None, Outcome(status, mode, exc.reason, str(exc), "load" if status == "failed" else None,
                             source_format=sniff_format(data))
    if mode == "lossless" and "icc-profile-not-applied" in loaded.conversions:
        return None, Outcome("kept", mode, "icc_profile", "the source's ICC profile would not survive a lossless "
                             "recompression to RGB pixels", source_format=loaded.source_format,
                             width=loaded.width, height=loaded.height)
    return loaded, None


def lossless(data: bytes, choices: list[tuple[CodecSetting, Any]], load_options: dict) -> Outcome:
    """The smallest of ``choices`` whose decoded pixels equal the decoded source exactly."""
    loaded, early = load_pixels(data, "lossless", load_options)
    if early is not None:
        return early
    pixels = loaded.pixels
    base = dict(mode="lossless", source_format=loaded.source_format, width=loaded.width, height=loaded.height)
    start = time.perf_counter()
    best: tuple[CodecSetting, bytes] | None = None
    candidates: dict[str, Any] = {}
    for setting, codec in choices:
        try:
            stream = codec.encode(pixels)
            exact = np.array_equal(codec.decode(stream), pixels)
        except Exception as exc:
            candidates[setting.label] = f"error: {type(exc).__name__}: {exc}"[:200]
            continue
        if not exact:
            candidates[setting.label] = "error: decoded pixels differ from the source"
            continue
        candidates[setting.label] = len(stream)
        if best is None or len(stream) < len(best[1]):
            best = (setting, stream)
    elapsed = 1000.0 * (time.perf_counter() - start)
    if best is None:
        return Outcome("failed", reason="verify_failed", stage="verify", candidates=candidates, encode_ms=elapsed,
                       message="no lossless codec gave a pixel-exact stream: " + "; ".join(
                           f"{k}: {v}" for k, v in candidates.items()), **base)
    out = Outcome("recompressed", setting=best[0], stream=best[1], verified=True, candidates=candidates,
                  encode_ms=elapsed, **base)
    return _kept_if_larger(out, len(data))


def target_quality(data: bytes, codec_at: Callable[[Any], tuple[CodecSetting, Any]], knob, metric: str,
                   target: float, max_steps: int, load_options: dict) -> Outcome:
    """The lowest knob value whose decoded image meets ``metric >= target``; kept when none does.

    ``codec_at(value)`` gives the setting and codec at one knob value (shared per worker process)."""
    from nicbeam.transforms.quality_search import MetricUndefinedError, Trial, measure, search

    loaded, early = load_pixels(data, "target-quality", load_options)
    if early is not None:
        return early
    pixels = loaded.pixels
    base = dict(mode="target-quality", source_format=loaded.source_format, width=loaded.width,
                height=loaded.height)
    settings: dict[Any, CodecSetting] = {}

    def trial_at(value) -> Trial:
        setting, codec = codec_at(value)
        settings[value] = setting
        stream = codec.encode(pixels)
        return Trial(value, stream, measure(metric, pixels, codec.decode(stream)))

    start = time.perf_counter()
    try:
        result = search(trial_at, knob, target, max_steps)
    except MetricUndefinedError as exc:
        return Outcome("kept", reason=exc.reason, message=str(exc), **base)
    except Exception as exc:
        return Outcome("failed", reason="codec_failure", message=f"{type(exc).__name__}: {exc}", stage="encode",
                       **base)
    elapsed = 1000.0 * (time.perf_counter() - start)
    candidates = {settings[t.value].label: {"bytes": t.size, metric: t.score} for t in result.trials}
    if result.best is None:
        top = result.trials[0]
        return Outcome("kept", reason="target_unreachable", search_steps=result.steps, candidates=candidates,
                       quality_reached=top.score, encode_ms=elapsed, setting=settings[top.value],
                       message=f"{metric} {top.score:.4g} at the highest setting {settings[top.value].label} is "
                               f"below the target {target:g}", **base)
    best = result.best
    out = Outcome("recompressed", setting=settings[best.value], stream=best.stream, verified=True,
                  quality_reached=best.score, search_steps=result.steps, candidates=candidates, encode_ms=elapsed,
                  **base)
    return _kept_if_larger(out, len(data))
