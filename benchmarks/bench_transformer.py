"""tcm-hyperprior vs mbt2018-mean (both N=64, M=128, random weights): parameters, FLOPs per pixel and CPU time
of the transforms on the same input, 1 thread, ratios measured in the same run (rounds alternate between the
models; the best round of each counts, so background load inflates both alike as far as possible).

Measured: analysis (float32), synthesis float32 and float64 (the exact decoder's path, with its sub-pixel
deconvolutions), and one training step (forward + backward of the rate-distortion loss, fp32) on a batch of
crops. Input: kodim01 (768x512) from ../shared/data/kodak when present, else a seeded smooth random image.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_transformer.py [--rounds 5] [--batch 4 --crop 256]

``--peak-memory WxH``: instead, each codec (random N=64/M=128 weights exported through the real export path,
default tile 1024, exact float64 decoding) encodes and decodes one synthetic WxH image in a fresh subprocess;
prints the peak RSS (``ru_maxrss``) and the encode/decode seconds of each.

``--warm-start CHECKPOINT``: instead, a ``tcm-hyperprior`` initialised from an ``mbt2018-mean`` training checkpoint
(``nicbeam train --init-from``, step 0), exported through the real export path, against the shipped
``mbt2018-mean`` on the input image at qualities 2, 6, 10 (bpp from the real stream, PSNR of the decoded image).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from nicbeam.nn.layers import subpixel_deconvs
from nicbeam.training.registry import build_model

KODIM01 = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim01.png"


def test_image() -> tuple[torch.Tensor, str]:
    if KODIM01.exists():
        from PIL import Image

        arr = np.asarray(Image.open(KODIM01).convert("RGB"))
        source = "kodim01"
    else:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:512, 0:768]
        arr = np.clip(np.stack([(xx + c * yy) % 256 for c in range(3)], -1) + rng.normal(0, 10, (512, 768, 3)), 0, 255)
        source = "synthetic 768x512"
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].float() / 255
    return x, source


def flops(fn) -> int:
    """FLOPs of ``fn`` (2 per multiply-add); attention in its plain form, which the counter knows (it does not
    count PyTorch's fused CPU attention kernel)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def best_time(fn, rounds: int) -> float:
    fn()  # warm-up
    return min(_timed(fn) for _ in range(rounds))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _peak_memory_child(family: str, width: int, height: int) -> None:
    """In a fresh process: export random weights of ``family``, code one image, print JSON figures."""
    import tempfile

    from bench_peak_memory import code_once  # this script's folder is on sys.path

    from nicbeam.codecs.registry import get_codec
    from nicbeam.training.export import write_weights

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(family, N=64, M=128)
    path = Path(tempfile.mkdtemp()) / f"{family}.safetensors"
    write_weights(model, path, calibration=torch.rand(2, 3, 128, 128))
    del model
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.clip(np.stack([(xx // 3 + c * yy // 5) % 256 for c in range(3)], -1)
                    + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    del yy, xx
    codec = get_codec(family, weights=path, device="cpu", quality=6)
    print(json.dumps({"family": family, **code_once(codec, image)}))


def warm_start(checkpoint: str) -> None:
    import tempfile

    from nicbeam.codecs.registry import get_codec
    from nicbeam.training.export import export_model
    from nicbeam.training.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    source = torch.load(checkpoint, map_location="cpu", weights_only=True)
    saved = json.loads(source["train_config"])
    cfg = TrainConfig(family="tcm-hyperprior", model_config=saved["model_config"], steps=0, crop=256,
                      data=saved["data"])
    work = Path(tempfile.mkdtemp())
    trainer = Trainer(cfg, None, None, work / "run", log=lambda m: None)  # type: ignore[arg-type]
    copied = trainer.init_from(checkpoint)
    weights = export_model(trainer, "tcm-step0", work / "weights")["weights"]
    x, source_name = test_image()
    image = (x[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    print(f"{source_name}: tcm-hyperprior at step 0 from {checkpoint} ({len(copied)} tensors copied) vs the shipped mbt2018-mean")
    for quality in (2, 6, 10):
        for name, extra in (("mbt2018-mean", {}), ("tcm-hyperprior", {"weights": weights})):
            codec = get_codec(name, quality=quality, device="cpu", **extra)
            stream = codec.encode(image)
            mse = np.mean((codec.decode(stream).astype(np.float64) - image) ** 2)
            print(f"q{quality:<3d}{name:16s} bpp {len(stream) * 8 / image.shape[0] / image.shape[1]:.4f} "
                  f"PSNR {10 * np.log10(255**2 / mse):.3f} dB")


def peak_memory(size: str) -> None:
    import subprocess
    import sys

    width, height = (int(v) for v in size.lower().split("x"))
    print(f"synthetic {width}x{height} image ({width * height / 1e6:.1f} MP), tile 1024, quality 6, random weights, "
          "exact (float64) decoding, 1 thread, one fresh process per codec")
    for family in ("mbt2018-mean", "tcm-hyperprior"):
        out = subprocess.run([sys.executable, __file__, "--child", family, str(width), str(height)],
                             check=True, capture_output=True, text=True).stdout
        print(out.strip().splitlines()[-1])


def main() -> None:
    import sys

    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _peak_memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--peak-memory", default=None, metavar="WxH", help="peak RSS of coding one WxH image instead")
    parser.add_argument("--warm-start", default=None, metavar="CHECKPOINT",
                        help="code the image with a tcm-hyperprior warm-started from this mbt2018-mean checkpoint instead")
    args = parser.parse_args()
    if args.warm_start:
        warm_start(args.warm_start)
        return
    if args.peak_memory:
        peak_memory(args.peak_memory)
        return
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, source = test_image()
    pixels = x.shape[2] * x.shape[3]
    q = torch.tensor([5])
    lambdas = [0.00045, 0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18]
    models = {"mbt2018-mean": build_model("mbt2018-mean", N=64, M=128, lambdas=lambdas),
              "tcm-hyperprior": build_model("tcm-hyperprior", N=64, M=128, lambdas=lambdas)}
    crops = torch.rand(args.batch, 3, args.crop, args.crop)
    crop_q = torch.arange(args.batch) % len(lambdas)
    result: dict[str, dict] = {}
    jobs = {}
    for name, model in models.items():
        model.eval()
        m64 = copy.deepcopy(model).double()
        subpixel_deconvs(m64.g_s)
        with torch.no_grad():
            y = model.analysis(x, q)
        y64 = y.double()
        shipped = sum(p.numel() for k, p in model.state_dict().items()
                      if not k.startswith(tuple(getattr(model, "omitted_from_weights", ()))))

        def train_step(model=model):
            model.train()
            out = model(crops, crop_q)
            loss = model.rate_distortion_loss(out, crops, torch.tensor(lambdas)[crop_q])["loss"]
            model.zero_grad(set_to_none=True)
            loss.backward()
            model.eval()

        jobs[name] = {
            "analysis_f32": lambda model=model: torch.no_grad()(model.analysis)(x, q),
            "synthesis_f32": lambda model=model, y=y: torch.no_grad()(model.synthesis)(y, q),
            "synthesis_f64": lambda m64=m64, y64=y64: torch.no_grad()(m64.synthesis)(y64, q),
            "train_step": train_step,
        }
        result[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "parameters_shipped": shipped,
            "analysis_mflop_per_px": flops(jobs[name]["analysis_f32"]) / pixels / 1e6,
            "synthesis_mflop_per_px": flops(jobs[name]["synthesis_f32"]) / pixels / 1e6,
        }
    times = {name: {k: [] for k in jobs[name]} for name in jobs}
    for name in jobs:
        for k, fn in jobs[name].items():
            fn()  # warm-up
    for _ in range(args.rounds):
        for name in jobs:
            for k, fn in jobs[name].items():
                times[name][k].append(_timed(fn))
    for name in jobs:
        for k, ts in times[name].items():
            result[name][f"{k}_s"] = min(ts)
    print(f"input {source} ({x.shape[3]}x{x.shape[2]}), 1 thread, best of {args.rounds} alternating rounds; "
          f"train step: batch {args.batch} x {args.crop}x{args.crop}, fp32, forward + backward")
    keys = list(result["mbt2018-mean"])
    print(f"{'':28s}{'mbt2018-mean':>14s}{'tcm-hyperprior':>16s}{'ratio':>8s}")
    for k in keys:
        a, b = result["mbt2018-mean"][k], result["tcm-hyperprior"][k]
        fmt = (lambda v: f"{v:,}") if isinstance(a, int) else (lambda v: f"{v:.4f}")
        print(f"{k:28s}{fmt(a):>14s}{fmt(b):>16s}{b / a:8.2f}")
    steps_per_s = 1 / result["tcm-hyperprior"]["train_step_s"]
    print(f"tcm-hyperprior training: {steps_per_s:.3f} steps/s = {steps_per_s * 3600:.0f} steps per CPU-hour "
          f"(best round, no data loading)")
    if args.json:
        Path(args.json).write_text(json.dumps({"input": source, "rounds": args.rounds, "batch": args.batch,
                                               "crop": args.crop, "results": result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
