"""Compressed-domain latents as a table: the schema written by ``nicbeam compress --export-latents`` and
``nicbeam latents``, and :func:`read_latents` to load them back as numpy arrays (no PyTorch needed).

One row per image: what made the latents (codec, setting, quality, weights digest), the image size, and the
arrays, flattened in C order with their shapes (``storage="parquet"``), or the URIs of one ``.npy`` file per
array (``storage="npy"``, written beside the streams as ``<name>.y_hat.npy`` etc.). The arrays are those of
:class:`nicbeam.codecs.learned.latents.Latents`: ``y_hat`` (float32, the synthesis transform's input),
``y_symbols`` (int32, the integers the stream codes for y) and ``z_hat`` (int32, hyperprior only).
Documented in ``docs/latents.md``.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

#: Arrays stored per image, with their numpy dtypes.
ARRAYS: dict[str, Any] = {"y_hat": np.float32, "y_symbols": np.int32, "z_hat": np.int32}
STORAGE = ("parquet", "npy")
#: Rows per Parquet file of the latents table: a Kodak-size row holds about 1.6 MB of arrays.
ROWS_PER_FILE = 64

LATENTS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),  # the image (compress) or the stream (latents)
        pa.field("bitstream_uri", pa.string()),
        pa.field("path", pa.string(), nullable=False),  # relative path of the image, without .nicb
        pa.field("codec", pa.string(), nullable=False),
        pa.field("setting", pa.string(), nullable=False),
        pa.field("params", pa.string()),
        pa.field("quality", pa.int32()),
        pa.field("model_digest", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("storage", pa.string(), nullable=False),
        pa.field("y_shape", pa.list_(pa.int32())),
        pa.field("y_hat", pa.list_(pa.float32())),
        pa.field("y_symbols", pa.list_(pa.int32())),
        pa.field("z_shape", pa.list_(pa.int32())),
        pa.field("z_hat", pa.list_(pa.int32())),
        pa.field("y_hat_npy", pa.string()),
        pa.field("y_symbols_npy", pa.string()),
        pa.field("z_hat_npy", pa.string()),
        pa.field("worker", pa.string()),
        pa.field("nicbeam_version", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def latents_row(latents, *, run_id: str, source_uri: str, bitstream_uri: str | None, path: str, setting: str,
                worker: str, npy_uris: dict[str, str] | None = None) -> dict:
    """The table row of one image's :class:`~nicbeam.codecs.learned.latents.Latents`; with ``npy_uris``
    (array name -> URI of its written ``.npy``) the arrays are referenced instead of stored inline."""
    from nicbeam import __version__

    inline = npy_uris is None
    z = latents.z_hat
    row = {
        "run_id": run_id,
        "source_uri": source_uri,
        "bitstream_uri": bitstream_uri,
        "path": path,
        "codec": latents.codec,
        "setting": setting,
        "params": json.dumps(latents.params, sort_keys=True, separators=(",", ":")),
        "quality": latents.quality,
        "model_digest": latents.model_digest,
        "width": latents.width,
        "height": latents.height,
        "storage": "parquet" if inline else "npy",
        "y_shape": list(latents.y_hat.shape),
        "z_shape": None if z is None else list(z.shape),
        "worker": worker,
        "nicbeam_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc),
    }
    for name in ARRAYS:
        array = getattr(latents, name)
        row[name] = array.ravel() if inline and array is not None else None  # Arrow converts numpy directly
        row[f"{name}_npy"] = None if inline else (npy_uris or {}).get(name)
    return row


# ----------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class LatentRecord:
    """One image's latents read back: the identifying columns and the arrays in their shapes."""

    path: str
    codec: str
    setting: str
    quality: int
    model_digest: str
    width: int
    height: int
    y_hat: np.ndarray
    y_symbols: np.ndarray
    z_hat: np.ndarray | None
    source_uri: str = ""
    bitstream_uri: str | None = None
    run_id: str = ""
    params: dict = field(default_factory=dict)


def latents_files(path: str) -> list[str]:
    """The Parquet files of a latents table: ``path`` itself (a file), its ``*.parquet`` files (the table
    folder), or those of ``path/latents`` (a run folder ``OUTPUT/_runs/<run_id>``)."""
    from nicbeam.transforms.paths import join, resolve

    fs, local = resolve(path)
    if fs.isfile(local):
        return [path]
    for folder in (local, join(local, "latents")):
        found = sorted(fs.glob(folder.rstrip("/") + "/*.parquet"))
        if found:
            return [fs.unstrip_protocol(f) for f in found]
    raise FileNotFoundError(f"no latents Parquet files in {path!r} (expected a file, the latents/ folder or a run folder)")


def read_latents(path: str, *, columns: tuple[str, ...] = ("y_hat", "y_symbols", "z_hat")) -> list[LatentRecord]:
    """Load a latents table (file, table folder or run folder; any fsspec URL) as :class:`LatentRecord`s,
    rows ordered by ``path`` then ``setting``. ``.npy``-stored arrays are loaded from their URIs; arrays
    not named in ``columns`` are left empty (cheaper when only ``y_hat`` is needed)."""
    import pyarrow.parquet as pq

    from nicbeam.transforms.paths import resolve

    records = []
    for uri in latents_files(path):
        fs, local = resolve(uri)
        with fs.open(local, "rb") as handle:
            table = pq.read_table(handle)
        scalars = table.select([c for c in LATENTS_SCHEMA.names if c not in ARRAYS]).to_pylist()
        for i, row in enumerate(scalars):
            arrays = {name: _array(table, i, row, name) if name in columns else None for name in ARRAYS}
            records.append(LatentRecord(
                path=row["path"], codec=row["codec"], setting=row["setting"], quality=row["quality"],
                model_digest=row["model_digest"], width=row["width"], height=row["height"],
                y_hat=arrays["y_hat"], y_symbols=arrays["y_symbols"], z_hat=arrays["z_hat"],
                source_uri=row["source_uri"], bitstream_uri=row["bitstream_uri"], run_id=row["run_id"],
                params=json.loads(row["params"] or "{}"),
            ))
    return sorted(records, key=lambda r: (r.path, r.setting))


def _array(table, index: int, row: dict, name: str) -> np.ndarray | None:
    """Array ``name`` of row ``index``: from its ``.npy`` file, or the list column read as numpy (no Python
    lists: a Kodak-size row has about 200,000 values per array)."""
    shape = row["z_shape" if name == "z_hat" else "y_shape"]
    if row["storage"] == "npy":
        uri = row[f"{name}_npy"]
        if uri is None:
            return None
        from nicbeam.transforms.paths import resolve

        fs, local = resolve(uri)
        with fs.open(local, "rb") as handle:
            array = np.load(io.BytesIO(handle.read()), allow_pickle=False)
        if shape is not None and list(array.shape) != list(shape):
            raise ValueError(f"{uri}: shape {array.shape} differs from the table's {shape}")
        return array
    cell = table.column(name)[index]
    if not cell.is_valid:
        return None
    return cell.values.to_numpy(zero_copy_only=False).astype(ARRAYS[name], copy=False).reshape(shape)
