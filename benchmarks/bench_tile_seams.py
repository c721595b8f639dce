"""Cost of tiling in the learned codecs: rate-distortion loss and seams, versus the peak memory it saves.

    PYTHONPATH=. python benchmarks/bench_tile_seams.py [--codecs bmshj2017-factorized,mbt2018-mean]
        [--qualities 2,4,6,8] [--tiles 256,128] [--images 24] [--kodak /work/shared/data/kodak]
        [--band 4] [--mem-codec mbt2018-mean] [--mem-quality 4] [--mem-tiles 512,1024,4096]
        [--mem-size 3072x2048] [--skip-rd] [--skip-memory]

How seams arise: images larger than ``tile`` pixels are cut into independent tiles on a grid of multiples of
``tile`` (see ``nicbeam/codecs/learned/base.py``: ``tiles``, ``_encode_many``, ``_decode_many``). Each tile
is padded (edge replication, bottom/right) to a multiple of 64, coded with no context from its neighbours,
decoded, cropped and pasted: no overlap and no blending. So the analysis/synthesis transforms see a padded
border instead of the real neighbour on both sides of every internal tile edge, and the (hyper)priors restart
per tile; the result is extra rate and visible seams.

Part 1, rate-distortion (Kodak, 768x512, so ``tile=1024`` is the untiled reference): for each codec and
quality, every image is coded with ``tile=1024`` and with each smaller tile. Per tile size it reports mean
bpp (``len(stream) * 8 / pixels``, whole stream incl. header), mean per-image RGB PSNR, and the BD-rate /
BD-PSNR of tiled against untiled (``nicbeam.metrics.bd_rate`` / ``bd_psnr``, the PCHIP Bjontegaard metric of
the ``bjontegaard`` package that ``nicbeam.analysis.bd`` uses). Seams: PSNR inside a band of +-``band``
pixels around the internal tile borders, PSNR of the pixels outside it, and the same band in the untiled
reconstruction; "seam drop" = band PSNR untiled - band PSNR tiled (same pixels). Seam length per pixel is
2/T for large images, so the BD-rate cost measured at tile T is extrapolated to T=1024 on large images as
``cost_T * T/1024`` (an extrapolation, not a measurement). On a W x H Kodak image the internal seam length
per pixel is only 2/T - 1/W - 1/H, so a second, density-corrected extrapolation ``cost_T * (2/1024) /
(2/T - 1/W - 1/H)`` is printed too.

Part 2 (run first), peak memory: one large image (a Kodak image upscaled with Pillow to ``--mem-size``) is
encoded, then decoded, each in a fresh subprocess per tile size, so ``ru_maxrss`` belongs to that run alone.
It runs before part 1 because Linux carries a parent's ``ru_maxrss`` into a fork+exec'd child (``VmHWM``
cross-checks it). Printed: RSS after imports (torch, nicbeam), after loading the model, and the peak of
the encode / decode call. ``tile=4096`` is untiled for images up to 4096 pixels on a side. Tiles of equal
size run in batches of up to ``max_batch_pixels`` pixels, so tile sizes below that bound have similar peaks.

The script only reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
UNTILED = 1024  # Kodak images are 768x512: one tile


# ============================================================================================ helpers
def csv_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def csv_strs(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def maxrss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def vm_hwm_mb() -> float:
    """Peak RSS of this process image (``VmHWM``, reset by exec, unlike ``ru_maxrss``), in MiB; NaN if unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return math.nan


def psnr_from_mse(mse: float) -> float:
    return math.inf if mse <= 0 else 10.0 * math.log10(255.0**2 / mse)


def masked_psnr(ref: np.ndarray, rec: np.ndarray, mask: np.ndarray) -> float:
    """RGB PSNR over the pixels where ``mask`` (H x W bool) is True."""
    diff = ref[mask].astype(np.float64) - rec[mask].astype(np.float64)
    return psnr_from_mse(float(np.mean(diff * diff)))


def seam_mask(height: int, width: int, tile: int, band: int) -> np.ndarray:
    """True for pixels within ``band`` pixels of an internal tile border (a multiple of ``tile``)."""
    mask = np.zeros((height, width), dtype=bool)
    for b in range(tile, width, tile):
        mask[:, max(0, b - band) : b + band] = True
    for b in range(tile, height, tile):
        mask[max(0, b - band) : b + band, :] = True
    return mask


def seam_density(height: int, width: int, tile: int) -> float:
    """Internal tile-border length per pixel: (W/T - 1) borders of length H plus (H/T - 1) of length W."""
    vertical = len(range(tile, width, tile)) * height
    horizontal = len(range(tile, height, tile)) * width
    return (vertical + horizontal) / (height * width)


def load_kodak(root: Path, count: int) -> list[tuple[str, np.ndarray]]:
    from PIL import Image

    paths = sorted(root.glob("kodim*.png"))[:count]
    if not paths:
        raise SystemExit(f"no kodim*.png in {root}")
    return [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in paths]


# ============================================================================================ part 1
@dataclass
class Point:
    """Means over images for one (codec, quality, tile)."""

    bpp: float
    psnr: float
    band: float = math.nan  # PSNR in the seam band, this tile size
    away: float = math.nan  # PSNR outside the seam band, this tile size
    band_untiled: float = math.nan  # PSNR of the untiled reconstruction on the same band
    seconds: float = 0.0


@dataclass
class CodecResult:
    codec: str
    points: dict[tuple[int, int], Point] = field(default_factory=dict)  # (tile, quality) -> Point


def code_images(codec_name: str, quality: int, tile: int, images: list[np.ndarray]) -> tuple[list[bytes], list[np.ndarray], float]:
    from nicbeam.codecs.registry import get_codec

    codec = get_codec(codec_name, quality=quality, tile=tile, device="cpu")
    start = time.perf_counter()
    streams = codec.encode_batch(images)
    recons = codec.decode_batch(streams)
    return streams, recons, time.perf_counter() - start


def measure_point(
    images: list[np.ndarray], streams: list[bytes], recons: list[np.ndarray], masks: list[np.ndarray] | None,
    untiled: list[np.ndarray] | None, seconds: float,
) -> Point:
    from nicbeam.metrics import psnr

    bpp = [len(s) * 8 / (im.shape[0] * im.shape[1]) for s, im in zip(streams, images)]
    point = Point(float(np.mean(bpp)), float(np.mean([psnr(im, r) for im, r in zip(images, recons)])), seconds=seconds)
    if masks is not None and untiled is not None:
        point.band = float(np.mean([masked_psnr(im, r, m) for im, r, m in zip(images, recons, masks)]))
        point.away = float(np.mean([masked_psnr(im, r, ~m) for im, r, m in zip(images, recons, masks)]))
        point.band_untiled = float(np.mean([masked_psnr(im, u, m) for im, u, m in zip(images, untiled, masks)]))
    return point


def run_codec(codec_name: str, qualities: list[int], tiles: list[int], images: list[np.ndarray], band: int) -> CodecResult:
    result = CodecResult(codec_name)
    masks = {t: [seam_mask(im.shape[0], im.shape[1], t, band) for im in images] for t in tiles}
    for q in qualities:
        streams, untiled, sec = code_images(codec_name, q, UNTILED, images)
        result.points[(UNTILED, q)] = measure_point(images, streams, untiled, None, None, sec)
        for t in tiles:
            streams, recons, sec = code_images(codec_name, q, t, images)
            result.points[(t, q)] = measure_point(images, streams, recons, masks[t], untiled, sec)
        print(f"  [{codec_name} q={q} done, {sum(p.seconds for (t, qq), p in result.points.items() if qq == q):.1f}s]",
              file=sys.stderr, flush=True)
    return result


def bd_vs_untiled(result: CodecResult, tile: int, qualities: list[int]) -> tuple[float, float]:
    """(BD-rate %, BD-PSNR dB) of ``tile`` against untiled; NaN if the curves do not allow it."""
    from nicbeam.metrics import bd_psnr, bd_rate

    anchor = [result.points[(UNTILED, q)] for q in qualities]
    test = [result.points[(tile, q)] for q in qualities]
    args = ([p.bpp for p in anchor], [p.psnr for p in anchor], [p.bpp for p in test], [p.psnr for p in test])
    n = max(2, len(qualities))
    try:
        rate = bd_rate(*args, min_points=n)
    except ValueError:
        rate = math.nan
    try:
        quality = bd_psnr(*args, min_points=n)
    except ValueError:
        quality = math.nan
    return rate, quality


def print_rd_table(result: CodecResult, qualities: list[int], tiles: list[int], band: int) -> None:
    print(f"\n{result.codec}: per rate point (means over images; band = +-{band} px around internal tile borders)")
    print(f"{'q':>2} {'tile':>5} {'bpp':>7} {'dbpp%':>7} {'PSNR':>7} {'dPSNR':>7} "
          f"{'band':>7} {'away':>7} {'band@1024':>9} {'seam drop':>9} {'enc+dec s':>9}")
    for q in qualities:
        ref = result.points[(UNTILED, q)]
        for t in [UNTILED, *tiles]:
            p = result.points[(t, q)]
            dbpp = (p.bpp / ref.bpp - 1) * 100
            seam = ref_band = band = away = "-"
            if t != UNTILED:
                band, away, ref_band = f"{p.band:.2f}", f"{p.away:.2f}", f"{p.band_untiled:.2f}"
                seam = f"{p.band_untiled - p.band:+.2f}"
            print(f"{q:>2} {t:>5} {p.bpp:7.4f} {dbpp:+7.2f} {p.psnr:7.2f} {p.psnr - ref.psnr:+7.2f} "
                  f"{band:>7} {away:>7} {ref_band:>9} {seam:>9} {p.seconds:9.1f}")


def print_bd_table(
    result: CodecResult, qualities: list[int], tiles: list[int], shape: tuple[int, int], band: int
) -> None:
    h, w = shape
    note = "" if len(qualities) >= 4 else f"  (only {len(qualities)} rate points: indicative, CTC BD-rate uses 4)"
    print(f"\n{result.codec}: tiled vs untiled (tile=1024) over q={','.join(map(str, qualities))}{note}")
    print(f"{'tile':>5} {'BD-rate%':>9} {'BD-PSNR':>8} {'seam drop':>9} {'band px%':>8} {'seam/px':>8} "
          f"{'extrap@1024 T/1024':>18} {'extrap@1024 dens.':>17}")
    for t in tiles:
        rate, quality = bd_vs_untiled(result, t, qualities)
        drop = np.mean([result.points[(t, q)].band_untiled - result.points[(t, q)].band for q in qualities])
        band_frac = seam_mask(h, w, t, band).mean() * 100
        density = seam_density(h, w, t)
        naive = rate * t / 1024
        corrected = rate * (2 / 1024) / density if density else math.nan
        print(f"{t:>5} {rate:+9.2f} {quality:+8.3f} {drop:+9.2f} {band_frac:8.2f} {density:8.5f} "
              f"{naive:+17.3f}% {corrected:+16.3f}%")


# ============================================================================================ part 2
def make_large_image(kodak: Path, name: str, size: tuple[int, int]) -> np.ndarray:
    """A natural-looking large image: one Kodak image upscaled (Lanczos) to ``size`` = (width, height)."""
    from PIL import Image

    return np.asarray(Image.open(kodak / name).convert("RGB").resize(size, Image.LANCZOS))


def memory_worker(args: argparse.Namespace) -> None:
    """Subprocess body: encode or decode once and print one JSON line of RSS figures (MiB) and timings."""
    import torch  # noqa: F401

    from nicbeam.codecs.registry import get_codec

    out: dict[str, float | int | str] = {"rss_imports": maxrss_mb()}
    codec = get_codec(args.mem_codec, quality=args.mem_quality, tile=args.mem_tile, device="cpu")
    stream_path = Path(args.mem_stream)
    if args.mem_worker == "encode":
        width, height = parse_size(args.mem_size)
        image = make_large_image(Path(args.kodak), args.mem_image, (width, height))
        _ = codec.bundle  # load the weights before the baseline
        out["rss_model"] = maxrss_mb()
        start = time.perf_counter()
        stream = codec.encode(image)
        out["seconds"] = time.perf_counter() - start
        stream_path.write_bytes(stream)
        out["bpp"] = len(stream) * 8 / (width * height)
        out["tiles"] = len(codec.tiles(height, width))
    else:
        stream = stream_path.read_bytes()
        _ = codec.synthesis_model  # load the weights and their float64 copy before the baseline
        out["rss_model"] = maxrss_mb()
        start = time.perf_counter()
        image = codec.decode(stream)
        out["seconds"] = time.perf_counter() - start
        out["shape"] = "x".join(map(str, image.shape))
    out["rss_peak"] = maxrss_mb()
    out["hwm_peak"] = vm_hwm_mb()
    print(json.dumps(out))


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def run_worker(args: argparse.Namespace, mode: str, tile: int, stream: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--mem-worker", mode, "--mem-tile", str(tile),
           "--mem-stream", str(stream), "--mem-codec", args.mem_codec, "--mem-quality", str(args.mem_quality),
           "--mem-size", args.mem_size, "--mem-image", args.mem_image, "--kodak", str(args.kodak)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        raise RuntimeError(f"memory worker failed ({mode}, tile={tile}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_memory(args: argparse.Namespace) -> None:
    tiles = csv_ints(args.mem_tiles)
    print(f"\nPeak memory: {args.mem_codec} q={args.mem_quality}, {args.mem_image} upscaled to {args.mem_size}, "
          f"one fresh subprocess per encode and per decode (ru_maxrss, MiB)")
    print(f"{'tile':>5} {'tiles':>5} {'bpp':>7} {'imports':>8} {'+model':>8} {'enc peak':>9} {'enc s':>6} "
          f"{'dec +model':>10} {'dec peak':>9} {'dec s':>6}")
    inherited = False
    with tempfile.TemporaryDirectory(prefix="nicbeam-tile-mem-") as tmp:
        for t in tiles:
            stream = Path(tmp) / f"tile{t}.nicb"
            enc = run_worker(args, "encode", t, stream)
            dec = run_worker(args, "decode", t, stream)
            print(f"{t:>5} {enc['tiles']:>5} {enc['bpp']:7.4f} {enc['rss_imports']:8.0f} {enc['rss_model']:8.0f} "
                  f"{enc['rss_peak']:9.0f} {enc['seconds']:6.1f} {dec['rss_model']:10.0f} {dec['rss_peak']:9.0f} "
                  f"{dec['seconds']:6.1f}", flush=True)
            inherited |= any(r["rss_peak"] > 1.1 * r["hwm_peak"] for r in (enc, dec))
    print("imports = RSS after importing torch + nicbeam; +model = after loading weights (decode: plus the "
          "float64 synthesis copy); peak = ru_maxrss after the call.")
    if inherited:
        print("WARNING: ru_maxrss exceeds the process's own VmHWM: Linux carries the parent's peak across "
              "fork+exec, so these peaks are the parent's. Run the memory part from a small parent.")


# ============================================================================================ main
def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codecs", default="bmshj2017-factorized,mbt2018-mean", help="comma-separated codec names")
    ap.add_argument("--qualities", default="2,4,6,8", help="comma-separated quality levels (1..8)")
    ap.add_argument("--tiles", default="256,128", help="tile sizes compared with untiled (multiples of 64, < 768)")
    ap.add_argument("--kodak", type=Path, default=Path("/work/shared/data/kodak"))
    ap.add_argument("--images", type=int, default=24, help="first N Kodak images")
    ap.add_argument("--band", type=int, default=4, help="seam band half-width in pixels")
    ap.add_argument("--mem-codec", default="mbt2018-mean")
    ap.add_argument("--mem-quality", type=int, default=4)
    ap.add_argument("--mem-tiles", default="512,1024,4096", help="tile sizes for the memory part (4096 = untiled)")
    ap.add_argument("--mem-size", default="3072x2048", help="WIDTHxHEIGHT of the large image")
    ap.add_argument("--mem-image", default="kodim01.png", help="Kodak image upscaled for the memory part")
    ap.add_argument("--skip-rd", action="store_true", help="skip part 1 (rate-distortion and seams)")
    ap.add_argument("--skip-memory", action="store_true", help="skip part 2 (peak memory)")
    ap.add_argument("--mem-worker", choices=("encode", "decode"), help=argparse.SUPPRESS)
    ap.add_argument("--mem-tile", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mem-stream", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # keep tables and stderr progress in order
    if args.mem_worker:
        memory_worker(args)
        return 0
    print("command: cd " + shlex.quote(str(REPO)) + " && PYTHONPATH=. " + shlex.join(
        [sys.executable, "benchmarks/bench_tile_seams.py", *argv]))
    if not args.skip_memory:  # first, while this process is small: children inherit its ru_maxrss
        run_memory(args)
    if not args.skip_rd:
        import torch

        qualities, tiles = csv_ints(args.qualities), csv_ints(args.tiles)
        kodak = load_kodak(args.kodak, args.images)
        images = [im for _, im in kodak]
        shapes = {im.shape[:2] for im in images}
        print(f"Kodak: {len(images)} images ({', '.join(n for n, _ in kodak)}), torch threads {torch.get_num_threads()}")
        # portrait Kodak images are 512x768; seam density is the same for either orientation
        shape = max(shapes)
        for name in csv_strs(args.codecs):
            result = run_codec(name, qualities, tiles, images, args.band)
            print_rd_table(result, qualities, tiles, args.band)
            print_bd_table(result, qualities, tiles, shape, args.band)
        print("\nseam drop = PSNR of the untiled reconstruction minus PSNR of the tiled one, on the same +-band "
              "pixels; seam/px = internal border length per pixel on this image size (2/T on large images).\n"
              "extrap@1024: EXTRAPOLATED BD-rate cost of tile=1024 on large images, not measured: "
              "'T/1024' = BD-rate_T * T/1024 (seam density 2/T), 'dens.' = BD-rate_T * (2/1024) / (seam/px at T).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
