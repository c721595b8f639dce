"""Widen a mean-scale hyperprior checkpoint to more latent channels (M -> M'), computing what it computed.

``Trainer.init_from`` copies only tensors of equal shape, so an ``M=192`` model warm-started from an ``M=128``
``mbt2018-mean`` checkpoint loses every M-dependent layer (``g_a.6``, ``g_s.0``, ``h_a.0``, ``h_s.4``, the gains)
and starts far from it. This writes an ``mbt2018-mean`` checkpoint with ``M'`` channels that keeps the trained
``M`` and adds ``M' - M`` latents that start silent:

* ``g_a.6`` (last analysis conv): new output channels with zero weights and bias, so the new latents are 0;
* ``g_s.0`` (first synthesis deconv): new input channels with small random weights (they multiply 0 at first, and
  being non-zero they let the distortion's gradient reach ``g_a.6``'s new channels, which would otherwise stay 0);
* ``h_a.0``: new input channels with zero weights (their input is 0);
* ``h_s.4``: new output channels with zero weights, bias 0 for the means and ``ln 0.11`` (the smallest scale)
  for the log-scales, so a new latent costs almost no bits;
* ``gain`` / ``inv_gain``: each quality's mean over the trained channels.

The widened model reconstructs exactly what the source does and its rate differs only by the near-zero cost of
the new latents; ``nicbeam train --family ckbd-hyperprior --init-from WIDENED --model-arg M=M'`` then copies every
``mbt2018-mean`` tensor. Usage::

    python -m nicbeam.training.widen checkpoints/mbt-q10/checkpoint.pt /work/train-runs/mbt-m192/checkpoint.pt --M 192

A target named ``checkpoint.pt`` also gets a ``config.json`` beside it (the source's, with M' and ``init_from`` =
the source), so the sidecar of a run warm-started from it records the whole lineage (``warm_start_lineage``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

SYNTHESIS_INIT_STD = 1e-3


def widen_state(state: dict[str, torch.Tensor], m_new: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of an mbt2018-mean model widened to ``m_new`` latent channels (see the module docstring)."""
    out = dict(state)
    m = state["g_a.6.weight"].shape[0]
    extra = m_new - m
    if extra < 0:
        raise ValueError(f"cannot narrow M={m} to {m_new}")
    if extra == 0:
        return out
    gen = torch.Generator().manual_seed(seed)
    w = state["g_a.6.weight"]
    out["g_a.6.weight"] = torch.cat([w, w.new_zeros((extra, *w.shape[1:]))])
    out["g_a.6.bias"] = torch.cat([state["g_a.6.bias"], w.new_zeros(extra)])
    w = state["g_s.0.weight"]  # ConvTranspose2d: (in = M, out = N, k, k)
    out["g_s.0.weight"] = torch.cat([w, torch.randn((extra, *w.shape[1:]), generator=gen, dtype=w.dtype) * SYNTHESIS_INIT_STD])
    w = state["h_a.0.weight"]  # Conv2d: (out = N, in = M, k, k)
    out["h_a.0.weight"] = torch.cat([w, w.new_zeros((w.shape[0], extra, *w.shape[2:]))], dim=1)
    w, b = state["h_s.4.weight"], state["h_s.4.bias"]  # Conv2d: (out = 2M: means then log-scales, in, k, k)
    zeros_w = w.new_zeros((extra, *w.shape[1:]))
    out["h_s.4.weight"] = torch.cat([w[:m], zeros_w, w[m:], zeros_w])
    out["h_s.4.bias"] = torch.cat([b[:m], b.new_zeros(extra), b[m:], b.new_full((extra,), math.log(0.11))])
    for key in ("gain", "inv_gain"):
        g = state[key]  # (qualities, M)
        out[key] = torch.cat([g, g.abs().mean(dim=1, keepdim=True).repeat(1, extra)], dim=1)
    return out


def widen_checkpoint(source: str | Path, target: str | Path, m_new: int) -> Path:
    """Read a training checkpoint of ``mbt2018-mean`` and write its widened copy (``model`` + ``train_config``)."""
    state = torch.load(source, map_location="cpu", weights_only=True)
    config = json.loads(state["train_config"])
    if config["family"] != "mbt2018-mean":
        raise ValueError(f"{source} is a {config['family']} checkpoint, not mbt2018-mean")
    config["model_config"] = {**config["model_config"], "M": m_new}
    config["data"] = {**config.get("data", {}), "init_from": str(Path(source).resolve()), "widened_from_M": int(
        state["model"]["g_a.6.weight"].shape[0])}
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": widen_state(state["model"], m_new), "train_config": json.dumps(config),
                "step": state.get("step", 0), "elapsed_s": state.get("elapsed_s", 0.0),
                **({"cpu_s": state["cpu_s"]} if "cpu_s" in state else {}), "family": "mbt2018-mean"}, target)
    if target.name == "checkpoint.pt":
        (target.parent / "config.json").write_text(json.dumps(config, indent=1))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="widen an mbt2018-mean checkpoint to M' latent channels")
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--M", type=int, required=True, dest="m")
    args = parser.parse_args(argv)
    print(widen_checkpoint(args.source, args.target, args.m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
