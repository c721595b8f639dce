"""Peak memory and speed of whole codecs on one large image, each codec in a fresh process (the issue-15 report row).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_peak_memory.py --codec mbt2018-mean --codec tcm-hyperprior \\
        [--size 3072x2048] [--quality 6] [--threads 1]

The image is kodim01 from ``../shared/data/kodak`` (else ``samples/kodak/kodim23.png``) resized to ``--size`` with
Lanczos, so the content and the rate are a photograph's. Each codec (the weights the registry finds:
``nicbeam/weights`` or ``NICBEAM_WEIGHTS_DIR``; default options, i.e. tile 1024 and exact float64 decoding for
the learned codecs) encodes and decodes it once in its own subprocess, which prints the peak RSS
(``ru_maxrss``: the whole process, with torch and the model), the RSS before coding, encode and decode seconds
and MP/s, bpp and PSNR, and the number of values stored in the weights file. Ratios only compare codecs of one run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (ROOT.parent / "shared" / "data" / "kodak" / "kodim01.png", ROOT / "samples" / "kodak" / "kodim23.png")


def test_image(width: int, height: int) -> tuple[np.ndarray, str]:
    """The first available source photograph resized to width x height (RGB uint8)."""
    from PIL import Image

    source = next(p for p in SOURCES if p.exists())
    with Image.open(source) as im:
        return np.asarray(im.convert("RGB").resize((width, height), Image.LANCZOS)), source.name


def stored_values(codec) -> int | None:
    """Number of values in the codec's weights file (None for codecs without one); reads the file's header only."""
    bundle = getattr(codec, "bundle", None)
    if bundle is None:
        return None
    from safetensors import safe_open

    with safe_open(str(bundle.path), "np") as f:
        return sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())


def code_once(codec, image: np.ndarray) -> dict:
    """Encode and decode ``image`` once (weights already loaded): peak RSS, times, rate and PSNR."""
    import resource

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    stream = codec.encode(image)
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    decoded = codec.decode(stream)
    t_dec = time.perf_counter() - t
    if decoded.shape != image.shape:
        raise SystemExit(f"{codec.name}: decoded shape {decoded.shape} != {image.shape}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mse = float(np.mean((decoded.astype(np.float64) - image) ** 2))
    megapixels = image.shape[0] * image.shape[1] / 1e6
    return {"peak_rss_mib": round(peak / 1024), "rss_before_coding_mib": round(base / 1024),
            "encode_s": round(t_enc, 2), "decode_s": round(t_dec, 2), "encode_mp_s": round(megapixels / t_enc, 3),
            "decode_mp_s": round(megapixels / t_dec, 3), "bytes": len(stream),
            "bpp": round(len(stream) * 8 / (megapixels * 1e6), 4), "psnr": round(10 * np.log10(255**2 / mse), 3)}


def child(name: str, width: int, height: int, quality: int, threads: int) -> None:
    """In a fresh process: code the image once with ``name`` and print one JSON line of figures."""
    import torch

    from nicbeam.codecs.registry import get_codec, get_codec_class

    torch.set_num_threads(threads)
    image, source = test_image(width, height)
    on_cpu = {"device": "cpu"} if "device" in inspect.signature(get_codec_class(name).__init__).parameters else {}
    codec = get_codec(name, quality=quality, **on_cpu)
    codec.encode(np.zeros((16, 16, 3), np.uint8))  # loads the weights before the baseline is taken
    print(json.dumps({"codec": name, "quality": quality, "source": source, **code_once(codec, image),
                      "stored_values": stored_values(codec)}))


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        child(sys.argv[2], *(int(v) for v in sys.argv[3:7]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", action="append", required=True, help="registered codec name, repeatable")
    parser.add_argument("--size", default="3072x2048", metavar="WxH")
    parser.add_argument("--quality", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(f"{width}x{height} ({width * height / 1e6:.1f} MP), quality {args.quality}, {args.threads} thread(s), "
          "one fresh process per codec")
    for name in args.codec:
        out = subprocess.run([sys.executable, __file__, "--child", name, str(width), str(height), str(args.quality),
                              str(args.threads)], check=True, stdout=subprocess.PIPE, text=True).stdout
        print(out.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
