"""Streaming: the compress transforms in a ``--streaming`` pipeline fed by ``TestStream`` (files landing
over time), tables committed per fixed window; and the local ``--watch`` polling loop."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from tests.test_pipeline_compress import cli, mixed_files, write_tree


def test_teststream_compress_writes_tables_per_window(tmp_path):
    import apache_beam as beam
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.transforms.window import TimestampedValue

    from nicbeam.codecs.spec import make_setting
    from nicbeam.pipelines.compress import compress_sources
    from nicbeam.pipelines.options import default_runner, pipeline_options
    from nicbeam.transforms.paths import SourceFile
    from nicbeam.transforms.records import JobConfig

    files = mixed_files()
    names = ["good/rgb.png", "good/photo.jpg", "bad/zero.png", "good/gray.png", "bad/notes.txt"]
    src = write_tree(tmp_path / "in", {n: files[n] for n in names})
    out = tmp_path / "out"
    def source(name):
        return SourceFile(str(src / name), name, len(files[name]))

    stream = (
        TestStream()
        .advance_watermark_to(0)
        .add_elements([TimestampedValue(source(n), t) for n, t in ((names[0], 5), (names[1], 20), (names[2], 30))])
        .advance_watermark_to(61)  # closes window [0, 60)
        .add_elements([TimestampedValue(source(n), t) for n, t in ((names[3], 70), (names[4], 80))])
        .advance_watermark_to_infinity()
    )
    options = pipeline_options(["--streaming"])
    runner = default_runner(options)
    assert type(runner).__name__ == "BundleBasedDirectRunner"
    cfg = JobConfig(run_id="stream", output=str(out), settings=(make_setting("jpeg", {"quality": 70}),))
    with beam.Pipeline(runner=runner, options=options) as p:
        compress_sources(p | stream, cfg, window_seconds=60)

    meta_dir, err_dir = out / "_runs/stream/metadata", out / "_runs/stream/errors"
    meta_files = sorted(f.name for f in meta_dir.glob("*.parquet"))
    assert meta_files == [
        "window-19700101T000000-19700101T000100-part-00000-of-00001.parquet",
        "window-19700101T000100-19700101T000200-part-00000-of-00001.parquet",
    ]
    first = pq.read_table(meta_dir / meta_files[0]).to_pylist()
    second = pq.read_table(meta_dir / meta_files[1]).to_pylist()
    assert sorted(Path(r["source_uri"]).name for r in first) == ["photo.jpg", "rgb.png"]
    assert [Path(r["source_uri"]).name for r in second] == ["gray.png"]
    errors = {f.name: pq.read_table(f).to_pylist() for f in err_dir.glob("*.parquet")}
    assert {n[:40]: [r["reason"] for r in rows] for n, rows in errors.items()} == {
        "window-19700101T000000-19700101T000100-p": ["empty"],
        "window-19700101T000100-19700101T000200-p": ["unreadable"],
    }
    manifest = json.loads((meta_dir / "window-19700101T000000-19700101T000100-_manifest.json").read_text())
    assert manifest["rows"] == 2
    assert len(list(out.rglob("*.nicb"))) == 3


def test_local_watch_compresses_files_as_they_land(tmp_path, capsys):
    files = mixed_files()
    src = write_tree(tmp_path / "in", {"a.png": files["good/rgb.png"], "b.jpg": files["good/photo.jpg"]})
    out = tmp_path / "out"

    def land_later():
        deadline = time.monotonic() + 60
        while not list(out.glob("_runs/*/_SUCCESS")) and time.monotonic() < deadline:
            time.sleep(0.05)
        (src / "later").mkdir()
        (src / "later/c.png").write_bytes(files["good/gray.png"])

    thread = threading.Thread(target=land_later, daemon=True)
    thread.start()
    code = cli("compress", src, out, "--codec", "png", "--watch", "0.2", "--watch_idle_stop", "4",
               "--watch_timeout", "60", "--run_id", "w", "--progress_interval", "0")
    thread.join()
    assert code == 0
    runs = sorted(p.name for p in (out / "_runs").iterdir())
    assert runs == ["w-00001", "w-00002"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nicb")) == [
        "a.png.nicb", "b.jpg.nicb", "later/c.png.nicb"]
    second = pq.read_table(out / "_runs/w-00002/metadata").to_pylist()
    assert [Path(r["source_uri"]).name for r in second] == ["c.png"]
    assert '"files": 3' in capsys.readouterr().err


def test_gcs_notifications_map_to_sources():
    from nicbeam.pipelines.compress import gcs_notification_sources

    base = "gs://bucket/incoming"
    ok = {"eventType": "OBJECT_FINALIZE", "bucketId": "bucket", "objectId": "incoming/day1/x.jpg"}
    (src,) = gcs_notification_sources(ok, base)
    assert (src.uri, src.rel_path) == ("gs://bucket/incoming/day1/x.jpg", "day1/x.jpg")
    assert gcs_notification_sources({**ok, "eventType": "OBJECT_DELETE"}, base) == []
    assert gcs_notification_sources({**ok, "objectId": "elsewhere/x.jpg"}, base) == []
