"""The codec step of ``decompress``: nicbeam streams back to PNG (or the original JPEG bytes for
``jpeg-transcode``), written atomically at ``OUTPUT/<name without .nicb>[.png]``.

Streams come either one object per image (``SourceFile``s from :class:`~nicbeam.transforms.io.MatchInputs`)
or packed in Parquet files written by ``compress --pack`` (:class:`ReadPackedStreams`). The header names
the codec and its parameters; decoders are looked up in a per-process cache shared by the worker's
threads (learned codecs load their weights once). Every defective stream becomes an error row whose
reason is the container's check that failed (``bad_magic``, ``truncated``, ``checksum_mismatch``,
``unknown_codec``, ``model_mismatch``, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from nicbeam.transforms.accounting import Accounting
from nicbeam.transforms.codec_runtime import SharedCodecCache, batches_natively, prepare_worker
from nicbeam.transforms.encode import ERRORS, run_with_per_item_fallback
from nicbeam.transforms.io import StorageReadError, read_bytes
from nicbeam.transforms.paths import (
    SourceFile,
    UnsafePathError,
    decoded_name,
    decoded_name_key,
    join,
    list_inputs,
    resolve,
    safe_relative_path,
)
from nicbeam.transforms.records import JobConfig, error_row, now_utc
from nicbeam.transforms.write import atomic_write, write_json


@dataclass(frozen=True)
class PackedStream:
    """One stream read from a packed-bitstreams Parquet file: ``uri`` is ``<file>#<path>``."""

    uri: str
    rel_path: str
    data: bytes


def encode_png(pixels) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.png_encode(pixels, level=6))


@dataclass
class _Stream:
    """A stream whose header parsed, waiting (maybe in a batch of equal-size images) for its decode."""

    src: Any
    rel: str
    data: bytes
    header: Any
    setting_label: str
    codec: Any
    window: Any = None
    timestamp: Any = None


class StreamDoFn(beam.DoFn):
    """Base of the DoFns that take streams (``SourceFile``s or ``PackedStream``s): codec cache, accounting,
    error rows, and :meth:`_prepare` (check the name, read the stream, parse its header, find its codec)."""

    def __init__(self, cfg: JobConfig):
        self.cfg = cfg
        self._shared = SharedCodecCache(cfg.device)

    def setup(self):
        prepare_worker(self.cfg.torch_threads, self.cfg.worker_malloc)
        self._cache = self._shared.acquire()
        self._acc = Accounting(self.cfg.progress_dir)

    def _fail(self, uri, stage, reason, message, setting=None):
        self._acc.failed(reason)
        return beam.pvalue.TaggedOutput(ERRORS, error_row(self.cfg, uri, stage, reason, message, setting))

    def _prepare(self, src):
        """Check the name, read the stream and parse its header; an error output on failure."""
        from nicbeam.codecs.container import parse_header
        from nicbeam.codecs.errors import BitstreamError
        from nicbeam.codecs.spec import make_setting

        try:
            rel = safe_relative_path(src.rel_path)
        except UnsafePathError as exc:
            return self._fail(src.uri, "match", exc.reason, str(exc))
        if isinstance(src, PackedStream):
            data = src.data
        else:
            try:
                data = read_bytes(src.uri)
            except StorageReadError as exc:
                return self._fail(src.uri, "read", exc.reason, str(exc))
        self._acc.read(len(data))
        if not data:
            return self._fail(src.uri, "decode", "empty", "stream is empty (0 bytes)")
        setting_label = None
        try:
            header = parse_header(data, max_pixels=self.cfg.max_pixels)
            setting_label = make_setting(header.codec, dict(header.params)).label
            codec = self._cache.for_header(header)
        except BitstreamError as exc:
            return self._fail(src.uri, "decode", exc.reason, f"{type(exc).__name__}: {exc}", setting_label)
        except Exception as exc:
            return self._fail(src.uri, "decode", "codec_failure", f"{type(exc).__name__}: {exc}", setting_label)
        return _Stream(src, rel, data, header, setting_label, codec)


class DecodeDoFn(StreamDoFn):
    """Streams -> decoded objects written under OUTPUT, metadata rows (main) and error rows (``errors``).

    Streams of a codec that decodes natively in batches (learned codecs) are grouped by codec instance and
    image size within a bundle, up to ``batch_size``, and decoded with ``decode_batch`` (one transform pass
    on a GPU); a failing batch is retried stream by stream so one bad stream never fails its batch-mates."""

    def setup(self):
        super().setup()
        self._out_fs, self._out_root = resolve(self.cfg.output)
        _, self._tmp_root = resolve(self.cfg.tmp_url)

    def start_bundle(self):
        self._pending: dict[tuple, list[_Stream]] = {}

    def finish_bundle(self):
        for key in list(self._pending):
            for item, out in self._run_batch(self._pending.pop(key)):
                value = out.value if isinstance(out, beam.pvalue.TaggedOutput) else out
                wv = WindowedValue(value, item.timestamp, (item.window,))
                yield beam.pvalue.TaggedOutput(out.tag, wv) if isinstance(out, beam.pvalue.TaggedOutput) else wv
        self._acc.flush()

    def process(self, src, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        item = self._prepare(src)
        if not isinstance(item, _Stream):  # an error row
            yield item
            return
        item.window, item.timestamp = window, timestamp
        if self.cfg.batch_size <= 1 or not batches_natively(item.codec):
            ready = [item]
        else:
            key = (id(item.codec), item.header.width, item.header.height, window)
            batch = self._pending.setdefault(key, [])
            batch.append(item)
            if len(batch) < self.cfg.batch_size:
                return
            ready = self._pending.pop(key)
        for _, out in self._run_batch(ready):
            yield out

    def _run_batch(self, items: list[_Stream]):
        """Decode ``items`` (one codec, one size): ``(item, metadata row or error output)`` per stream."""
        from nicbeam.codecs.errors import BitstreamError

        codec = items[0].codec
        max_pixels = self.cfg.max_pixels
        results, decode_ms = run_with_per_item_fallback(
            codec.decode_batch, lambda data: codec.decode(data, max_pixels=max_pixels), [i.data for i in items]
        )
        for item, decoded in zip(items, results):
            if isinstance(decoded, Exception):
                reason = decoded.reason if isinstance(decoded, BitstreamError) else "codec_failure"
                yield item, self._fail(item.src.uri, "decode", reason, f"{type(decoded).__name__}: {decoded}",
                                       item.setting_label)
            else:
                yield item, self._write(item, decoded, decode_ms)

    def _write(self, item: _Stream, decoded, decode_ms: float) -> dict:
        from nicbeam import __version__
        from nicbeam.metrics import bpp
        from nicbeam.transforms.accounting import worker_id

        header, codec, data = item.header, item.codec, item.data
        original_bytes = isinstance(decoded, (bytes, bytearray))
        out_bytes = bytes(decoded) if original_bytes else encode_png(decoded)
        out_rel = decoded_name(item.rel, original_bytes=original_bytes)
        atomic_write(self._out_fs, join(self._out_root, out_rel), out_bytes, tmp_dir=join(self._tmp_root, "objects"))
        self._acc.ok(len(out_bytes))
        return {
            "run_id": self.cfg.run_id,
            "source_uri": item.src.uri,
            "source_bytes": len(data),
            "source_format": "nicbeam",
            "source_mode": None,
            "width": header.width,
            "height": header.height,
            "codec": header.codec,
            "setting": item.setting_label,
            "params": json.dumps(dict(header.params), sort_keys=True, separators=(",", ":")),
            "lossless": bool(codec.lossless),
            "codec_implementation": codec.implementation(),
            "codec_version": int(header.codec_version),
            "model_digest": header.model_digest_hex or None,
            "bitstream_uri": item.src.uri,
            "bitstream_bytes": len(data),
            "payload_bytes": header.payload_length,
            "bpp": bpp(header.payload_length, header.height, header.width),
            "psnr_rgb": None,
            "psnr_y": None,
            "ms_ssim": None,
            "ms_ssim_db": None,
            "psnr_hvs": None,
            "psnr_hvs_m": None,
            "encode_ms": None,
            "decode_ms": decode_ms,
            "device": str(codec.device),
            "worker": worker_id(),
            "nicbeam_version": __version__,
            "created_at": now_utc(),
            "output_uri": join(self.cfg.output, out_rel),
        }


class ClaimOutputNamesDoFn(beam.DoFn):
    """Streams grouped by :func:`decoded_name_key`: the first by URI keeps the name, every other one becomes
    an error row (reason ``name_collision``) instead of silently overwriting it or being overwritten."""

    def __init__(self, cfg: JobConfig):
        self.cfg = cfg

    def setup(self):
        self._acc = Accounting(self.cfg.progress_dir)

    def finish_bundle(self):
        self._acc.flush()

    def process(self, keyed):
        _, streams = keyed
        first, *others = sorted(streams, key=lambda s: s.uri)
        yield first
        for src in others:
            self._acc.failed("name_collision")
            message = (f"{src.rel_path} could decode to the same output name as {first.rel_path} (decoded); "
                       "rename one of the streams and decompress it again")
            yield beam.pvalue.TaggedOutput(ERRORS, error_row(self.cfg, src.uri, "match", "name_collision", message))


class DecodeStreams(beam.PTransform):
    """Streams -> ``{"metadata": rows, "errors": rows}``; at most one stream per output name is decoded."""

    def __init__(self, cfg: JobConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, streams):
        claimed = (
            streams
            | "KeyByOutputName" >> beam.Map(lambda s: (decoded_name_key(s.rel_path), s))
            | "GroupByOutputName" >> beam.GroupByKey()
            | "ClaimOutputNames" >> beam.ParDo(ClaimOutputNamesDoFn(self.cfg)).with_outputs(ERRORS, main="streams")
        )
        results = claimed.streams | "Decode" >> beam.ParDo(DecodeDoFn(self.cfg)).with_outputs(ERRORS, main="metadata")
        errors = (claimed[ERRORS], results[ERRORS]) | "MergeErrors" >> beam.Flatten()
        return {"metadata": results.metadata, "errors": errors}


# ------------------------------------------------------------------------------------ packed input
class _ListPacked(beam.DoFn):
    def __init__(self, run_url: str, progress_dir: str | None):
        self._run_url = run_url
        self._progress_dir = progress_dir

    def process(self, input_spec: str):
        import pyarrow.parquet as pq

        files = [s for s in list_inputs(input_spec, suffix=".parquet") if s.uri.endswith(".parquet")]
        total = 0
        for f in files:
            fs, path = resolve(f.uri)
            with fs.open(path, "rb") as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
        write_json(join(self._run_url, "matched.json"), {"input": input_spec, "count": total, "files": len(files)})
        acc = Accounting(self._progress_dir)
        acc.matched(total)
        acc.flush()
        for f in files:
            yield f.uri


class _ReadPacked(beam.DoFn):
    def process(self, uri: str):
        import pyarrow.parquet as pq

        fs, path = resolve(uri)
        with fs.open(path, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=["path", "bitstream"])
                for rel, data in zip(table.column("path").to_pylist(), table.column("bitstream").to_pylist()):
                    yield PackedStream(f"{uri}#{rel}", rel, data)


class ReadPackedStreams(beam.PTransform):
    """A folder or glob of packed-bitstreams Parquet files -> reshuffled :class:`PackedStream`s."""

    def __init__(self, input_spec: str, *, run_url: str, progress_dir: str | None = None):
        super().__init__()
        self._input_spec = input_spec
        self._run_url = run_url
        self._progress_dir = progress_dir

    def expand(self, pbegin):
        return (
            pbegin
            | "Pattern" >> beam.Create([self._input_spec])
            | "ListFiles" >> beam.ParDo(_ListPacked(self._run_url, self._progress_dir))
            | "ReshuffleFiles" >> beam.Reshuffle()
            | "ReadRows" >> beam.ParDo(_ReadPacked())
            | "ReshuffleStreams" >> beam.Reshuffle()
        )


__all__ = ["DecodeDoFn", "DecodeStreams", "PackedStream", "ReadPackedStreams", "SourceFile", "encode_png"]
