"""The RNN-codec table of Toderici et al. 2017 on Kodak (evaluation only), in one run: MS-SSIM AUC and
PSNR-HVS AUC with ranks for every RNN variant that has weights, the no-entropy-coding baseline, and JPEG
4:4:4 / 4:2:0; RD curves plotted; encode/decode MP/s.

    .venv/bin/python benchmarks/bench_rnn_table.py [--images 24] [--variants rnn-gru-oneshot,...] \\
        [--weights-dir DIR] [--jobs 2] [--out benchmarks/results/rnn-table]

AUC definition: for each row, the mean RD curve over the images (per setting: mean payload bpp, mean
MS-SSIM (RGB, pytorch-msssim) or mean PSNR-HVS (luma, nicbeam.metrics.psnr_hvs)), linearly interpolated
between settings, integrated over [0.125, 2] bpp with ``nicbeam.metrics.auc``. A curve that does not reach
an end of the interval is extended flat (its last measured quality) to it; the table says how far each
curve reaches. bpp counts the codec payload (container header apart, as everywhere in nicbeam).

RNN rows: each image is encoded once at 16 iterations (entropy=context); the rate at k iterations is the
payload of that stream cut with ``truncate_iterations`` (identical to encoding at k), the k-iteration
images come from one progressive pass of the decoder over the bits read back from the raw stream (on the
first ``--checked-images`` images checked against the codec's decode of both streams cut to a random k, and
of the full stream). The no-entropy-coding row ("<variant> raw bits") is the same network's ``entropy=none`` stream:
the same bits, hence the same pixels (checked), at 0.125 bpp per iteration plus the layer framing. Speeds:
encode at 16 iterations, the codec's decode of the 16-iteration stream (float64 "exact" decoder) on the first
``--timed-images`` images, megapixels per second on ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import time
from pathlib import Path

import numpy as np

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
RESULTS = Path(__file__).resolve().parent / "results"
INTERVAL = (0.125, 2.0)
RAW_SUFFIX = " raw bits (no entropy coding)"  # a variant's no-entropy-coding row is labelled LABEL + this
JPEG_QUALITIES = (2, 5, 8, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 85, 90, 93, 95)
#: Toderici et al. 2017, Table 2 (Kodak, MS-SSIM AUC / PSNR-HVS AUC), for reference next to ours
PAPER = {"jpeg 4:2:0": (1.7998, 52.61), "jpeg 4:4:4": (1.7748, 51.28), "rnn-gru-oneshot": (1.8098, 53.15)}


def _measure(reference: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    from nicbeam.metrics import ms_ssim, psnr, psnr_hvs

    return {"ms_ssim": ms_ssim(reference, decoded), "psnr_hvs": psnr_hvs(reference, decoded),
            "psnr": psnr(reference, decoded)}


def _payload_bpp(stream: bytes, image: np.ndarray) -> float:
    from nicbeam.codecs import container

    header = container.parse_header(stream)
    return 8 * header.payload_length / (image.shape[0] * image.shape[1])


def _raw_bits(codec, raw_stream: bytes) -> list:
    """The 16 iterations' codes (+-1, float64) of a one-tile ``entropy=none`` stream, read back from its bytes
    (the encoder's bits, without a second encoder pass)."""
    import torch

    from nicbeam.codecs import container
    from nicbeam.codecs.learned.rnn.binarizer import from_bits

    header, payload = container.unpack(raw_stream)
    per_tile = [bits for _, bits in codec.tile_bits(payload, header)]
    if len(per_tile) != 1:
        raise ValueError("the table reads one-tile streams (Kodak fits the default 1024-pixel tile)")
    return [from_bits(torch.from_numpy(b[None]), torch.float64) for b in per_tile[0]]


def rnn_rows(name: str, weights: Path, images: list[np.ndarray], threads: int, timed: int,
             label: str | None = None, checked: int | None = None) -> tuple[dict, dict]:
    """(context-coded row, raw-bits row) of variant ``name`` with ``weights``, named ``label`` (default: the
    variant): per iteration k, mean bpp and metrics; plus speeds.

    The images of all 16 rates come from one pass of the float64 decoder over the 16-iteration bits
    (``decode_iterations``); on the first ``checked`` images (default: ``timed``) the codec's decode of both
    streams cut to a random k and of the full stream are checked to give the same pixels, and on the first
    ``timed`` images the codec's full decode is timed (a k-iteration decode costs about k/16 of it)."""
    import torch

    from nicbeam.codecs.learned.rnn.progressive import truncate_iterations
    from nicbeam.codecs.registry import get_codec

    torch.set_num_threads(threads)
    checked = timed if checked is None else checked
    codec = get_codec(name, weights=weights, quality=16, device="cpu")
    raw = get_codec(name, weights=weights, quality=16, entropy="none", device="cpu")
    rng = np.random.default_rng(0)
    per_k = {k: {"bpp": [], "raw_bpp": [], "ms_ssim": [], "psnr_hvs": [], "psnr": []} for k in range(1, 17)}
    enc_s = dec_s = enc_mp = dec_mp = 0.0
    for index, image in enumerate(images):
        t = time.perf_counter()
        stream = codec.encode(image)
        enc_s += time.perf_counter() - t
        enc_mp += image.shape[0] * image.shape[1] / 1e6
        raw_stream = raw.encode(image)
        if index < timed:
            t = time.perf_counter()
            full = codec.decode(stream)
            dec_s += time.perf_counter() - t
            dec_mp += image.shape[0] * image.shape[1] / 1e6
        h, w = image.shape[:2]
        with torch.no_grad():
            decoded = [px.clamp(0, 1).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()[:h, :w]
                       for px in codec.decoder_model.decode_iterations(_raw_bits(raw, raw_stream))]
        if index < checked:
            check = int(rng.integers(1, 17))
            if not np.array_equal(codec.decode(truncate_iterations(stream, check)), decoded[check - 1]):
                raise AssertionError(f"{name}: the codec's {check}-iteration decode differs from the progressive pass")
            if not np.array_equal(raw.decode(truncate_iterations(raw_stream, check)), decoded[check - 1]):
                raise AssertionError(f"{name}: raw and context-coded streams decode differently")
            full = full if index < timed else codec.decode(stream)
            if not np.array_equal(full, decoded[15]):
                raise AssertionError(f"{name}: the codec's 16-iteration decode differs from the progressive pass")
        for k in range(1, 17):
            row = per_k[k]
            row["bpp"].append(_payload_bpp(truncate_iterations(stream, k), image))
            row["raw_bpp"].append(_payload_bpp(truncate_iterations(raw_stream, k), image))
            for metric, value in _measure(image, decoded[k - 1]).items():
                row[metric].append(value)
        print(f"  {name}: image {index + 1}/{len(images)} done", flush=True)
    speed = {"encode_mp_s": round(enc_mp / enc_s, 4), "decode_mp_s": round(dec_mp / dec_s, 4) if dec_s else None}
    mean = {k: {m: float(np.mean(v)) for m, v in row.items()} for k, row in per_k.items()}
    curve = [{"setting": f"quality={k}", **{m: mean[k][m] for m in ("bpp", "ms_ssim", "psnr_hvs", "psnr")}}
             for k in mean]
    raw_curve = [{**point, "bpp": mean[k]["raw_bpp"]} for k, point in zip(mean, curve)]
    digest = codec.model_digest.hex()  # which weights were measured (record_sidecars checks it)
    label = label or name
    return ({"row": label, "curve": curve, "sha256": digest, **speed},
            {"row": f"{label}{RAW_SUFFIX}", "curve": raw_curve, "sha256": digest, **speed})


def jpeg_row(subsampling: str, images: list[np.ndarray]) -> dict:
    from nicbeam.codecs.registry import get_codec

    curve = []
    enc_s = dec_s = pixels = 0.0
    for q in JPEG_QUALITIES:
        codec = get_codec("jpeg", quality=q, subsampling=subsampling)
        values: dict[str, list[float]] = {"bpp": [], "ms_ssim": [], "psnr_hvs": [], "psnr": []}
        for image in images:
            t = time.perf_counter()
            stream = codec.encode(image)
            t1 = time.perf_counter()
            decoded = codec.decode(stream)
            enc_s, dec_s = enc_s + t1 - t, dec_s + time.perf_counter() - t1
            pixels += image.shape[0] * image.shape[1] / 1e6
            values["bpp"].append(_payload_bpp(stream, image))
            for metric, value in _measure(image, decoded).items():
                values[metric].append(value)
        curve.append({"setting": f"quality={q}", **{m: float(np.mean(v)) for m, v in values.items()}})
    label = {"420": "4:2:0", "444": "4:4:4"}[subsampling]
    return {"row": f"jpeg {label}", "curve": curve, "encode_mp_s": round(pixels / enc_s, 2),
            "decode_mp_s": round(pixels / dec_s, 2)}


def area(curve: list[dict], metric: str) -> tuple[float, str]:
    """AUC over INTERVAL of the mean curve (flat extension to the interval's ends) and the bpp it reaches."""
    from nicbeam.metrics import auc

    points = sorted((p["bpp"], p[metric]) for p in curve)
    rates, values = [r for r, _ in points], [v for _, v in points]
    if rates[0] > INTERVAL[0]:
        rates, values = [INTERVAL[0]] + rates, [values[0]] + values
    if rates[-1] < INTERVAL[1]:
        rates, values = rates + [INTERVAL[1]], values + [values[-1]]
    reach = f"{points[0][0]:.3f}-{points[-1][0]:.3f}"
    return auc(rates, values, *INTERVAL), reach


def table(rows: list[dict]) -> str:
    for metric in ("ms_ssim", "psnr_hvs"):
        for row in rows:
            row[f"{metric}_auc"], row["reach"] = area(row["curve"], metric)
        order = sorted(rows, key=lambda r: -r[f"{metric}_auc"])
        for rank, row in enumerate(order, 1):
            row[f"{metric}_rank"] = rank
    lines = ["| row | MS-SSIM AUC | rank | PSNR-HVS AUC | rank | bpp reached | paper (MS-SSIM / PSNR-HVS AUC) | encode MP/s | decode MP/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: r["ms_ssim_rank"]):
        paper = PAPER.get(row["row"])
        lines.append(f"| {row['row']} | {row['ms_ssim_auc']:.4f} | {row['ms_ssim_rank']} | {row['psnr_hvs_auc']:.2f} | "
                     f"{row['psnr_hvs_rank']} | {row['reach']} | {f'{paper[0]} / {paper[1]}' if paper else ''} | "
                     f"{row['encode_mp_s']} | {row['decode_mp_s']} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """RD curves of every row; a variant and its raw-bits row share a colour (solid vs dotted), JPEG black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jpeg_style = {"jpeg 4:2:0": "--", "jpeg 4:4:4": "-."}  # the anchors in black, told apart by line style
    variants = list(dict.fromkeys(row["row"].removesuffix(RAW_SUFFIX) for row in rows if row["row"] not in jpeg_style))
    palette = plt.get_cmap("tab10" if len(variants) <= 10 else "tab20")
    colour = {name: palette(i % palette.N) for i, name in enumerate(variants)} | dict.fromkeys(jpeg_style, "black")
    fig, axes = plt.subplots(1, 3, figsize=(20, 5.5))
    for row in rows:
        pts = sorted(row["curve"], key=lambda p: p["bpp"])
        raw = row["row"].endswith(RAW_SUFFIX)
        style = jpeg_style.get(row["row"], ":" if raw else "-")
        for ax, metric in zip(axes, ("ms_ssim", "psnr_hvs", "psnr")):
            ax.plot([p["bpp"] for p in pts], [p[metric] for p in pts], style, marker=".",
                    color=colour[row["row"].removesuffix(RAW_SUFFIX)], label=row["row"])
    for ax, label in zip(axes, ("MS-SSIM (RGB)", "PSNR-HVS (dB, luma)", "PSNR (dB, RGB)")):
        ax.set_xlim(0, 2.1)
        ax.axvspan(*INTERVAL, color="0.95")
        ax.set_xlabel("bpp (payload)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.79, 0.5), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.79, 1))
    fig.savefig(path, dpi=110)


def record_sidecars(result: dict, folder: Path, out: Path) -> list[str]:
    """Write each measured variant's Kodak figures (per iteration, AUCs, the JPEG rows of the same run) into its
    weights sidecar ``folder/<variant>.json``, as the hyperprior sidecars carry theirs; only where the sidecar's
    SHA-256 is the digest of the weights measured (rows of runs before the digest was kept are skipped).
    ``result``: a run's OUT.json (header, image count, rows with their AUCs).
    Returns the variants recorded."""
    rows = {row["row"]: row for row in result["rows"]}
    jpeg = {name: {"ms_ssim_auc": round(rows[name]["ms_ssim_auc"], 4), "psnr_hvs_auc": round(rows[name]["psnr_hvs_auc"], 2)}
            for name in ("jpeg 4:2:0", "jpeg 4:4:4") if name in rows}
    done = []
    for name, row in rows.items():
        sidecar_path = folder / f"{name}.json"
        if name.startswith("jpeg") or name.endswith(RAW_SUFFIX) or not sidecar_path.exists():
            continue
        sidecar = json.loads(sidecar_path.read_text())
        if sidecar.get("sha256") != row.get("sha256"):
            continue
        raw = rows[f"{name}{RAW_SUFFIX}"]
        sidecar["kodak"] = {
            "images": result["images"],
            "source": f"benchmarks/bench_rnn_table.py ({out.with_suffix('.md').name}): {result['header']}",
            "ms_ssim_auc": round(row["ms_ssim_auc"], 4), "psnr_hvs_auc": round(row["psnr_hvs_auc"], 2),
            "raw_bits_ms_ssim_auc": round(raw["ms_ssim_auc"], 4), "raw_bits_psnr_hvs_auc": round(raw["psnr_hvs_auc"], 2),
            "same_run": jpeg, "encode_mp_s": row["encode_mp_s"], "decode_mp_s": row["decode_mp_s"],
            "results": [{"iterations": k, "bpp": round(p["bpp"], 4), "raw_bpp": round(q["bpp"], 4),
                         "ms_ssim": round(p["ms_ssim"], 5), "psnr_hvs": round(p["psnr_hvs"], 3), "psnr": round(p["psnr"], 3)}
                        for k, (p, q) in enumerate(zip(row["curve"], raw["curve"]), 1)],
        }
        sidecar_path.write_text(json.dumps(sidecar, indent=1) + "\n")
        done.append(name)
    return done


def _rows_of(task: tuple, images: list[np.ndarray], threads: int, timed: int, checked: int) -> list[dict]:
    """The rows of one task: ("rnn", variant, weights[, label]) -> its context-coded and raw rows;
    ("jpeg", "444"|"420", None)."""
    kind, name, weights, *label = task
    if kind == "rnn":
        return list(rnn_rows(name, weights, images, threads, timed, label[0] if label else None, checked))
    row = jpeg_row(name, images)
    print(f"  jpeg {name} done", flush=True)
    return [row]


def main() -> None:
    from PIL import Image

    from nicbeam.codecs.learned.rnn.codec import VARIANTS
    from nicbeam.codecs.learned.weights import weights_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--variants", default=None,
                    help="comma-separated (default: every variant with weights; 'none': JPEG rows only)")
    ap.add_argument("--weights-dir", type=Path, default=None, help="default: the nicbeam/weights package")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--extra", action="append", default=[], metavar="LABEL=VARIANT=WEIGHTS",
                    help="also measure VARIANT with other weights (e.g. an equal-budget run's export), as rows LABEL")
    ap.add_argument("--jobs", type=int, default=1,
                    help="measure the variants (and the two JPEG rows) in this many processes at once (speeds are then "
                         "measured beside the other jobs: use at most one job per idle core)")
    ap.add_argument("--timed-images", type=int, default=4, help="RNN decode speed from this many images")
    ap.add_argument("--checked-images", type=int, default=None,
                    help="check the progressive pass against the codec's decodes on this many images (default: "
                         "--timed-images; each check costs about two thirds of an image's measurement)")
    ap.add_argument("--out", type=Path, default=RESULTS / "rnn-table", help="writes OUT.json, OUT.md, OUT.png")
    ap.add_argument("--record-sidecar", action="store_true",
                    help="write each variant's figures into its weights sidecar (where the digest matches)")
    ap.add_argument("--record-from", type=Path, default=None, metavar="OUT.json",
                    help="only record the figures of an earlier run's OUT.json into the sidecars, measure nothing")
    ap.add_argument("--plot-from", type=Path, default=None, metavar="OUT.json",
                    help="only redraw OUT.png from an earlier run's OUT.json, measure nothing")
    args = ap.parse_args()
    if args.plot_from:
        plot(json.loads(args.plot_from.read_text())["rows"], args.plot_from.with_suffix(".png"))
        print(f"wrote {args.plot_from.with_suffix('.png')}")
        return
    folder = args.weights_dir or weights_dir()
    if args.record_from:
        done = record_sidecars(json.loads(args.record_from.read_text()), folder, args.record_from)
        print(f"recorded Kodak figures in the sidecars of: {', '.join(done) or 'none (no sidecar with that digest)'}")
        return
    if args.variants == "none":  # JPEG rows only (e.g. to check them against the paper on all 24 images)
        names = []
    else:
        names = args.variants.split(",") if args.variants else [n for n in VARIANTS if (folder / f"{n}.safetensors").exists()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    paths = sorted(args.kodak.glob("kodim*.png"))[: args.images]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    print(f"{len(images)} Kodak images; RNN variants with weights: {', '.join(names) or 'none'}", flush=True)
    # the JPEG rows first (short), then the variants in the order given; a variant's weights are read when its
    # row starts (a variant named in --variants whose file is missing then fails the run)
    tasks = [("jpeg", s, None) for s in ("444", "420")] + [("rnn", name, folder / f"{name}.safetensors") for name in names]
    for extra in args.extra:
        label, variant, weights = extra.split("=", 2)
        if variant not in VARIANTS or not Path(weights).is_file():
            raise SystemExit(f"--extra {extra!r}: need LABEL=VARIANT=WEIGHTS with a known variant and a weights file")
        tasks.append(("rnn", variant, Path(weights), label))
    rows = []
    if args.jobs > 1:  # one process per row group, results in the table's order
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
            futures = [pool.submit(_rows_of, task, images, args.threads, args.timed_images, args.checked_images) for task in tasks]
            for future in futures:
                rows.extend(future.result())
    else:
        for task in tasks:
            rows.extend(_rows_of(task, images, args.threads, args.timed_images, args.checked_images))
    text = table(rows)
    header = (f"Kodak, {len(images)} images, one run ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); "
              f"AUC over [{INTERVAL[0]}, {INTERVAL[1]}] bpp of the mean curve, linear interpolation, flat "
              f"extension beyond a curve's measured bpp; {args.threads} thread(s)"
              + (f", {args.jobs} rows measured at once" if args.jobs > 1 else ""))
    print(header + "\n\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(header + "\n\n" + text + "\n")
    result = {"header": header, "images": len(images), "rows": rows}
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out}.md/.json/.png")
    if args.record_sidecar:
        done = record_sidecars(result, folder, args.out)
        print(f"recorded Kodak figures in the sidecars of: {', '.join(done) or 'none'}")


if __name__ == "__main__":
    main()
