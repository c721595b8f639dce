"""Atomic, idempotent outputs: one object per image, and Parquet tables committed per run (and window).

Objects: the final name is a pure function of the input's relative path, so a retried bundle or a re-run
overwrites the same object instead of adding one. On filesystems with a rename (local disks, NFS, HDFS)
the bytes go to a temporary name in the run's ``_tmp`` folder first and are renamed into place, so a
reader never sees a partial file; on object stores (GCS, S3, ``memory://``) an object becomes visible only
when its upload completes, so it is written directly.

Tables: :class:`WriteTable` follows Beam's own file-sink protocol. Workers write rows to uniquely named
temporary Parquet files under ``_runs/<run>/_tmp/<table>/`` and emit their names; only the names that
reach the finalize step (i.e. were emitted by *committed* bundles) are renamed to
``_runs/<run>/<table>/part-NNNNN-of-MMMMM.parquet``. Files written by a failed bundle attempt are never
promoted and are deleted with ``_tmp``. Finalize is itself idempotent (renames whose source is already
gone are skipped), and a batch table always gets at least one (possibly empty) file plus a
``_manifest.json`` with its file list and row count.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import uuid
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.transforms import window as beam_window
from apache_beam.utils.windowed_value import WindowedValue

from nicbeam.transforms import faults
from nicbeam.transforms.paths import OBJECT_STORE_PROTOCOLS, join, protocol_of, resolve

_LOG = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"


# ----------------------------------------------------------------------------------------------- objects
def needs_rename(fs) -> bool:
    """True when writes must go through a temporary name (filesystems without atomic object PUTs)."""
    return protocol_of(fs) not in OBJECT_STORE_PROTOCOLS


def atomic_write(fs, path: str, data: bytes, *, tmp_dir: str | None = None) -> None:
    """Write ``data`` to ``path`` (protocol-less, on ``fs``) so that ``path`` is either absent, the old
    complete content, or the new complete content, never a partial file."""
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if not needs_rename(fs):
        with fs.open(path, "wb") as handle:
            handle.write(data)
        faults.maybe_fail("after_object_write", path)
        return
    tmp_parent = tmp_dir or parent
    fs.makedirs(tmp_parent, exist_ok=True)
    tmp = join(tmp_parent, f".{posixpath.basename(path)}.{uuid.uuid4().hex}.nicbeam-tmp")
    try:
        with fs.open(tmp, "wb") as handle:
            handle.write(data)
        faults.maybe_fail("before_object_rename", path)
        fs.mv(tmp, path)
    except BaseException:
        try:
            if fs.exists(tmp):
                fs.rm(tmp)
        except Exception:  # best effort; _tmp is removed at the end of the run anyway
            pass
        raise
    faults.maybe_fail("after_object_write", path)


def write_json(url: str, payload: Any) -> None:
    """Atomically write a small JSON document (manifests, summaries)."""
    fs, path = resolve(url)
    atomic_write(fs, path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))


def read_json(url: str) -> Any:
    fs, path = resolve(url)
    with fs.open(path, "rb") as handle:
        return json.loads(handle.read().decode("utf-8"))


def table_bytes(rows: list[dict], schema: pa.Schema) -> bytes:
    """Serialise rows (dicts with the schema's columns) as one Parquet file."""
    table = pa.Table.from_pylist(rows, schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


# ----------------------------------------------------------------------------------------------- tables
class _WriteTempShards(beam.DoFn):
    """Buffer rows per window within a bundle; write each full buffer to a unique temporary Parquet file
    and emit ``(temp_path, num_rows)``. Rows are never split across windows."""

    def __init__(self, tmp_dir: str, schema: pa.Schema, rows_per_file: int, bytes_per_file: int, size_column):
        self._tmp_dir = tmp_dir
        self._schema = schema
        self._rows_per_file = rows_per_file
        self._bytes_per_file = bytes_per_file
        self._size_column = size_column

    def setup(self):
        self._fs, self._tmp_path = resolve(self._tmp_dir)

    def start_bundle(self):
        self._buffers: dict[Any, list[dict]] = {}
        self._sizes: dict[Any, int] = {}

    def process(self, row: dict, window=beam.DoFn.WindowParam):
        buf = self._buffers.setdefault(window, [])
        buf.append(row)
        if self._size_column:
            self._sizes[window] = self._sizes.get(window, 0) + len(row.get(self._size_column) or b"")
        if len(buf) >= self._rows_per_file or self._sizes.get(window, 0) >= self._bytes_per_file:
            yield self._flush(window)

    def finish_bundle(self):
        for win in list(self._buffers):
            if self._buffers[win]:
                yield WindowedValue(self._flush(win), win.max_timestamp(), (win,))

    def _flush(self, win) -> tuple[str, int]:
        rows = self._buffers.pop(win)
        self._sizes.pop(win, None)
        self._fs.makedirs(self._tmp_path, exist_ok=True)
        path = join(self._tmp_path, f"{uuid.uuid4().hex}.parquet")
        with self._fs.open(path, "wb") as handle:
            handle.write(table_bytes(rows, self._schema))
        faults.maybe_fail("after_temp_shard", path)
        return path, len(rows)


def _window_prefix(win) -> str:
    if isinstance(win, beam_window.IntervalWindow):
        start = win.start.to_utc_datetime().strftime("%Y%m%dT%H%M%S")
        end = win.end.to_utc_datetime().strftime("%Y%m%dT%H%M%S")
        return f"window-{start}-{end}-"
    return ""


def _promote(fs, table_path: str, temps: Iterable[tuple[str, int]], prefix: str, schema: pa.Schema) -> dict:
    """Rename committed temporary shards to their final names; write an empty file if there are none."""
    temps = sorted(set(temps))
    fs.makedirs(table_path, exist_ok=True)
    files = []
    if not temps:
        name = f"{prefix}part-00000-of-00001.parquet"
        atomic_write(fs, join(table_path, name), table_bytes([], schema))
        files.append({"file": name, "rows": 0})
    total = len(temps)
    for index, (temp, rows) in enumerate(temps):
        name = f"{prefix}part-{index:05d}-of-{total:05d}.parquet"
        final = join(table_path, name)
        if fs.exists(temp):
            fs.mv(temp, final)
        elif not fs.exists(final):  # neither the temp nor the final file: a real loss, never hide it
            raise FileNotFoundError(f"committed shard {temp} vanished before it was finalized as {final}")
        files.append({"file": name, "rows": rows})
    return {"files": files, "rows": sum(f["rows"] for f in files)}


class _FinalizeGlobal(beam.DoFn):
    """Batch finalize: runs exactly once (one input element) with every committed shard as a side input."""

    def __init__(self, table_dir: str, schema: pa.Schema):
        self._table_dir = table_dir
        self._schema = schema

    def process(self, _unused, temps):
        fs, table_path = resolve(self._table_dir)
        manifest = _promote(fs, table_path, temps, "", self._schema)
        write_json(join(self._table_dir, MANIFEST_NAME), manifest)
        yield manifest


class _FinalizeWindow(beam.DoFn):
    """Streaming finalize: one firing per window (and pane) promotes that window's shards."""

    def __init__(self, table_dir: str, schema: pa.Schema):
        self._table_dir = table_dir
        self._schema = schema

    def process(self, keyed, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        _, temps = keyed
        fs, table_path = resolve(self._table_dir)
        prefix = _window_prefix(win)
        if pane is not None and pane.index:
            prefix += f"pane{pane.index}-"
        manifest = _promote(fs, table_path, temps, prefix, self._schema)
        manifest["window"] = prefix.rstrip("-") or "global"
        name = f"{prefix}{MANIFEST_NAME}" if prefix else MANIFEST_NAME
        write_json(join(self._table_dir, name), manifest)
        yield manifest


class WriteTable(beam.PTransform):
    """Write a PCollection of row dicts to ``table_dir`` as Parquet with ``schema``, committed atomically.

    Batch (global window): a single finalize after all shards; the output is the manifest dict.
    Windowed (streaming): each window's shards are promoted when the window fires, with file names
    prefixed ``window-<start>-<end>-``; the output is one manifest per window.
    """

    def __init__(
        self,
        table_dir: str,
        tmp_dir: str,
        schema: pa.Schema,
        *,
        rows_per_file: int = 100_000,
        bytes_per_file: int = 256 << 20,
        size_column: str | None = None,
    ):
        super().__init__()
        self._table_dir = table_dir
        self._tmp_dir = tmp_dir
        self._schema = schema
        self._rows_per_file = rows_per_file
        self._bytes_per_file = bytes_per_file
        self._size_column = size_column

    def expand(self, rows):
        temps = rows | "WriteTempShards" >> beam.ParDo(
            _WriteTempShards(self._tmp_dir, self._schema, self._rows_per_file, self._bytes_per_file, self._size_column)
        )
        if isinstance(rows.windowing.windowfn, beam_window.GlobalWindows):
            return (
                rows.pipeline
                | "Once" >> beam.Create([None])
                | "Finalize" >> beam.ParDo(_FinalizeGlobal(self._table_dir, self._schema), beam.pvalue.AsList(temps))
            )
        return (
            temps
            | "KeyAll" >> beam.Map(lambda t: (None, t))
            | "GroupPerWindow" >> beam.GroupByKey()
            | "FinalizeWindow" >> beam.ParDo(_FinalizeWindow(self._table_dir, self._schema))
        )
