"""The ``nicbeam`` command line: codecs table and bitstream info."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from nicbeam.codecs import get_codec
from nicbeam.pipelines.cli import main


def test_codecs_table_lists_every_codec_with_lossless_flag(capsys) -> None:
    assert main(["codecs"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert lines["png"].split()[1] == "yes"
    assert lines["jpeg"].split()[1] == "no"
    assert "quality=1..100 (75)" in lines["jpeg"]
    assert lines["jpegxl"].split()[1] == "option"
    # lossless at a parameter value other than a ``lossless`` switch (near=0, delta=0), and so at that value
    assert lines["jpegls"].split()[1] == "option" and lines["mlp-dpcm"].split()[1] == "option"
    from nicbeam.codecs import get_codec_class

    for name in ("jpegls", "mlp-dpcm"):
        cls = get_codec_class(name)
        assert cls(**cls.lossless_when).lossless


def test_codecs_json(capsys) -> None:
    assert main(["codecs", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["jpeg-transcode"]["input"] == "jpeg"
    assert rows["jpeg"]["params"]["subsampling"]["default"] == "420"


def test_info_prints_header_and_verifies_payload(tmp_path, capsys) -> None:
    image = np.full((16, 24, 3), 128, np.uint8)
    path = tmp_path / "x.nicb"
    path.write_bytes(get_codec("jpeg", quality=60).encode(image))
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["codec"] == "jpeg" and info["params"]["quality"] == 60
    assert (info["height"], info["width"], info["payload_ok"]) == (16, 24, True)
    path.write_bytes(path.read_bytes()[:-2])
    assert main(["info", str(path)]) == 2
    assert "truncated" in capsys.readouterr().out
    path.write_bytes(b"hello")
    assert main(["info", str(path)]) == 2
    assert "bad_magic" in capsys.readouterr().err


def test_console_entry_point_runs_as_module() -> None:
    result = subprocess.run([sys.executable, "-m", "nicbeam", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("nicbeam ")
