"""CodecDoFn with a codec that batches (like learned codecs): equal-size batches within a bundle, partial
batches flushed in finish_bundle, one bad image never fails its batch-mates, device chosen and recorded,
and one codec instance per process shared through ``Shared``."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from nicbeam.codecs import register_codec
from nicbeam.codecs.errors import UnsupportedInputError
from nicbeam.codecs.png import PngCodec

CALLS: list[tuple[int, tuple]] = []
INSTANCES: list[int] = []
_LOCK = threading.Lock()


class BatchingCodec(PngCodec):
    """PNG with an ``encode_batch`` override and a ``device`` argument, recording what it was given."""

    name = "test-batching"

    def __init__(self, device: str = "cpu", **params):
        super().__init__(**params)
        self._device = device
        with _LOCK:
            INSTANCES.append(id(self))

    @property
    def device(self) -> str:
        return self._device

    def encode_batch(self, images):
        with _LOCK:
            CALLS.append((len(images), images[0].shape))
        return [self.encode(image) for image in images]

    def encode(self, image):
        if int(image[0, 0, 0]) == 13:  # the poisoned image
            raise UnsupportedInputError("unlucky pixel")
        return super().encode(image)


@pytest.fixture
def batching_codec():
    register_codec(BatchingCodec)
    CALLS.clear()
    INSTANCES.clear()
    yield "test-batching"


def _png(height, width, first):
    import io

    from PIL import Image

    pixels = np.full((height, width, 3), 100, np.uint8)
    pixels[0, 0, 0] = first
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def test_equal_size_batches_flush_and_isolate_failures(tmp_path, batching_codec):
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from nicbeam.codecs.spec import make_setting
    from nicbeam.transforms.encode import EncodeImages
    from nicbeam.transforms.paths import SourceFile
    from nicbeam.transforms.records import JobConfig

    names = []
    for i in range(6):  # six 16x16 images, one of them poisoned
        names.append((f"s{i}.png", _png(16, 16, 13 if i == 2 else i)))
    for i in range(3):  # three 24x16 images
        names.append((f"w{i}.png", _png(24, 16, i)))
    sources = []
    for name, data in names:
        (tmp_path / name).write_bytes(data)
        sources.append(SourceFile(str(tmp_path / name), name))
    cfg = JobConfig(run_id="b", output=str(tmp_path / "out"), settings=(make_setting(batching_codec),),
                    batch_size=4, metrics="fast")
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(sources) | EncodeImages(cfg)
        assert_that(out["metadata"] | "ok" >> beam.Map(lambda r: (r["source_uri"].rsplit("/", 1)[1], r["device"])),
                    equal_to([(n, "cpu") for n, _ in names if n != "s2.png"]), label="rows")
        assert_that(out["errors"] | "bad" >> beam.Map(lambda r: (r["source_uri"].rsplit("/", 1)[1], r["reason"])),
                    equal_to([("s2.png", "unsupported_input")]), label="errors")
    # batches never mix sizes, never exceed batch_size, and every image was offered exactly once
    assert all(n <= 4 for n, _ in CALLS)
    by_shape: dict = {}
    for n, shape in CALLS:
        by_shape[shape] = by_shape.get(shape, 0) + n
    assert by_shape == {(16, 16, 3): 6, (24, 16, 3): 3}
    assert len(INSTANCES) == 1  # one codec for the process, not one per bundle
    assert len(list((tmp_path / "out").glob("*.nicb"))) == 8


def test_auto_device_is_cpu_without_cuda(batching_codec):
    from nicbeam.codecs.spec import make_setting
    from nicbeam.transforms.codec_runtime import auto_device, build_codec

    torch = pytest.importorskip("torch")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert auto_device() == expected
    assert build_codec(make_setting(batching_codec)).device == expected
    assert build_codec(make_setting(batching_codec), device="cpu").device == "cpu"
    assert build_codec(make_setting("png")).device == "cpu"  # classical: no device argument
