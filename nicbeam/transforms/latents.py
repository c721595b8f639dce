"""Latents in Beam jobs: the rows (and ``.npy`` objects) of ``compress --export-latents``, and the step of
``nicbeam latents``, which entropy-decodes only the latents of existing streams (no synthesis transform).

``.npy`` objects are written atomically at ``OUTPUT/<name>.<array>.npy``, ``<name>`` being the image's
relative path (compress) or the stream's without ``.nicb`` (latents), so a retried bundle or a re-run
overwrites the same objects. In the latents job every stream ends in the latents table or the errors table
with the reason of the check that failed, as in ``decompress``.
"""

from __future__ import annotations

import apache_beam as beam

from nicbeam.latents import ARRAYS, STORAGE, latents_row, npy_bytes
from nicbeam.transforms.accounting import worker_id
from nicbeam.transforms.decode import StreamDoFn, _Stream
from nicbeam.transforms.encode import ERRORS
from nicbeam.transforms.paths import BITSTREAM_SUFFIX, join, resolve, safe_relative_path
from nicbeam.transforms.records import JobConfig
from nicbeam.transforms.write import atomic_write

LATENTS = "latents"


class LatentsWriter:
    """Turns one image's latents into its table row, writing the ``.npy`` objects first for ``npy``
    storage; built in a DoFn's ``setup``."""

    def __init__(self, *, run_id: str, output: str, tmp_url: str, storage: str) -> None:
        if storage not in STORAGE:
            raise ValueError(f"latents storage must be parquet or npy, not {storage!r}")
        self.run_id, self.output, self.storage = run_id, output, storage
        self._fs, self._root = resolve(output)
        _, self._tmp_root = resolve(tmp_url)

    def row(self, latents, *, source_uri: str, bitstream_uri: str | None, name: str, setting: str) -> dict:
        npy_uris = None
        if self.storage == "npy":
            npy_uris = {}
            for array_name in ARRAYS:
                array = getattr(latents, array_name)
                if array is None:
                    continue
                rel = safe_relative_path(f"{name}.{array_name}.npy")
                atomic_write(self._fs, join(self._root, rel), npy_bytes(array), tmp_dir=join(self._tmp_root, "objects"))
                npy_uris[array_name] = join(self.output, rel)
        return latents_row(latents, run_id=self.run_id, source_uri=source_uri, bitstream_uri=bitstream_uri,
                           path=name, setting=setting, worker=worker_id(), npy_uris=npy_uris)


class DecodeLatentsDoFn(StreamDoFn):
    """Streams (``SourceFile``s or ``PackedStream``s) -> latents rows (main) and error rows (``errors``)."""

    def setup(self):
        super().setup()
        self._writer = LatentsWriter(run_id=self.cfg.run_id, output=self.cfg.output, tmp_url=self.cfg.tmp_url,
                                     storage=self.cfg.export_latents or "parquet")

    def finish_bundle(self):
        self._acc.flush()

    def process(self, src):
        from nicbeam.codecs.errors import BitstreamError

        item = self._prepare(src)
        if not isinstance(item, _Stream):  # an error row
            yield item
            return
        if not callable(getattr(item.codec, "decode_latents", None)):
            yield self._fail(src.uri, "decode", "no_latents",
                             f"codec {item.header.codec!r} is not a learned codec: its streams have no latents",
                             item.setting_label)
            return
        try:
            latents = item.codec.decode_latents(item.data, max_pixels=self.cfg.max_pixels)
        except BitstreamError as exc:
            yield self._fail(src.uri, "decode", exc.reason, f"{type(exc).__name__}: {exc}", item.setting_label)
            return
        except Exception as exc:
            yield self._fail(src.uri, "decode", "codec_failure", f"{type(exc).__name__}: {exc}", item.setting_label)
            return
        row = self._writer.row(latents, source_uri=src.uri, bitstream_uri=src.uri,
                               name=item.rel.removesuffix(BITSTREAM_SUFFIX), setting=item.setting_label)
        self._acc.ok(sum(getattr(latents, a).nbytes for a in ARRAYS if getattr(latents, a) is not None))
        yield row


class DecodeLatents(beam.PTransform):
    """Streams -> ``{"latents": rows, "errors": rows}``."""

    def __init__(self, cfg: JobConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, streams):
        results = streams | "DecodeLatents" >> beam.ParDo(DecodeLatentsDoFn(self.cfg)).with_outputs(ERRORS, main=LATENTS)
        return {LATENTS: results[LATENTS], "errors": results[ERRORS]}
