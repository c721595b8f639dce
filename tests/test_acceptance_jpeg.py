"""The foundation's acceptance check: JPEG q75 on a Kodak image, our PSNR and bpp vs an independent computation.

The independent side uses only Pillow and numpy: Pillow writes the JPEG itself, and PSNR is computed from its
textbook definition, so a mistake in our codec wrapper, container or metrics would show as a disagreement.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from nicbeam.codecs import container, decode, get_codec
from nicbeam.image_input import load_image
from nicbeam.metrics import bpp, psnr

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "kodak" / "kodim23.png"


def test_jpeg_q75_psnr_and_bpp_agree_with_independent_computation() -> None:
    image = load_image(SAMPLE).pixels
    stream = get_codec("jpeg", quality=75).encode(image)
    header, payload = container.unpack(stream)
    ours_psnr = psnr(image, decode(stream))
    ours_bpp = bpp(len(payload), header.height, header.width)

    with Image.open(SAMPLE) as reference:
        pixels = np.asarray(reference.convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=75, subsampling=2, optimize=True)
    independent_bpp = 8 * buffer.tell() / (pixels.shape[0] * pixels.shape[1])
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        error = pixels.astype(np.float64) - np.asarray(decoded.convert("RGB"), dtype=np.float64)
    independent_psnr = 10 * np.log10(255.0**2 / np.mean(error**2))

    assert np.array_equal(image, pixels)
    assert abs(ours_psnr - independent_psnr) < 0.01
    assert abs(ours_bpp - independent_bpp) / independent_bpp < 0.001
    assert 0.5 < ours_bpp < 3.0 and 28 < ours_psnr < 45  # sanity: a q75 JPEG of a Kodak image
