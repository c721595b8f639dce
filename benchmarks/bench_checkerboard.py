"""ckbd-hyperprior (or, with ``--family charm-hyperprior``, the channel-wise context) vs mbt2018-mean: encode and decode time of whole codec calls at equal N/M on one 768x512
image, 1 thread, ratios measured in the same run (rounds alternate between the codecs; the best round of each
counts, so background load inflates both alike as far as possible).

Both codecs are built from the shipped training checkpoint ``checkpoints/mbt-q10/checkpoint.pt`` (N=64,
M=128): ``mbt2018-mean`` as trained, ``ckbd-hyperprior`` warm-started from it (every mbt2018-mean tensor copied,
context + entropy-parameter networks fresh, residual branch at zero), both exported through the real export
path with calibration crops from the training corpus, so the rates (and the range-coding work) are those of a
trained hyperprior. The checkerboard model is *untrained* here: these are cost figures, not RD figures.
``--wide``: also both families at N=64, M=192 warm-started from the same checkpoint (what copies is printed);
their new layers are random, so their times include unrealistic rates.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_checkerboard.py [--rounds 3] [--quality 6] [--wide] [--family F]

``--widen M``: instead, the widened warm start (:mod:`nicbeam.training.widen`): the checkpoint widened to M latent
channels against the original on 4 training crops at qualities 2, 6, 10 (largest |x_hat difference|, rate from the
likelihoods), and what ``ckbd-hyperprior`` ``--init-from`` the widened file copies.

``--train-step``: instead, the time of one training step (forward + backward + Adam, fp32, batch 8 of 128x128
random crops, 10 rate points) of both families at N=64, M=128 and M=192 (random weights; best of 3 after a
warm-up), for sizing a CPU training budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
KODIM01 = ROOT.parent / "shared" / "data" / "kodak" / "kodim01.png"
TRAIN = ROOT.parent / "shared" / "data" / "train"
CHECKPOINT = ROOT / "checkpoints" / "mbt-q10" / "checkpoint.pt"


def image() -> tuple[np.ndarray, str]:
    from PIL import Image

    if KODIM01.exists():
        return np.asarray(Image.open(KODIM01).convert("RGB")), "kodim01 (768x512)"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:768]
    arr = np.clip(np.stack([(xx + c * yy) % 256 for c in range(3)], -1) + rng.normal(0, 10, (512, 768, 3)), 0, 255)
    return arr.astype(np.uint8), "synthetic 768x512"


def calibration(count: int = 8, crop: int = 256) -> torch.Tensor:
    """Centre crops of training images (never Kodak), as ``nicbeam train --export`` takes them."""
    from nicbeam.training.data import ImageCache, list_images
    from nicbeam.training.trainer import to_tensor

    paths = list_images(TRAIN, ["*"], exclude=["bsds500_val_*"])
    step = max(1, len(paths) // count)
    return to_tensor(ImageCache(paths[::step][:count]).center_crops(crop, count))


def warm_started(family: str, config: dict, run_dir: Path, source: Path = CHECKPOINT) -> tuple[torch.nn.Module, list[str]]:
    """A ``family`` model warm-started from an mbt2018-mean checkpoint (default the shipped run's) through Trainer.init_from."""
    from nicbeam.training.trainer import TrainConfig, Trainer

    trainer = Trainer(TrainConfig(family=family, model_config=config, crop=128), None, None, run_dir, log=lambda m: None)
    copied = trainer.init_from(source)
    return trainer.model, copied


def timed(fn, times: list[float]) -> None:
    """Run ``fn`` once, appending its wall time (seconds) to ``times``."""
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)


def train_steps(rounds: int = 3) -> None:
    """Seconds per training step of both families at M=128 and M=192 (see the module docstring)."""
    from nicbeam.nn.models import DEFAULT_LAMBDAS
    from nicbeam.training.registry import build_model

    lambdas = [0.00045, 0.0009, *DEFAULT_LAMBDAS]  # the shipped models' 10 rate points
    times = {}
    for family, m in (("mbt2018-mean", 128), ("ckbd-hyperprior", 128), ("charm-hyperprior", 128),
                      ("mbt2018-mean", 192), ("ckbd-hyperprior", 192), ("charm-hyperprior", 192)):
        torch.manual_seed(0)
        model = build_model(family, N=64, M=m, lambdas=lambdas).train()
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        x = torch.rand(8, 3, 128, 128)
        q = torch.randint(0, len(lambdas), (8,))
        lmbda = torch.tensor(lambdas)[q]
        spent: list[float] = []
        for _ in range(rounds + 1):
            def step():
                loss = model.rate_distortion_loss(model(x, q), x, lmbda)["loss"]
                opt.zero_grad()
                loss.backward()
                opt.step()
            timed(step, spent)
        times[(family, m)] = min(spent[1:])
        print(f"{family:16s} N=64 M={m}: {sum(p.numel() for p in model.parameters())} parameters, "
              f"{times[(family, m)]:.3f} s per training step (batch 8 x 128x128, 1 thread)")
    base = times[("mbt2018-mean", 128)]
    print("ratios to mbt2018-mean M=128: " + ", ".join(f"{f} M={m} {t / base:.2f}x" for (f, m), t in times.items()))


def widened(m: int) -> None:
    """The ``--widen`` report (module docstring)."""
    from nicbeam.training.registry import build_model
    from nicbeam.training.widen import widen_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        target = widen_checkpoint(CHECKPOINT, Path(tmp) / "widened.pt", m)
        source_state, wide_state = (torch.load(p, map_location="cpu", weights_only=True) for p in (CHECKPOINT, target))
        models = []
        for state in (source_state, wide_state):
            model = build_model("mbt2018-mean", **json.loads(state["train_config"])["model_config"]).eval()
            model.load_state_dict(state["model"])
            models.append(model)
        x = calibration(4, 256)
        for q in (2, 6, 10):
            with torch.no_grad():
                outs = [model(x, torch.full((4,), q - 1)) for model in models]
            bpp = [float(sum(-torch.log2(v).sum() for v in o["likelihoods"].values())) / (4 * 256 * 256) for o in outs]
            diff = float((outs[0]["x_hat"] - outs[1]["x_hat"]).abs().max())
            print(f"quality {q}: M={models[0].M} {bpp[0]:.5f} bpp, M={m} widened {bpp[1]:.5f} bpp; max |x_hat difference| {diff:g}")
        ckbd, copied = warm_started("ckbd-hyperprior", json.loads(wide_state["train_config"])["model_config"], Path(tmp) / "ckbd", target)
        missing = sorted({k.rsplit(".", 1)[0] for k in ckbd.state_dict() if k not in copied})
        print(f"ckbd-hyperprior M={m} --init-from the widened checkpoint: {len(copied)} of {len(models[1].state_dict())} "
              f"mbt2018-mean tensors copied; not copied: {', '.join(missing)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quality", type=int, default=6)
    parser.add_argument("--wide", action="store_true", help="also N=64, M=192 (new layers random)")
    parser.add_argument("--train-step", action="store_true", help="time training steps instead (module docstring)")
    parser.add_argument("--family", default="ckbd-hyperprior", choices=("ckbd-hyperprior", "charm-hyperprior"),
                        help="the context model set against mbt2018-mean")
    parser.add_argument("--widen", type=int, default=0, metavar="M", help="check the widened warm start instead")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.widen:
        widened(args.widen)
        return 0
    if args.train_step:
        train_steps(args.rounds)
        return 0
    from nicbeam.codecs.registry import get_codec
    from nicbeam.training.export import write_weights

    if not CHECKPOINT.exists():
        sys.exit(f"{CHECKPOINT} missing")
    saved = json.loads(torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["train_config"])
    base = saved["model_config"]
    arr, source = image()
    calib = calibration()
    widths = [base["M"]] + ([192] if args.wide else [])
    print(f"image {source}, quality {args.quality}, 1 thread, best of {args.rounds} rounds; calibration: "
          f"{calib.shape[0]} training crops; warm start: {CHECKPOINT.relative_to(ROOT)} (N={base['N']}, M={base['M']})")
    with tempfile.TemporaryDirectory() as tmp:
        for m in widths:
            config = {**base, "M": m}
            codecs = {}
            for family in ("mbt2018-mean", args.family):
                model, copied = warm_started(family, config, Path(tmp) / f"{family}-{m}")
                n_params = sum(p.numel() for p in model.parameters())
                missing = sorted({k.rsplit(".", 1)[0] for k in model.state_dict() if k not in copied})
                print(f"{family} N={config['N']} M={m}: {n_params} parameters, {len(copied)} tensors copied; "
                      f"not copied: {', '.join(missing) or 'none'}")
                path = Path(tmp) / f"{family}-{m}.safetensors"
                write_weights(model, path, calib)
                codecs[family] = get_codec(family, weights=path, device="cpu", quality=args.quality)
            streams = {name: c.encode(arr) for name, c in codecs.items()}  # warm-up (tables, float64 copy)
            for name, c in codecs.items():
                c.decode(streams[name])
            enc, dec, lat = ({name: [] for name in codecs} for _ in range(3))
            for _ in range(args.rounds):
                for name, c in codecs.items():
                    timed(lambda: c.encode(arr), enc[name])
                    timed(lambda: c.decode(streams[name]), dec[name])
                    timed(lambda: c.decode_latents(streams[name]), lat[name])
            pixels = arr.shape[0] * arr.shape[1]
            for name in codecs:
                decoded = codecs[name].decode(streams[name])
                mse = float(((decoded.astype(np.float64) - arr) ** 2).mean())
                print(f"  {name:16s} M={m}: {len(streams[name]) * 8 / pixels:.4f} bpp, {10 * np.log10(255**2 / mse):.2f} dB, "
                      f"encode {min(enc[name]):.3f} s, decode {min(dec[name]):.3f} s "
                      f"(of which entropy decoding, latents only: {min(lat[name]):.3f} s)")
            e = min(enc[args.family]) / min(enc["mbt2018-mean"])
            d = min(dec[args.family]) / min(dec["mbt2018-mean"])
            l = min(lat[args.family]) / min(lat["mbt2018-mean"])
            print(f"  ratio {args.family} / mbt2018-mean at N={config['N']} M={m}: encode {e:.2f}x, decode {d:.2f}x, "
                  f"entropy decoding {l:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
