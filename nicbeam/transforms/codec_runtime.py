"""Codecs inside Beam workers: built once per worker process, shared by its threads, on the best device.

This is the part of Beam's RunInference/ModelHandler design that fits codecs: the model is loaded through
``apache_beam.utils.shared.Shared`` so an SDK process holds one instance (one copy of the weights) however
many DoFn instances and threads it runs, instead of one per bundle or element. What does not fit, and
why nicbeam has its own DoFns instead of a ModelHandler (see ``docs/runners.md``): RunInference batches
with ``BatchElements`` regardless of image size, while codecs need equal-size batches; its
``with_exception_handling()`` dead-letters whole batches, while one corrupt image must not fail its
batch-mates; and a codec step also writes an object and measures quality, which is not inference.

Device: a codec class whose constructor takes ``device`` gets ``"cuda"`` when the worker has a GPU
(``torch.cuda.is_available()``; PyTorch is imported only for such classes) and ``"cpu"`` otherwise;
the device the codec reports (``codec.device``) is written to every row.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence

from nicbeam.codecs.spec import CodecSetting

_DEVICE_LOCK = threading.Lock()
_DEVICE: str | None = None


def auto_device() -> str:
    """``cuda`` when PyTorch sees a GPU in this worker, else ``cpu`` (cached per process)."""
    global _DEVICE
    with _DEVICE_LOCK:
        if _DEVICE is None:
            try:
                import torch

                _DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
            except Exception:  # no torch, or a broken CUDA install: CPU
                _DEVICE = "cpu"
        return _DEVICE


def set_torch_threads(threads: int) -> None:
    """Set PyTorch's intra-op threads in this worker process (``threads`` > 0 and torch installed)."""
    if threads > 0:
        try:
            import torch
        except ImportError:
            return
        torch.set_num_threads(threads)


def prepare_worker(torch_threads: int, worker_malloc: str) -> None:
    """Per-process set-up of a worker that runs codecs: PyTorch's threads (:func:`set_torch_threads`) and, for
    ``worker_malloc == "keep"``, glibc keeping freed memory (:func:`nicbeam.allocator.keep_freed_memory`; setting
    the same thresholds again is harmless): codecs allocate and free the same large buffers for every image."""
    from nicbeam.allocator import WORKER_MALLOC_SETTINGS, keep_freed_memory

    set_torch_threads(torch_threads)
    if worker_malloc not in WORKER_MALLOC_SETTINGS:
        raise ValueError(f"worker_malloc must be 'keep' or 'default', not {worker_malloc!r}")
    if worker_malloc == "keep":
        keep_freed_memory()


def build_codec(setting: CodecSetting, device: str = "auto"):
    """Instantiate ``setting``; pass a device only to codecs whose constructor accepts one."""
    from nicbeam.codecs import get_codec_class

    cls = get_codec_class(setting.codec)
    try:
        accepts_device = "device" in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        accepts_device = False
    if accepts_device and "device" not in setting.param_dict:
        return setting.build(device=auto_device() if device == "auto" else device)
    return setting.build()


def batches_natively(codec) -> bool:
    """True when the codec overrides ``encode_batch`` (learned codecs): only then is batching worth it."""
    from nicbeam.codecs.base import Codec

    return type(codec).encode_batch is not Codec.encode_batch


class CodecSet:
    """The codecs of one job, keyed by setting label; a plain object so ``Shared`` can hold a weak ref."""

    def __init__(self, settings: Sequence[CodecSetting], device: str = "auto") -> None:
        self.codecs = {s.label: build_codec(s, device) for s in settings}

    def __getitem__(self, label: str):
        return self.codecs[label]


class SharedCodecs:
    """Picklable handle: ``acquire()`` returns this process's single :class:`CodecSet` for the settings.

    Create it in the DoFn constructor (the ``Shared`` key travels with the pickled DoFn, so every copy
    of the DoFn in a worker process resolves to the same object) and call :meth:`acquire` in ``setup``.
    """

    def __init__(self, settings: Sequence[CodecSetting], device: str = "auto") -> None:
        from apache_beam.utils.shared import Shared

        self.settings = list(settings)
        self.device = device
        self._shared = Shared()

    def acquire(self) -> CodecSet:
        tag = (tuple(s.label for s in self.settings), self.device)
        return self._shared.acquire(lambda: CodecSet(self.settings, self.device), tag=tag)


class CodecCache:
    """Decoders built on demand from stream headers, one per (codec, parameters), shared per process.

    ``nicbeam.codecs.decode`` builds a codec for every call; for learned codecs that would reload the
    weights per image, so decompress jobs look decoders up here instead.
    """

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self._lock = threading.Lock()
        self._codecs: dict = {}

    def for_header(self, header):
        from nicbeam.codecs.container import canonical_params
        from nicbeam.codecs.errors import InvalidParameterError, MalformedHeaderError
        from nicbeam.codecs.spec import make_setting

        key = (header.codec, canonical_params(header.params))
        with self._lock:
            codec = self._codecs.get(key)
            if codec is None:
                try:
                    codec = build_codec(make_setting(header.codec, dict(header.params)), self.device)
                except InvalidParameterError as exc:
                    raise MalformedHeaderError(f"stream parameters are invalid for {header.codec}: {exc}") from exc
                self._codecs[key] = codec
            return codec


class SharedCodecCache:
    """Picklable handle to this process's single :class:`CodecCache` (see :class:`SharedCodecs`)."""

    def __init__(self, device: str = "auto") -> None:
        from apache_beam.utils.shared import Shared

        self.device = device
        self._shared = Shared()

    def acquire(self) -> CodecCache:
        return self._shared.acquire(lambda: CodecCache(self.device), tag=self.device)
