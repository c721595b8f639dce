"""Registry, parameter validation, codec specs and third-party registration through entry points."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from nicbeam.codecs import (
    InvalidParameterError,
    UnknownCodecError,
    available_codecs,
    decode,
    get_codec,
    get_codec_class,
    registry,
)
from nicbeam.codecs.spec import parse_codec_spec, parse_params

REQUIRED = {"jpeg", "webp", "avif", "jpeg2000", "jpegxl", "png", "jpeg-transcode"}


def test_builtin_codecs_are_listed() -> None:
    assert REQUIRED <= set(available_codecs())


def test_unknown_codec_names_the_available_ones() -> None:
    with pytest.raises(UnknownCodecError, match="jpeg"):
        get_codec("no-such")


def test_params_are_coerced_and_range_checked() -> None:
    codec = get_codec("jpeg", quality="30")
    assert codec.params["quality"] == 30
    with pytest.raises(InvalidParameterError, match="quality"):
        get_codec("jpeg", quality=101)
    with pytest.raises(InvalidParameterError, match="integer"):
        get_codec("jpeg", quality="high")
    with pytest.raises(InvalidParameterError, match="no parameter"):
        get_codec("jpeg", qualty=50)
    with pytest.raises(InvalidParameterError):
        get_codec("jpeg", quality=True)


def test_spec_expands_cartesian_product_and_labels() -> None:
    settings = parse_codec_spec("jpeg:quality=30,75:subsampling=420,444")
    assert [s.label for s in settings] == [
        "jpeg:quality=30:subsampling=420",
        "jpeg:quality=30:subsampling=444",
        "jpeg:quality=75:subsampling=420",
        "jpeg:quality=75:subsampling=444",
    ]
    assert settings[0].param_dict["quality"] == 30
    assert parse_codec_spec("png")[0].label == "png"
    assert isinstance(settings[3].build(), get_codec_class("jpeg"))


@pytest.mark.parametrize("spec", ["", ":quality=3", "jpeg:quality", "jpeg:quality=", "jpeg:quality=1:quality=2",
                                  "jpeg:quality=500", "nope:x=1"])
def test_bad_specs_fail_early(spec: str) -> None:
    with pytest.raises((InvalidParameterError, UnknownCodecError)):
        parse_codec_spec(spec)


def test_parse_params() -> None:
    assert parse_params(["quality=5", " a = b "]) == {"quality": "5", "a": "b"}
    with pytest.raises(InvalidParameterError):
        parse_params(["novalue"])


def test_third_party_codec_through_entry_point(tmp_path, monkeypatch) -> None:
    """A package declaring the ``nicbeam.codecs`` entry-point group is found without any import by us."""
    package = tmp_path / "nicbeam_plugin_demo.py"
    package.write_text(textwrap.dedent('''
        import zlib
        import numpy as np
        from nicbeam.codecs.base import Codec

        class ZlibRawCodec(Codec):
            name = "zlib-raw"
            always_lossless = True
            def _encode_payload(self, image):
                return zlib.compress(image.tobytes())
            def _decode_payload(self, payload, header):
                flat = np.frombuffer(zlib.decompress(payload), np.uint8)
                return flat.reshape(header.height, header.width, 3).copy()
    '''))
    dist = tmp_path / "nicbeam_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nicbeam-plugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[nicbeam.codecs]\nzlib-raw = nicbeam_plugin_demo:ZlibRawCodec\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    assert "zlib-raw" in available_codecs()
    image = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    stream = get_codec("zlib-raw").encode(image)
    np.testing.assert_array_equal(decode(stream), image)
    sys.modules.pop("nicbeam_plugin_demo", None)
