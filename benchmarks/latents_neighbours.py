"""Downstream use of compressed-domain latents (the example of docs/latents.md, run end to end): find the
original of an edited copy by nearest neighbours between pooled latent features, without decoding pixels.

    PYTHONPATH=. python benchmarks/latents_neighbours.py [--kodak ../shared/data/kodak] [--codec mbt2018-mean]

1. Writes each image and one edited copy (mirrored, 10 % darker, then a JPEG quality-60 round trip) to a
   temporary folder and runs the real ``nicbeam compress --export-latents`` Beam job over it.
2. Loads the latents table with pandas (the snippet in docs/latents.md), pools each image's ``y_hat`` per
   channel (mean |y| and std over the positions covering the image) into one feature vector.
3. For every edited copy, ranks the originals by cosine similarity of standardised features and prints the
   top-1 accuracy, beside the same retrieval on pooled pixels (per-channel mean and std of RGB) as a baseline.
Nearest-neighbour retrieval trains nothing, so running it on Kodak keeps Kodak evaluation-only.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "kodak"


def edited(png: bytes) -> bytes:
    """A mirrored, 10 % darker, JPEG-recompressed copy (as PNG bytes)."""
    from PIL import Image, ImageOps

    image = ImageOps.mirror(Image.open(io.BytesIO(png)).convert("RGB")).point(lambda v: int(v * 0.9))
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", quality=60)
    out = io.BytesIO()
    Image.open(jpeg).save(out, "PNG")
    return out.getvalue()


# --- the docs/latents.md example: pandas only, from the latents table to nearest neighbours -------------
def pooled_features(latents_dir: str) -> pd.DataFrame:
    """One row per image: per-channel mean |y| and std of y_hat over the latents covering the image (both
    unchanged when a filter's response changes sign, as oriented filters do under mirroring)."""
    table = pd.read_parquet(latents_dir, columns=["path", "height", "width", "y_shape", "y_hat"])
    features = {}
    for row in table.itertuples():
        y = np.asarray(row.y_hat, dtype=np.float32).reshape(row.y_shape)  # (M, h, w)
        y = y[:, : -(-row.height // 16), : -(-row.width // 16)]  # drop latents of the padding
        features[row.path] = np.concatenate([np.abs(y).mean(axis=(1, 2)), y.std(axis=(1, 2))])
    return pd.DataFrame.from_dict(features, orient="index").sort_index()


def nearest(queries: pd.DataFrame, gallery: pd.DataFrame) -> pd.Series:
    """For each query row, the index of the gallery row with the highest cosine similarity (features
    standardised with the gallery's mean and std)."""
    mu, sd = gallery.mean(), gallery.std().replace(0, 1)
    q, g = ((queries - mu) / sd).to_numpy(dtype=float, copy=True), ((gallery - mu) / sd).to_numpy(dtype=float, copy=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return pd.Series(gallery.index[(q @ g.T).argmax(axis=1)], index=queries.index)
# ---------------------------------------------------------------------------------------------------------


def pixel_features(folder: Path, names: list[str]) -> pd.DataFrame:
    from nicbeam.image_input import load_image

    rows = {}
    for name in names:
        px = load_image((folder / name).read_bytes()).pixels.astype(np.float64)
        rows[name] = np.concatenate([px.mean(axis=(0, 1)), px.std(axis=(0, 1))])
    return pd.DataFrame.from_dict(rows, orient="index").sort_index()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, default=KODAK if KODAK.is_dir() else SAMPLES)
    ap.add_argument("--codec", default="mbt2018-mean")
    ap.add_argument("--quality", type=int, default=6)
    args = ap.parse_args()

    from nicbeam.pipelines.cli import main as nicbeam

    originals = sorted(p for p in args.kodak.glob("*.png"))
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        (src / "edited").mkdir(parents=True)
        for p in originals:
            (src / p.name).write_bytes(p.read_bytes())
            (src / "edited" / p.name).write_bytes(edited(p.read_bytes()))
        code = nicbeam(["compress", str(src), str(out), "--codec", args.codec, "--param", f"quality={args.quality}",
                        "--export-latents", "--metrics", "none", "--progress_interval", "0",
                        "--torch_threads", "1"])
        if code:
            return code
        run = out / "_runs" / (out / "_LATEST").read_text().strip()
        feats = pooled_features(str(run / "latents"))
        gallery = feats[~feats.index.str.startswith("edited/")]
        queries = feats[feats.index.str.startswith("edited/")]
        truth = queries.index.str.removeprefix("edited/")
        hits = nearest(queries, gallery).to_numpy() == truth
        names = [p.name for p in originals]
        px_gallery = pixel_features(src, names)
        px_queries = pixel_features(src / "edited", names)
        px_hits = nearest(px_queries, px_gallery).to_numpy() == px_gallery.index.to_numpy()
        shapes = sorted({tuple(int(v) for v in s) for s in pd.read_parquet(run / "latents", columns=["y_shape"])["y_shape"]})
        print(f"{len(gallery)} originals, {len(queries)} edited copies (mirrored, 10 % darker, JPEG q60); "
              f"{args.codec} quality {args.quality}, y_hat shapes {shapes}, "
              f"feature {feats.shape[1]} values (mean |y|, std per channel)")
        print(f"top-1 retrieval of the original: latents {hits.sum()}/{len(hits)} ({hits.mean():.0%}), "
              f"pooled RGB mean/std baseline {px_hits.sum()}/{len(px_hits)} ({px_hits.mean():.0%})")
        for query, found, ok in zip(queries.index, nearest(queries, gallery), hits):
            if not ok:
                print(f"  miss: {query} -> {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
