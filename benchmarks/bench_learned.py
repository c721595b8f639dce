"""Rate-distortion and speed of the learned codecs on Kodak (evaluation only; never used for training).

    PYTHONPATH=. python benchmarks/bench_learned.py --codec bmshj2017-factorized --qualities 1-8 \\
        [--images 24] [--threads 1] [--update-sidecar]

Prints bpp (from the full nicbeam stream, header included), PSNR (RGB, 8 bit) and encode/decode seconds
per quality, averaged over the images; ``--update-sidecar`` stores them under ``kodak`` in the weights'
JSON sidecar (the safetensors file, hence the digest, is unchanged). ``--from-summary summary.csv [...]`` stores
the figures ``nicbeam evaluate`` runs measured instead (bpp, PSNR, MS-SSIM, times per rate point; ``refine=0``
rows as the results, refined ones per step count under ``refined``; several runs may be given).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

#: ``../shared/data/kodak`` beside the repository (benchmarks may read it; tests never do).
KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--codec", default="bmshj2017-factorized")
    ap.add_argument("--qualities", default="1-8")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--update-sidecar", action="store_true")
    ap.add_argument("--kodak", type=Path, default=KODAK, help="folder of the Kodak PNGs")
    ap.add_argument("--from-summary", type=Path, nargs="+", default=None,
                    help="instead of coding here, store the figures of this codec from `nicbeam evaluate` "
                         "reports' summary.csv files in the sidecar (with --update-sidecar)")
    args = ap.parse_args()
    if args.from_summary:
        sidecar_from_summary(args.codec, args.from_summary)
        return

    import torch
    from PIL import Image

    from nicbeam.codecs.registry import get_codec

    torch.set_num_threads(args.threads)
    lo, _, hi = args.qualities.partition("-")
    qualities = list(range(int(lo), int(hi or lo) + 1))
    paths = sorted(args.kodak.glob("kodim*.png"))[: args.images]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    rows = []
    for q in qualities:
        codec = get_codec(args.codec, quality=q, device="cpu")
        bpp, psnr, te, td = [], [], 0.0, 0.0
        for im in images:
            t = time.perf_counter()
            stream = codec.encode(im)
            te += time.perf_counter() - t
            t = time.perf_counter()
            out = codec.decode(stream)
            td += time.perf_counter() - t
            mse = float(((out.astype(np.float64) - im) ** 2).mean())
            bpp.append(len(stream) * 8 / (im.shape[0] * im.shape[1]))
            psnr.append(10 * np.log10(255.0**2 / max(mse, 1e-10)))
        row = {"quality": q, "bpp": round(float(np.mean(bpp)), 4), "psnr": round(float(np.mean(psnr)), 3),
               "encode_s": round(te / len(images), 3), "decode_s": round(td / len(images), 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.update_sidecar:
        sidecar = Path(codec._weights_path).with_suffix(".json")
        data = json.loads(sidecar.read_text())
        data["kodak"] = {"images": len(images), "threads": args.threads, "device": "cpu",
                         "digest": codec.model_digest.hex(), "results": rows}
        sidecar.write_text(json.dumps(data, indent=1) + "\n")
        print(f"updated {sidecar}")


def sidecar_from_summary(codec_name: str, summary_csvs: list[Path]) -> None:
    """Copy the per-quality Kodak figures of ``codec_name`` from evaluate summaries into its weights sidecar."""
    import pandas as pd

    from nicbeam.codecs.registry import get_codec

    summary = pd.concat([pd.read_csv(path) for path in summary_csvs], ignore_index=True)
    rows = summary[summary["codec"] == codec_name].copy()
    names = ", ".join(str(p) for p in summary_csvs)
    if rows.empty:
        raise SystemExit(f"{names}: no rows for {codec_name}")
    rows["refine"] = [int(json.loads(p).get("refine", 0)) if isinstance(p, str) else 0 for p in rows["params"]]
    if rows.duplicated(["refine", "swept_value"]).any():
        raise SystemExit(f"{names}: a (refine, quality) of {codec_name} appears twice; give each once")
    rows = rows.sort_values(["refine", "swept_value"])
    codec = get_codec(codec_name, device="cpu")

    def results(part) -> list[dict]:
        return [{"quality": int(r.swept_value), "bpp": round(float(r.bpp), 4), "psnr": round(float(r.psnr_rgb), 3),
                 "ms_ssim": round(float(r.ms_ssim), 5), "ms_ssim_db": round(float(r.ms_ssim_db), 3),
                 "encode_s": round(float(r.encode_ms_mean) / 1000, 3), "decode_s": round(float(r.decode_ms_mean) / 1000, 3)}
                for r in part.itertuples()]

    plain = rows[rows["refine"] == 0]
    if plain.empty:
        raise SystemExit(f"{names}: no refine=0 rows of {codec_name} (the sidecar's results are the default encoder's)")
    sidecar = Path(codec._weights_path).with_suffix(".json")
    data = json.loads(sidecar.read_text())
    data["kodak"] = {"images": int(plain["n_images"].min()), "source": f"nicbeam evaluate ({names})",
                     "device": "cpu", "digest": codec.model_digest.hex(), "results": results(plain)}
    refined = {str(n): results(part) for n, part in rows[rows["refine"] > 0].groupby("refine")}
    if refined:  # encoder-side latent refinement (refine=N), same weights and decoder
        data["kodak"]["refined"] = refined
    sidecar.write_text(json.dumps(data, indent=1) + "\n")
    print(f"updated {sidecar}: {len(plain)} rate points" + (f", refined: {sorted(refined)}" if refined else ""))


if __name__ == "__main__":
    main()
