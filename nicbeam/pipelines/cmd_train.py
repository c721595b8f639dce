"""``nicbeam train``: train (or resume, or export) a learned codec model of any registered family.

Example::

    nicbeam train --family bmshj2017-factorized --run-dir /work/train-runs/fact --steps 12000 \\
        --model-arg N=64 --model-arg M=128 --crop 128 --batch 8
    nicbeam train --run-dir /work/train-runs/fact --resume            # continue where it stopped
    nicbeam train --run-dir /work/train-runs/fact --export-only --export bmshj2017-factorized

Training images come from ``--data`` (default: ``$NICBEAM_TRAIN_DATA``, else ``../shared/data/train`` beside
the repository checkout, the corpus these machines provide); validation uses the images
matching ``--val-glob`` (held out from training). Kodak is refused: it is for evaluation only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence


def default_data() -> str | None:
    """``$NICBEAM_TRAIN_DATA``, else ``shared/data/train`` beside the repository checkout if it exists."""
    import os

    if os.environ.get("NICBEAM_TRAIN_DATA"):
        return os.environ["NICBEAM_TRAIN_DATA"]
    beside = Path(__file__).resolve().parents[3] / "shared" / "data" / "train"
    return str(beside) if beside.is_dir() else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nicbeam.training.config import train_defaults

    d = train_defaults()  # the help states TrainConfig's defaults, so the two cannot drift apart
    parser.add_argument("--family", help="model family, e.g. bmshj2017-factorized or mbt2018-mean")
    parser.add_argument("--run-dir", required=True, help="work directory: checkpoint.pt, log, config")
    parser.add_argument("--data", default=None,
                        help="folder of training images (JPEG/PNG); default $NICBEAM_TRAIN_DATA or ../shared/data/train; "
                             "with --resume: the run's corpus at a new path")
    parser.add_argument("--train-glob", action="append", default=None, help="include glob (default all)")
    parser.add_argument("--val-glob", action="append", default=None,
                        help="validation images, excluded from training (default bsds500_val_*)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="model constructor argument (JSON value), e.g. N=64")
    parser.add_argument("--lambdas", default=None,
                        help="comma-separated lambdas, one per quality (default: CompressAI's for the distortion)")
    parser.add_argument("--distortion", choices=("mse", "ms-ssim"), default="mse",
                        help="training distortion (new runs); ms-ssim needs --crop >= 161 (5-scale MS-SSIM)")
    # None = the TrainConfig default for a new run, the run's own value when resuming (given: replaces it)
    replaces = "with --resume: replaces the run's"
    parser.add_argument("--steps", type=int, default=None, help=f"(default {d['steps']}; with --resume: extends the run)")
    parser.add_argument("--batch", type=int, default=None, help=f"(default {d['batch']}; {replaces})")
    parser.add_argument("--crop", type=int, default=None, help=f"(default {d['crop']}; {replaces})")
    parser.add_argument("--lr", type=float, default=None, help=f"(default {d['lr']:g}; {replaces})")
    parser.add_argument("--lr-final", type=float, default=None, help=f"(default {d['lr_final']:g}; {replaces})")
    parser.add_argument("--decay-start", type=float, default=None,
                        help=f"fraction of --steps where the cosine decay starts (default {d['decay_start']}); {replaces}, "
                             "e.g. resumed_step / steps to decay from where the run is")
    parser.add_argument("--warmup-steps", type=int, default=d["warmup_steps"],
                        help="linear LR warm-up (new runs; advisable with --init-from, e.g. 500)")
    parser.add_argument("--entropy-lr-scale", type=float, default=d["entropy_lr_scale"],
                        help="LR multiplier for the entropy-model densities (new runs)")
    parser.add_argument("--lr-scale", action="append", default=[], metavar="PREFIX=FACTOR",
                        help="new runs: train the parameters whose names start with PREFIX at FACTOR x the LR "
                             "(repeatable; e.g. slice_transforms.=10 for what a warm start adds)")
    parser.add_argument("--autocast", choices=("off", "bf16"), default=None,
                        help="run the transforms in bfloat16 (CPUs with AVX512-BF16, GPUs; ~1.5x faster here); "
                             "latents, entropy models and loss stay float32; may be switched when resuming")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="run training steps through torch.compile (minutes of compiling at each start, then "
                             "1.09x faster RNN steps measured on this CPU); may be switched when resuming")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="weights and crops in channels-last memory (faster CPU convolutions: steps 1.09-1.17x "
                             "faster here in fp32, 1.05-1.25x under --autocast bf16); may be switched when resuming")
    parser.add_argument("--hard-patches", type=int, default=d["hard_patches"], metavar="K",
                        help="new runs: draw K x batch crops per step and keep the batch PNG compresses worst "
                             "(Toderici et al. 2017); 0 = random crops")
    parser.add_argument("--seed", type=int, default=d["seed"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda, cuda:N")
    parser.add_argument("--checkpoint-every", type=float, default=None,
                        help=f"seconds (default {d['checkpoint_every_s']:g}; {replaces})")
    parser.add_argument("--val-every", type=int, default=d["val_every"],
                        help="steps between validations (0: only at the last step)")
    parser.add_argument("--log-every", type=int, default=d["log_every"],
                        help="steps between log lines (0: only at the last step)")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (and checkpoint) after this")
    parser.add_argument("--until-cpu-s", type=float, default=None, metavar="SECONDS",
                        help="stop (and checkpoint) once the run's CPU time (all segments) reaches this: runs "
                             "compared at equal budget stop at the same CPU time")
    parser.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                        help="new run only: copy parameters of matching name and shape from another checkpoint")
    parser.add_argument("--snapshot-every", type=int, default=None,
                        help="also keep RUN_DIR/snapshot-stepN.pt every N steps (for a rate-vs-steps curve)")
    parser.add_argument("--checkpoint", default=None,
                        help="with --export-only: export this checkpoint instead of RUN_DIR/checkpoint.pt")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    parser.add_argument("--export", default=None, metavar="NAME",
                        help="after training, write nicbeam/weights/NAME.safetensors + NAME.json")
    parser.add_argument("--export-dir", default=None, help="where to export (default: the nicbeam/weights package)")
    parser.add_argument("--export-only", action="store_true", help="only export RUN_DIR/checkpoint.pt")


#: options a resumed run may change (they shape the rest of the run, not the model); given, they replace the
#: run's values in its config.json; for a new run, those not given take the TrainConfig defaults
RESUME_OVERRIDES = ("steps", "batch", "crop", "lr", "lr_final", "decay_start", "snapshot_every", "autocast", "compile",
                    "channels_last")


def _given(args: argparse.Namespace) -> dict:
    """The :data:`RESUME_OVERRIDES` given on the command line."""
    return {name: getattr(args, name) for name in RESUME_OVERRIDES if getattr(args, name) is not None}


def _parse_model_args(items: Sequence[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--model-arg needs KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _lr_scales(items: Sequence[str]) -> dict[str, float]:
    """``--lr-scale PREFIX=FACTOR`` items as {prefix: factor}."""
    out = {}
    for item in items:
        prefix, sep, value = item.rpartition("=")
        try:
            factor = float(value)
        except ValueError:
            factor = -1.0
        if not sep or not prefix or not factor > 0:
            raise SystemExit(f"--lr-scale needs PREFIX=FACTOR with FACTOR > 0, got {item!r}")
        out[prefix] = factor
    return out


def run(args: argparse.Namespace, extra: Sequence[str]) -> int:
    import torch

    from nicbeam.training.trainer import TrainConfig, Trainer, check_crops

    torch.set_num_threads(max(1, args.threads))
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = open(run_dir / "train.log", "a", buffering=1)

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_file.write(msg + "\n")

    config_path = run_dir / "config.json"
    if args.checkpoint and not args.export_only:
        raise SystemExit("--checkpoint applies only with --export-only (training resumes from RUN_DIR/checkpoint.pt)")
    if args.resume or args.export_only:
        if not config_path.exists():
            raise SystemExit(f"{config_path} missing: nothing to resume or export")
        saved = json.loads(config_path.read_text())
        cfg = TrainConfig(**saved)
        changed = {}
        for name, value in _given(args).items():  # e.g. more steps, a new schedule or crop, bf16
            if value != getattr(cfg, name):
                changed[name] = [getattr(cfg, name), value]
            setattr(cfg, name, value)
        if args.data is not None:  # the same corpus at another path (another machine); globs are kept
            cfg.data = {**cfg.data, "folder": str(args.data)}
        if args.resume and not Path(cfg.data["folder"]).is_dir():
            raise SystemExit(f"training data folder {cfg.data['folder']!r} of this run is missing here: "
                             "pass --data FOLDER (the same corpus) to resume")
        if args.checkpoint_every is not None:
            cfg.checkpoint_every_s = args.checkpoint_every
    else:
        if not args.family:
            raise SystemExit("--family is required for a new run")
        if args.data is None:
            args.data = default_data()
            if args.data is None:
                raise SystemExit("no training data: pass --data FOLDER or set NICBEAM_TRAIN_DATA")
        model_config = _parse_model_args(args.model_arg)
        if args.lambdas:
            model_config["lambdas"] = [float(v) for v in args.lambdas.split(",")]
        elif args.distortion == "ms-ssim":
            from nicbeam.nn.models import MS_SSIM_LAMBDAS

            model_config["lambdas"] = list(MS_SSIM_LAMBDAS)
        cfg = TrainConfig(
            family=args.family, model_config=model_config, **_given(args), warmup_steps=args.warmup_steps,
            seed=args.seed, entropy_lr_scale=args.entropy_lr_scale, lr_scales=_lr_scales(args.lr_scale), distortion=args.distortion,
            hard_patches=args.hard_patches,
            **({"checkpoint_every_s": args.checkpoint_every} if args.checkpoint_every is not None else {}),
            val_every=args.val_every, log_every=args.log_every,
            data={"folder": str(args.data), "train_glob": args.train_glob or ["*"],
                  "val_glob": args.val_glob or ["bsds500_val_*"]},
        )
    from nicbeam.training.data import ImageCache, list_images

    if cfg.distortion == "ms-ssim" and cfg.crop < 161:
        raise SystemExit("--distortion ms-ssim needs --crop >= 161 (5-scale MS-SSIM; 176 or 192 with the model's downsampling)")
    try:
        check_crops(cfg)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if args.export_only:
        trainer = Trainer(cfg, train=None, val=None, run_dir=run_dir, log=log)  # type: ignore[arg-type]  # export: CPU
    else:
        d = cfg.data
        val_paths = list_images(d["folder"], d["val_glob"])
        train_paths = list_images(d["folder"], d["train_glob"], exclude=d["val_glob"])
        log(f"loading {len(train_paths)} training and {len(val_paths)} validation images from {d['folder']}")
        train = ImageCache(train_paths)
        val = ImageCache(val_paths) if val_paths else None
        cfg.data = {**d, "train_images": len(train), "train_pixels": train.pixels,
                    "val_images": len(val) if val else 0}
        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        trainer = Trainer(cfg, train, val, run_dir, log=log, device=device)
    # the model's config (with its defaults filled) is the one to rebuild it from
    cfg.model_config = trainer.model.config
    trainer.cfg = cfg
    if args.resume or args.export_only:
        trainer.load_checkpoint(args.checkpoint if args.export_only and args.checkpoint else run_dir / "checkpoint.pt")
        log(f"resumed {cfg.family} at step {trainer.step}")
        if not args.export_only:
            from dataclasses import asdict

            if changed:
                cfg.resumes = [*cfg.resumes, {"at_step": trainer.step, "changed": changed}]
            config_path.write_text(json.dumps(asdict(cfg), indent=1))  # keeps an extended --steps
    else:
        from dataclasses import asdict

        config_path.write_text(json.dumps(asdict(cfg), indent=1))
        if args.init_from:
            copied = trainer.init_from(args.init_from)
            log(f"initialised {len(copied)} tensors from {args.init_from}")
            cfg.data["init_from"] = str(args.init_from)
            config_path.write_text(json.dumps(asdict(cfg), indent=1))
        n_params = sum(p.numel() for p in trainer.model.parameters())
        log(f"new run {cfg.family} {json.dumps(cfg.model_config)}: {n_params} parameters, run dir {run_dir}")
    if not args.export_only:
        from nicbeam.allocator import keep_freed_memory

        log(keep_freed_memory())
        log(f"training to step {cfg.steps}: batch {cfg.batch} crop {cfg.crop} lr {cfg.lr} on {trainer.hardware}")
        trainer.fit(max_minutes=args.max_minutes, until_cpu_s=args.until_cpu_s)
    if args.export or args.export_only:
        from nicbeam.training.export import export_model

        name = args.export or cfg.family
        paths = export_model(trainer, name, args.export_dir)
        log(f"exported {name}: {json.dumps({k: str(v) for k, v in paths.items()})}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    sys.exit(run(parser.parse_args(), []))
