"""The codec step of ``compress`` and ``evaluate``: read, decode the image, encode with every setting,
check and measure, write the stream, emit one row per (image, setting) or one error row.

Per input, exactly one outcome per setting reaches exactly one output: the main output (a metadata row)
or the ``errors`` output (an error row naming the stage and reason). An input refused before any codec
runs (unsafe name, unreadable storage, refused by the image-input policy) gives a single error row with
no setting. Failures are caught *per image*: when a codec batch fails, its images are retried one by
one so only the culprit is dead-lettered (unlike ``RunInference(...).with_exception_handling()``, which
fails the whole batch).

Batching: codecs that override ``encode_batch`` (learned codecs) get images of equal size batched within
a bundle, up to ``batch_size`` (outputs of partial batches are emitted from ``finish_bundle`` in their
own windows). Classical codecs gain nothing from batching, so their images are handled one at a time
as they arrive, which keeps memory flat and latency low in streaming.

Storage errors other than "missing" or "forbidden" are raised, so the runner retries the bundle; all
writes are idempotent (see :mod:`nicbeam.transforms.write`), so the retry cannot double anything.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.utils.windowed_value import WindowedValue

from nicbeam.transforms import faults
from nicbeam.transforms.accounting import Accounting
from nicbeam.transforms.codec_runtime import SharedCodecs, batches_natively, prepare_worker
from nicbeam.transforms.evaluate import identical_quality, quality
from nicbeam.transforms.io import StorageReadError, read_bytes
from nicbeam.transforms.perceptual import SharedPerceptual
from nicbeam.transforms.paths import (
    BITSTREAM_SUFFIX,
    SourceFile,
    UnsafePathError,
    join,
    resolve,
    safe_relative_path,
    setting_dir_name,
)
from nicbeam.transforms.records import JobConfig, error_row, metadata_row
from nicbeam.transforms.write import atomic_write

ERRORS = "errors"
BITSTREAMS = "bitstreams"
LATENTS = "latents"


@dataclass
class _Item:
    """One readable input waiting for its codecs."""

    src: SourceFile
    rel: str
    data: bytes | None  # file bytes, kept only when a setting takes JPEG bytes
    pixels: np.ndarray | None
    info: dict
    window: Any = None
    timestamp: Any = None
    outputs: list = field(default_factory=list)
    cache: dict = field(default_factory=dict)  # per-image values shared by its settings (LPIPS reference taps)


def _reason(exc: BaseException, default: str) -> str:
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) and reason else default


class CodecDoFn(beam.DoFn):
    """``SourceFile`` -> metadata rows (main), error rows (``errors``) and, with ``pack``, bitstream rows
    (``bitstreams``). ``mode`` is ``compress`` (write ``OUTPUT/<rel>.nicb``) or ``evaluate`` (optionally
    keep ``OUTPUT/bitstreams/<setting>/<rel>.nicb``)."""

    def __init__(self, cfg: JobConfig, mode: str = "compress"):
        if mode not in ("compress", "evaluate"):
            raise ValueError(f"mode must be compress or evaluate, got {mode!r}")
        self.cfg = cfg
        self.mode = mode
        self._shared = SharedCodecs(cfg.settings, cfg.device)
        self._shared_perceptual = SharedPerceptual(cfg) if cfg.perceptual else None

    # ------------------------------------------------------------------------------------ lifecycle
    def setup(self):
        prepare_worker(self.cfg.torch_threads, self.cfg.worker_malloc)
        self._codecs = self._shared.acquire()  # strong reference: keeps the shared object alive
        self._perceptual = self._shared_perceptual.acquire() if self._shared_perceptual else None
        self._acc = Accounting(self.cfg.progress_dir)
        self._out_fs, self._out_root = resolve(self.cfg.output)
        _, self._tmp_root = resolve(self.cfg.tmp_url)
        codecs = [self._codecs[s.label] for s in self.cfg.settings]
        self._needs_bytes = any(getattr(c, "input_kind", "rgb8") == "jpeg" for c in codecs)
        self._needs_pixels = self.mode == "evaluate" or any(getattr(c, "input_kind", "rgb8") != "jpeg" for c in codecs)
        self._batching = self.cfg.batch_size > 1 and any(batches_natively(c) for c in codecs)
        self._latents_writer = None
        if self.cfg.export_latents:  # compress --export-latents (learned codecs, checked by the launcher)
            from nicbeam.transforms.latents import LatentsWriter

            self._latents_writer = LatentsWriter(run_id=self.cfg.run_id, output=self.cfg.output,
                                                 tmp_url=self.cfg.tmp_url, storage=self.cfg.export_latents)

    def start_bundle(self):
        self._pending: dict[tuple, list[_Item]] = {}

    def finish_bundle(self):
        for key in list(self._pending):
            for item in self._run_batch(self._pending.pop(key)):
                for tag, value in item.outputs:
                    wv = WindowedValue(value, item.timestamp, (item.window,))
                    yield beam.pvalue.TaggedOutput(tag, wv) if tag else wv
        self._acc.flush()

    # ------------------------------------------------------------------------------------ per element
    def process(self, src: SourceFile, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        item = self._prepare(src)
        if isinstance(item, dict):  # an input-level error row
            yield beam.pvalue.TaggedOutput(ERRORS, item)
            return
        item.window, item.timestamp = window, timestamp
        if not self._batching or item.pixels is None:
            for done in self._run_batch([item]):
                yield from self._emit(done)
            return
        key = (item.pixels.shape, window)
        batch = self._pending.setdefault(key, [])
        batch.append(item)
        if len(batch) >= self.cfg.batch_size:
            for done in self._run_batch(self._pending.pop(key)):
                yield from self._emit(done)

    @staticmethod
    def _emit(item: _Item) -> Iterator:
        for tag, value in item.outputs:
            yield beam.pvalue.TaggedOutput(tag, value) if tag else value

    def _fail(self, uri: str, stage: str, reason: str, message: str, setting: str | None = None) -> dict:
        self._acc.failed(reason, weight=1 if setting is not None else len(self.cfg.settings))
        return error_row(self.cfg, uri, stage, reason, message, setting)

    def _prepare(self, src: SourceFile) -> _Item | dict:
        """Check the name, read the bytes and apply the image-input policy; an error row on failure."""
        from nicbeam.image_input import ImageInputError, load_image

        try:
            rel = safe_relative_path(src.rel_path)
        except UnsafePathError as exc:
            return self._fail(src.uri, "match", exc.reason, str(exc))
        try:
            data = read_bytes(src.uri)
        except StorageReadError as exc:
            return self._fail(src.uri, "read", exc.reason, str(exc))
        self._acc.read(len(data))
        info: dict[str, Any] = {"source_bytes": len(data)}
        pixels = None
        if self._needs_pixels:
            try:
                loaded = load_image(data, **self.cfg.load_options())
            except ImageInputError as exc:
                return self._fail(src.uri, "load", exc.reason, str(exc))
            pixels = loaded.pixels
            info.update(
                source_format=loaded.source_format,
                source_mode=loaded.source_mode,
                width=loaded.width,
                height=loaded.height,
            )
        else:
            info.update(_jpeg_info(data))
        return _Item(src, rel, data if self._needs_bytes else None, pixels, info)

    # ------------------------------------------------------------------------------------ codec work
    def _run_batch(self, items: list[_Item]) -> list[_Item]:
        """Run every setting over ``items`` (same size); fill each item's ``outputs``."""
        for setting in self.cfg.settings:
            codec = self._codecs[setting.label]
            takes_bytes = getattr(codec, "input_kind", "rgb8") == "jpeg"
            faults.maybe_fail("before_encode", items[0].src.uri)
            if self._latents_writer is not None:
                streams, latents, encode_ms = self._encode_with_latents(codec, items)
            else:
                streams, encode_ms = self._encode(codec, items, takes_bytes)
                latents = [None] * len(items)
            latents_of = {id(item): lat for item, lat in zip(items, latents)}
            live = [(i, s) for i, s in zip(items, streams) if not isinstance(s, BaseException)]
            for item, exc in zip(items, streams):
                if isinstance(exc, BaseException):
                    reason = _reason(exc, "codec_failure")
                    message = f"{type(exc).__name__}: {exc}"
                    item.outputs.append((ERRORS, self._fail(item.src.uri, "encode", reason, message, setting.label)))
            decoded, decode_ms = self._decode(codec, [s for _, s in live])
            level = self.cfg.metrics
            for (item, stream), dec in zip(live, decoded):
                if isinstance(dec, BaseException):
                    reason = _reason(dec, "codec_failure")
                    message = f"written stream does not decode: {type(dec).__name__}: {dec}"
                    item.outputs.append((ERRORS, self._fail(item.src.uri, "verify", reason, message, setting.label)))
                    continue
                if takes_bytes:
                    if dec is not None and dec != item.data:
                        item.outputs.append(
                            (ERRORS, self._fail(item.src.uri, "verify", "not_lossless",
                                                "decoded JPEG differs from the input", setting.label))
                        )
                        continue
                    q = identical_quality(level)
                else:
                    q = quality(item.pixels, dec, level) if dec is not None else {}
                if self._perceptual is not None and dec is not None and item.pixels is not None:
                    try:
                        faults.maybe_fail("perceptual_metric", item.src.uri)
                        q = {**q, **self._perceptual.score(item.pixels, item.pixels if takes_bytes else dec, item.cache)}
                    except Exception as exc:  # e.g. out of memory on a huge image: this setting becomes an error row
                        message = f"perceptual metric failed: {type(exc).__name__}: {exc}"
                        item.outputs.append((ERRORS, self._fail(item.src.uri, "metric", "metric_failure", message,
                                                                setting.label)))
                        continue
                try:
                    uri, packed = self._store(item, setting, stream)
                except UnsafePathError as exc:  # cannot happen for checked names; never write outside OUTPUT
                    row = self._fail(item.src.uri, "write", exc.reason, str(exc), setting.label)
                    item.outputs.append((ERRORS, row))
                    continue
                info = dict(item.info)
                header = _header(stream)
                info.setdefault("width", header.width)
                info.setdefault("height", header.height)
                row = metadata_row(
                    self.cfg,
                    source_uri=item.src.uri,
                    source_bytes=info.get("source_bytes"),
                    source_format=info.get("source_format"),
                    source_mode=info.get("source_mode"),
                    width=info.get("width"),
                    height=info.get("height"),
                    setting=setting,
                    codec=codec,
                    bitstream_uri=uri,
                    bitstream_bytes=len(stream),
                    payload_bytes=header.payload_length,
                    encode_ms=encode_ms,
                    decode_ms=decode_ms if dec is not None else None,
                    quality=q,
                )
                if packed is not None:
                    item.outputs.append((BITSTREAMS, packed))
                if self._latents_writer is not None:
                    lat_row = self._latents_writer.row(latents_of[id(item)], source_uri=item.src.uri,
                                                       bitstream_uri=uri, name=item.rel, setting=setting.label)
                    item.outputs.append((LATENTS, lat_row))
                item.outputs.append((None, row))
                self._acc.ok(len(stream))
        return items

    @staticmethod
    def _encode(codec, items: list[_Item], takes_bytes: bool) -> tuple[list, float]:
        """Encode the batch; if the batch call fails, encode image by image so only culprits fail."""
        inputs = [i.data if takes_bytes else i.pixels for i in items]
        return run_with_per_item_fallback(codec.encode_batch, codec.encode, inputs)

    @staticmethod
    def _encode_with_latents(codec, items: list[_Item]) -> tuple[list, list, float]:
        """``_encode`` for ``--export-latents``: streams and the latents the encoder coded into them."""
        results, ms = run_with_per_item_fallback(codec.encode_batch_with_latents,
                                                 lambda im: codec.encode_with_latents(im), [i.pixels for i in items])
        streams = [r if isinstance(r, BaseException) else r[0] for r in results]
        return streams, [None if isinstance(r, BaseException) else r[1] for r in results], ms

    def _decode(self, codec, streams: list[bytes]) -> tuple[list, float | None]:
        if self.cfg.metrics == "none" or not streams:
            return [None] * len(streams), None
        return run_with_per_item_fallback(codec.decode_batch, codec.decode, streams)

    def _store(self, item: _Item, setting, stream: bytes) -> tuple[str | None, dict | None]:
        """Write the stream (or return its packed row); the bitstream URI recorded in metadata."""
        if self.mode == "compress":
            rel = item.rel + BITSTREAM_SUFFIX
        elif self.cfg.keep_bitstreams:
            rel = join("bitstreams", setting_dir_name(setting.label), item.rel + BITSTREAM_SUFFIX)
        else:
            return None, None
        safe_relative_path(rel)
        if self.cfg.pack:
            packed = {
                "run_id": self.cfg.run_id,
                "source_uri": item.src.uri,
                "path": rel,
                "setting": setting.label,
                "codec": setting.codec,
                "bitstream_bytes": len(stream),
                "bitstream": stream,
            }
            return f"{join(self.cfg.run_url, 'bitstreams')}#{rel}", packed
        path = join(self._out_root, rel)
        atomic_write(self._out_fs, path, stream, tmp_dir=join(self._tmp_root, "objects"))
        return join(self.cfg.output, rel), None


def _header(stream: bytes):
    from nicbeam.codecs.container import parse_header

    return parse_header(stream)


def _jpeg_info(data: bytes) -> dict:
    """Cheap source facts for byte-input codecs (no pixel decode): format and geometry from the JPEG SOF."""
    if data[:2] != b"\xff\xd8":
        return {}
    info: dict[str, Any] = {"source_format": "JPEG"}
    try:
        from nicbeam.codecs.jpeg_transcode import read_jpeg_frame

        frame = read_jpeg_frame(data)
        info.update(width=frame.width, height=frame.height, source_mode={1: "L", 3: "YCbCr"}.get(frame.components))
    except Exception:
        pass
    return info


class EncodeImages(beam.PTransform):
    """``SourceFile``s -> tagged PCollections ``metadata``, ``errors`` and ``bitstreams``."""

    def __init__(self, cfg: JobConfig, mode: str = "compress"):
        super().__init__()
        self.cfg = cfg
        self.mode = mode

    def expand(self, sources):
        results = sources | "Codec" >> beam.ParDo(CodecDoFn(self.cfg, self.mode)).with_outputs(
            ERRORS, BITSTREAMS, LATENTS, main="metadata"
        )
        return {"metadata": results.metadata, "errors": results[ERRORS], "bitstreams": results[BITSTREAMS],
                "latents": results[LATENTS]}


def run_with_per_item_fallback(batch_call, single_call, inputs: list) -> tuple[list, float]:
    """``batch_call(inputs)`` (``single_call`` for one input); if it raises, call ``single_call`` per input
    with each failure kept in its place, so one bad image never fails its batch-mates. Returns the results
    (values or exceptions) and the mean milliseconds per input."""
    start = time.perf_counter()
    try:
        results = list(batch_call(inputs)) if len(inputs) > 1 else [single_call(inputs[0])]
        return results, 1000.0 * (time.perf_counter() - start) / len(inputs)
    except Exception as exc:
        if len(inputs) == 1:
            return [exc], 0.0
    results, total = [], 0.0
    for item in inputs:
        start = time.perf_counter()
        try:
            results.append(single_call(item))
        except Exception as exc:
            results.append(exc)
        total += time.perf_counter() - start
    return results, 1000.0 * total / len(inputs)
