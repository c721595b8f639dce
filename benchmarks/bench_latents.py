"""Latents-only decode (``LearnedCodec.decode_latents``: entropy decoding, and for the hyperprior the integer
hyper-synthesis) against full decodes of the same streams, in the same run.

    PYTHONPATH=. python benchmarks/bench_latents.py [--kodak ../shared/data/kodak] [--quality 6] [--repeats 3]

For each learned codec, every image is encoded once; then each stream is decoded ``--repeats`` times by each
method, one CPU thread, and the fastest time per image is kept (the machine is shared, so the minimum is the
least disturbed measurement). Printed per codec and image, then per codec as the median over images: ms of
latents-only, of the full decode with the default float64 synthesis (``precision="exact"``) and with float32
synthesis (``precision="fast"``), and the speed-up ratios (full / latents-only). Every latents-only result is checked against
the encoder's latents, and every full decode against one made before timing. Kodak is only evaluated here.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "kodak"


def fastest_ms(call, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, default=KODAK if KODAK.is_dir() else SAMPLES,
                    help="folder of PNGs (default: ../shared/data/kodak, else samples/kodak)")
    ap.add_argument("--codec", action="append", default=None, help="learned codec name (repeatable)")
    ap.add_argument("--quality", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from nicbeam.codecs.registry import get_codec
    from nicbeam.image_input import load_image

    torch.set_num_threads(1)
    paths = sorted(args.kodak.glob("*.png"))
    images = [load_image(p.read_bytes()).pixels for p in paths]
    print(f"# {len(images)} images from {args.kodak}; quality {args.quality}; 1 CPU thread; "
          f"fastest of {args.repeats} per image; torch {torch.__version__}")
    header = (f"{'codec':<22} {'image':<12} {'latents ms':>10} {'full exact ms':>13} {'full fast ms':>12} "
              f"{'exact/latents':>13} {'fast/latents':>12}")
    print(header)
    medians = []
    for name in args.codec or ["bmshj2017-factorized", "mbt2018-mean"]:
        exact = get_codec(name, quality=args.quality, device="cpu")
        fast = get_codec(name, quality=args.quality, device="cpu", precision="fast")
        lat_ms, exact_ms, fast_ms = [], [], []
        for path, image in zip(paths, images):
            stream, encoded = exact.encode_with_latents(image)
            decoded = exact.decode_latents(stream)
            assert np.array_equal(decoded.y_hat, encoded.y_hat) and np.array_equal(decoded.y_symbols, encoded.y_symbols)
            reference = {"exact": exact.decode(stream), "fast": fast.decode(stream)}  # also warms both models
            lat_ms.append(fastest_ms(lambda: exact.decode_latents(stream), args.repeats))
            exact_ms.append(fastest_ms(lambda: exact.decode(stream), args.repeats))
            fast_ms.append(fastest_ms(lambda: fast.decode(stream), args.repeats))
            assert np.array_equal(exact.decode(stream), reference["exact"])
            print(f"{name:<22} {path.stem:<12} {lat_ms[-1]:>10.1f} {exact_ms[-1]:>13.1f} {fast_ms[-1]:>12.1f} "
                  f"{exact_ms[-1] / lat_ms[-1]:>12.1f}x {fast_ms[-1] / lat_ms[-1]:>11.1f}x", flush=True)
        ratio_exact = statistics.median(e / l for e, l in zip(exact_ms, lat_ms))
        ratio_fast = statistics.median(f / l for f, l in zip(fast_ms, lat_ms))
        medians.append(f"{name:<22} {'median':<12} {statistics.median(lat_ms):>10.1f} {statistics.median(exact_ms):>13.1f} "
                       f"{statistics.median(fast_ms):>12.1f} {ratio_exact:>12.1f}x {ratio_fast:>11.1f}x")
    print("# median over images")
    print(header)
    print("\n".join(medians))


if __name__ == "__main__":
    main()
