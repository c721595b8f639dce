"""The recompress manifest: its Arrow schema, row builder, and the per-file journal that makes runs resumable.

Manifest (``_runs/<run>/manifest/``): one row per matched input, whatever became of it (``status``
``recompressed``, ``kept`` with the reason the original stays the copy to keep, or ``failed`` with the
error reason). Journal (``OUTPUT/_runs/_journal/<rel>.json``): the same row, written atomically right after
a file's output is written and verified (or after it is decided to keep it), so an interrupted run leaves
a durable record per finished file. The next run skips a file only when its journal row has the same
source sha256, the same options fingerprint and (for recompressed files) an output whose sha256 still
matches; anything else, including a corrupt or partial output, is done again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from typing import Any

import pyarrow as pa

from nicbeam.transforms.paths import RUNS_DIR, join

STATUSES = ("recompressed", "kept", "failed")
#: Folder under ``OUTPUT/_runs`` holding one journal record per finished file (not a run id: it starts with _).
JOURNAL_DIR = "_journal"
JOURNAL_VERSION = 1

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("rel_path", pa.string()),
        pa.field("source_bytes", pa.int64()),
        pa.field("source_sha256", pa.string()),
        pa.field("source_format", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("mode", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("codec", pa.string()),
        pa.field("setting", pa.string()),
        pa.field("params", pa.string()),
        pa.field("output_uri", pa.string()),
        pa.field("output_bytes", pa.int64()),
        pa.field("output_sha256", pa.string()),
        pa.field("verified", pa.bool_()),
        pa.field("quality_metric", pa.string()),
        pa.field("quality_target", pa.float64()),
        pa.field("quality_reached", pa.float64()),
        pa.field("search_steps", pa.int32()),
        pa.field("bytes_saved", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("message", pa.string()),
        pa.field("candidates", pa.string()),
        pa.field("resumed", pa.bool_()),
        pa.field("encode_ms", pa.float64()),
        pa.field("worker", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)

#: Columns that change between runs of the same work (who, when, how long, whether resumed); every other
#: column is the outcome, identical whether a corpus was done in one run or resumed after an interruption.
RUN_COLUMNS = ("run_id", "resumed", "encode_ms", "worker", "created_at")
CONTENT_COLUMNS = tuple(f.name for f in MANIFEST_SCHEMA if f.name not in RUN_COLUMNS)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def options_fingerprint(options: dict[str, Any]) -> str:
    """A short digest of the options that decide a file's outcome (a journal row counts only under them)."""
    text = json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def manifest_row(run_id: str, source_uri: str, status: str, **values: Any) -> dict:
    """A manifest row with every column present (unset ones null)."""
    from nicbeam.transforms.accounting import worker_id

    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    row: dict[str, Any] = {f.name: None for f in MANIFEST_SCHEMA}
    unknown = set(values) - set(row)
    if unknown:
        raise KeyError(f"not manifest columns: {sorted(unknown)}")
    row.update(values)
    row.update(run_id=run_id, source_uri=source_uri, status=status, worker=worker_id(),
               created_at=_dt.datetime.now(_dt.timezone.utc))
    row["resumed"] = bool(row["resumed"])
    return row


def journal_url(output: str, rel: str) -> str:
    return join(output, RUNS_DIR, JOURNAL_DIR, rel + ".json")


def journal_bytes(row: dict, fingerprint: str) -> bytes:
    record = {k: (v.isoformat() if isinstance(v, _dt.datetime) else v) for k, v in row.items()}
    return json.dumps({"version": JOURNAL_VERSION, "fingerprint": fingerprint, "row": record},
                      sort_keys=True, allow_nan=True).encode()


def parse_journal(data: bytes, fingerprint: str) -> dict | None:
    """The row of a journal record written under ``fingerprint``; None when unreadable or made otherwise."""
    try:
        record = json.loads(data.decode())
        if record.get("version") != JOURNAL_VERSION or record.get("fingerprint") != fingerprint:
            return None
        row = dict(record["row"])
        if set(row) != {f.name for f in MANIFEST_SCHEMA}:
            return None
        row["created_at"] = _dt.datetime.fromisoformat(row["created_at"])
        return row
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
