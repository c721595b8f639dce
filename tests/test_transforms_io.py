"""Unit tests of the transforms' building blocks: safe paths, input listing, atomic writes, the table
writer's commit protocol, fault injection and the accounting equation."""

from __future__ import annotations

import json
import uuid

import pyarrow.parquet as pq
import pytest

from nicbeam.transforms import faults
from nicbeam.transforms.accounting import build_summary, format_summary
from nicbeam.transforms.paths import (
    UnsafePathError,
    decoded_name,
    glob_base,
    is_within,
    list_inputs,
    safe_relative_path,
    setting_dir_name,
)
from nicbeam.transforms.write import atomic_write, table_bytes


@pytest.mark.parametrize("name", ["a/b.png", "x.png", "deep/er/name with space.jpg", "..hidden/x", "a/.b"])
def test_safe_relative_paths_pass(name):
    assert safe_relative_path(name) == name


@pytest.mark.parametrize(
    "name", ["", "/etc/passwd", "../x.png", "a/../../x", "a//b", "a/./b", "a\\b", "a/\nb", "a/"]
)
def test_unsafe_relative_paths_are_refused(name):
    with pytest.raises(UnsafePathError) as info:
        safe_relative_path(name)
    assert info.value.reason == "unsafe_path"


def test_glob_base_and_names():
    assert glob_base("/data/**/*.png") == "/data"
    assert glob_base("/data/img?.png") == "/data"
    assert glob_base("/data/x.png") == "/data"
    assert decoded_name("a/x.jpg.nicb", original_bytes=True) == "a/x.jpg"
    assert decoded_name("a/x.jpg.nicb", original_bytes=False) == "a/x.jpg.png"
    assert decoded_name("a/x.PNG.nicb", original_bytes=False) == "a/x.PNG"
    assert setting_dir_name("jpeg:quality=50:subsampling=444") == "jpeg_quality=50_subsampling=444"


def test_list_inputs_folder_glob_file_and_own_outputs(tmp_path):
    names = ("a.png", "sub/b.jpg", "sub/deeper/c.png", "_runs/r1/metadata/x.parquet", "_LATEST", "sub/_runs/keep.png")
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * 3)
    folder = [(s.rel_path, s.size) for s in list_inputs(str(tmp_path))]
    assert folder == [("a.png", 3), ("sub/_runs/keep.png", 3), ("sub/b.jpg", 3), ("sub/deeper/c.png", 3)]
    assert [s.rel_path for s in list_inputs(f"{tmp_path}/sub/*.jpg")] == ["b.jpg"]
    assert [s.rel_path for s in list_inputs(f"{tmp_path}/**/*.png")][:1] == ["a.png"]
    (single,) = list_inputs(f"{tmp_path}/sub/b.jpg")
    assert (single.rel_path, single.uri) == ("b.jpg", f"{tmp_path}/sub/b.jpg")
    assert list(list_inputs(f"{tmp_path}/missing")) == []
    assert [s.rel_path for s in list_inputs(str(tmp_path), suffix=".jpg")] == ["sub/b.jpg"]


def test_list_inputs_memory_filesystem():
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/li-{uuid.uuid4().hex[:8]}"
    fs.pipe({f"{root}/x/1.png": b"1", f"{root}/x/y/2.png": b"22"})
    try:
        got = [(s.uri, s.rel_path, s.size) for s in list_inputs(f"memory://{root}/x")]
        assert got == [(f"memory://{root}/x/1.png", "1.png", 1), (f"memory://{root}/x/y/2.png", "y/2.png", 2)]
    finally:
        fs.rm(root, recursive=True)


def test_is_within(tmp_path):
    assert is_within(str(tmp_path / "in" / "out"), str(tmp_path / "in"))
    assert not is_within(str(tmp_path / "input2"), str(tmp_path / "in"))
    assert not is_within("memory:///in/out", str(tmp_path))


def test_atomic_write_leaves_old_content_when_interrupted(tmp_path, monkeypatch):
    import fsspec

    fs = fsspec.filesystem("file")
    target = tmp_path / "d" / "x.nicb"
    atomic_write(fs, str(target), b"old")
    monkeypatch.setenv(faults.ENV_POINTS, "before_object_rename")
    monkeypatch.setenv(faults.ENV_DIR, str(tmp_path))
    with pytest.raises(faults.InjectedFault):
        atomic_write(fs, str(target), b"new-content", tmp_dir=str(tmp_path / "tmp"))
    assert target.read_bytes() == b"old"
    assert not [p for p in tmp_path.rglob("*") if "nicbeam-tmp" in p.name]
    atomic_write(fs, str(target), b"new-content", tmp_dir=str(tmp_path / "tmp"))  # fault fired once
    assert target.read_bytes() == b"new-content"


def test_write_table_empty_and_batched_shards(tmp_path):
    import apache_beam as beam
    import pyarrow as pa

    from nicbeam.transforms.write import WriteTable

    schema = pa.schema([pa.field("k", pa.string(), nullable=False), pa.field("v", pa.int64())])
    with beam.Pipeline(runner="FnApiRunner") as p:
        rows = p | "Rows" >> beam.Create([{"k": f"r{i}", "v": i} for i in range(7)])
        rows | "Full" >> WriteTable(str(tmp_path / "full"), str(tmp_path / "tmp/full"), schema, rows_per_file=3)
        p | "None" >> beam.Create([]) | "Empty" >> WriteTable(str(tmp_path / "empty"), str(tmp_path / "tmp/e"), schema)
    full = json.loads((tmp_path / "full/_manifest.json").read_text())
    assert full["rows"] == 7 and len(full["files"]) == 3
    names = sorted(f.name for f in (tmp_path / "full").glob("*.parquet"))
    assert names == ["part-00000-of-00003.parquet", "part-00001-of-00003.parquet", "part-00002-of-00003.parquet"]
    got = sorted(r["v"] for f in names for r in pq.read_table(tmp_path / "full" / f).to_pylist())
    assert got == list(range(7))
    empty = pq.read_table(tmp_path / "empty/part-00000-of-00001.parquet")
    assert empty.num_rows == 0 and empty.schema.equals(schema)
    assert not list((tmp_path / "tmp").rglob("*.parquet"))  # every temp shard was promoted


def test_table_bytes_rejects_missing_required_columns():
    import pyarrow as pa

    schema = pa.schema([pa.field("k", pa.string(), nullable=False)])
    assert pq.read_table(pa.BufferReader(table_bytes([{"k": "a"}], schema))).num_rows == 1
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, ValueError)):
        table_bytes([{"k": None}], schema)


def _write_rows(folder, schema, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-00000-of-00001.parquet").write_bytes(table_bytes(rows, schema))


def test_summary_equation_catches_losses_and_duplicates(tmp_path):
    from nicbeam.transforms.records import JobConfig, error_row
    from nicbeam.transforms.schema import ERROR_SCHEMA, METADATA_SCHEMA

    cfg = JobConfig(run_id="r", output=str(tmp_path))
    base = {c: None for c in METADATA_SCHEMA.names}
    meta = [dict(base, run_id="r", source_uri=u, codec="png", setting=s) for u in ("a", "b") for s in ("s1", "s2")]
    errs = [error_row(cfg, "c", "load", "empty", "x"), error_row(cfg, "d", "encode", "codec_failure", "x", "s2")]
    meta.append(dict(base, run_id="r", source_uri="d", codec="png", setting="s1"))
    _write_rows(tmp_path / "metadata", METADATA_SCHEMA, meta)
    _write_rows(tmp_path / "errors", ERROR_SCHEMA, errs)
    summary = build_summary(str(tmp_path), job="evaluate", settings=["s1", "s2"], matched=4, counters={})
    assert summary["balanced"] and summary["accounted_outcomes"] == 8 and summary["errors_by_reason"] == {
        "codec_failure": 1, "empty": 1}
    assert "all inputs accounted for" in format_summary(summary)
    lost = build_summary(str(tmp_path), job="evaluate", settings=["s1", "s2"], matched=5, counters={})
    assert not lost["balanced"] and "MISMATCH" in format_summary(lost)
    _write_rows(tmp_path / "metadata", METADATA_SCHEMA, meta + [meta[0]])
    doubled = build_summary(str(tmp_path), job="evaluate", settings=["s1", "s2"], matched=4, counters={})
    assert doubled["duplicates"] == 1 and not doubled["balanced"]
