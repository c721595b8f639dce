"""CPU encode/decode speed of nicbeam's learned codecs against CompressAI running the same architecture
with the same weights, and where the time goes (transforms vs entropy coding).

    cd /work/main && PYTHONPATH=. /work/venv-cai/bin/python benchmarks/bench_vs_compressai.py \\
        [--images 24] [--qualities 1,8] [--threads 1] [--repeats 1] [--kodak DIR]

Needs CompressAI (1.2.x) next to nicbeam's learned-codec deps (torch, numpy, safetensors, constriction,
Pillow); /work/venv-cai has them (constriction added with ``pip install constriction``).

For each family (bmshj2017-factorized, mbt2018-mean) and quality, per Kodak image (768x512):

* nicbeam: ``codec.encode(uint8 image) -> stream`` and ``codec.decode(stream)`` (default precision "exact",
  float64 synthesis) and the same stream decoded with ``precision="fast"`` (float32), timed whole, then its
  internals on the same input: (a) transforms = ``model.analysis`` (+ ``h_a`` and rounding for the
  hyperprior); (b) entropy coding = ``codec._encode_tiles`` minus (a) (for mbt2018-mean it includes the
  integer h_s, shown separately); encode "other" = whole encode minus ``_encode_tiles`` (tensor
  conversion, container); (c) ``codec._decode_tile`` = entropy decoding + integer h_s; (d) synthesis
  g_s in float64 (``codec.synthesis_model``, what the decoder runs) and, for comparison only, g_s in
  float32 (``codec.model``); decode "other" = whole decode minus (c) and (d).
* CompressAI: ``compressai.models.FactorizedPrior(N, M)`` / ``MeanScaleHyperprior(N, M)`` loaded with the
  nicbeam weights, ``update(force=True, update_quantiles=True)``, then its real rANS path
  ``compress(x)`` / ``decompress(strings, shape)`` (with uint8 <-> float tensor conversion and padding to a
  multiple of 64, like CompressAI's example code, counted in), split into g_a (+ h_a) vs the rest of
  ``compress``, and the entropy part of ``decompress`` (z decoding, h_s, y decoding) vs g_s.

Weight mapping (identical maths unless stated): conv / deconv / h_a / entropy-bottleneck tensors copied by
name and shape (a per-quality factorized prior: the rows of the measured quality, so CompressAI's single
per-channel density is the one nicbeam codes that quality with); GDN beta/gamma copied as *effective* values (nicbeam's reparametrisation pedestal is
2**-18, CompressAI's 2**-36, so raw parameters differ); nicbeam's per-quality gain units are folded into
CompressAI's last g_a conv and first g_s deconv (exact; CompressAI has no gain units and pays nothing).
CompressAI's h_s is wider (N->M->3M/2->2M vs nicbeam's N->N->3N/2->2M): nicbeam's integer h_s is
dequantised into it (zero-padded; LeakyReLU slope set to 0 = nicbeam's ReLU; output channels reordered and
an ``exp`` appended since nicbeam predicts log-scales), so CompressAI codes the y symbols with realistic
scales while running its own layer widths. Rate and PSNR of both are printed as a check of equal work.

All timings with ``torch.set_num_threads(--threads)`` (default 1); one untimed warm-up per model and
quality; per-image times are the minimum over ``--repeats``; MP/s = total pixels / total time, by wall
clock and (in brackets) by process CPU time, which is less disturbed by other load on the machine.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
FAMILIES = ("bmshj2017-factorized", "mbt2018-mean")


class Timer:
    """Per-image stage times (wall, cpu): min over repeats within an image, summed over images."""

    def __init__(self, repeats: int) -> None:
        self.repeats = repeats
        self.total: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])

    def __call__(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        best = [math.inf, math.inf]
        for _ in range(self.repeats):
            w, c = time.perf_counter(), time.process_time()
            out = fn(*args)
            best = [min(best[0], time.perf_counter() - w), min(best[1], time.process_time() - c)]
        self.total[stage][0] += best[0]
        self.total[stage][1] += best[1]
        return out

    def get(self, stage: str, cpu: bool = False) -> float:
        return self.total[stage][1 if cpu else 0] if stage in self.total else 0.0


# ------------------------------------------------------------------------------------------- CompressAI
class _ExpScales(nn.Module):
    """Appended to CompressAI's h_s: channels [log-scales, means] -> [scales, means]."""

    def __init__(self, m: int) -> None:
        super().__init__()
        self.m = m

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.exp(p[:, : self.m]), p[:, self.m :]], dim=1)


@torch.no_grad()
def build_compressai(codec: Any, quality: int) -> tuple[nn.Module, list[str]]:
    """CompressAI model of the same family with the codec's weights (gains of ``quality`` folded in)."""
    import compressai.models as cm

    from nicbeam.nn.layers import GDN

    ours, hyper = codec.model, codec.name == "mbt2018-mean"
    net = (cm.MeanScaleHyperprior if hyper else cm.FactorizedPrior)(ours.N, ours.M).eval()
    theirs = net.state_dict()
    new = {k: v.clone() for k, v in ours.state_dict().items()
           if k in theirs and theirs[k].shape == v.shape and not k.startswith("h_s.")}
    rows = slice((quality - 1) * ours.M, quality * ours.M)
    for k, v in ours.state_dict().items():  # per-quality prior (rows quality x M + channel): this quality's densities
        if k.startswith("entropy_bottleneck.") and k in theirs and v.shape[0] == ours.M * ours.num_qualities \
                and theirs[k].shape == v[rows].shape:
            new[k] = v[rows].clone()
    for name, mod in ours.named_modules():  # GDN: effective beta/gamma through CompressAI's reparametrisation
        if isinstance(mod, GDN):
            cmod = net.get_submodule(name)
            new[f"{name}.beta"] = cmod.beta_reparam.init(mod.beta_reparam(mod.beta))
            new[f"{name}.gamma"] = cmod.gamma_reparam.init(mod.gamma_reparam(mod.gamma))
    g, ig = ours.gain[quality - 1].abs(), ours.inv_gain[quality - 1].abs()
    last_a = f"g_a.{len(ours.g_a) - 1}"
    new[f"{last_a}.weight"] = new[f"{last_a}.weight"] * g[:, None, None, None]
    new[f"{last_a}.bias"] = new[f"{last_a}.bias"] * g
    new["g_s.0.weight"] = new["g_s.0.weight"] * ig[:, None, None, None]  # ConvTranspose2d: (in=M, out, k, k)
    net.load_state_dict({**theirs, **new})  # CompressAI's load_state_dict wants its CDF buffers present
    if hyper:
        _embed_integer_h_s(net, codec.bundle.extras["int_hs"], ours.M)
    net.update(force=True, update_quantiles=True)  # quantiles by bisection on the copied density, then CDFs
    params = {k for k, _ in net.named_parameters()} - {"entropy_bottleneck.quantiles"}
    return net, sorted(k for k in params - set(new) if not (hyper and k.startswith("h_s.")))


def _embed_integer_h_s(net: nn.Module, int_hs: Any, m: int) -> None:
    """Dequantise nicbeam's integer h_s into CompressAI's (wider) h_s, zero-padded."""
    layers = [mod for mod in net.h_s if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d))]
    in_frac = 0
    for i, (spec, layer) in enumerate(zip(int_hs.specs, layers)):
        w = getattr(int_hs, f"w{i}") / 2.0 ** (spec["acc_frac"] - in_frac)
        b = getattr(int_hs, f"b{i}").double() / 2.0 ** spec["acc_frac"]
        if i == len(layers) - 1:  # nicbeam: [means, log-scales]; CompressAI chunks into [scales, means]
            w, b = torch.cat([w[m:], w[:m]]), torch.cat([b[m:], b[:m]])
        layer.weight.zero_()
        layer.bias.zero_()
        layer.weight[: w.shape[0], : w.shape[1]] = w.float()
        layer.bias[: b.shape[0]] = b.float()
        in_frac = spec["acc_frac"] - spec["shift"]
    for mod in net.h_s:
        if isinstance(mod, nn.LeakyReLU):
            mod.negative_slope = 0.0
    net.h_s.append(_ExpScales(m))


def cai_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 H x W x 3 -> (1, 3, H', W') in [0, 1], zero-padded to a multiple of 64 (CompressAI's examples)."""
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div_(255.0)
    h, w = img.shape[:2]
    return F.pad(x, (0, -w % 64, 0, -h % 64), mode="constant", value=0)


def cai_encode(net: nn.Module, img: np.ndarray) -> dict:
    return net.compress(cai_tensor(img))


def cai_decode(net: nn.Module, out: dict, h: int, w: int) -> np.ndarray:
    x_hat = net.decompress(out["strings"], out["shape"])["x_hat"][0, :, :h, :w]
    return x_hat.mul(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()


def cai_transforms(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    y = net.g_a(x)
    return net.h_a(y) if hasattr(net, "h_a") else y


def cai_entropy_decode(net: nn.Module, strings: list, shape: Any) -> torch.Tensor:
    """``decompress`` without g_s."""
    if not hasattr(net, "h_s"):
        return net.entropy_bottleneck.decompress(strings[0], shape)
    z_hat = net.entropy_bottleneck.decompress(strings[1], shape)
    scales_hat, means_hat = net.h_s(z_hat).chunk(2, 1)
    indexes = net.gaussian_conditional.build_indexes(scales_hat)
    return net.gaussian_conditional.decompress(strings[0], indexes, means=means_hat)


# ------------------------------------------------------------------------------------------- nicbeam
def nic_transforms(codec: Any, x: torch.Tensor, qt: torch.Tensor) -> torch.Tensor:
    y = codec.model.analysis(x, qt)
    return torch.round(codec.model.h_a(y)).cpu() if codec.name == "mbt2018-mean" else y


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


@torch.no_grad()
def bench_one(family: str, q: int, images: list[np.ndarray], repeats: int) -> tuple[Timer, Timer, dict]:
    from nicbeam.codecs import container
    from nicbeam.codecs.registry import get_codec

    codec = get_codec(family, quality=q, device="cpu")
    fast = get_codec(family, quality=q, device="cpu", precision="fast")  # float32 synthesis, same streams
    net, missing = build_compressai(codec, q)
    codec.synthesis_model  # build the float64 copy outside the timings
    qt = torch.tensor([q - 1])
    hyper = family == "mbt2018-mean"
    info: dict = {"missing": missing, "bpp": [0.0, 0.0], "psnr": [0.0, 0.0]}
    # mapping check on the first image: same latent, same reconstruction from it (float32 both)
    x0 = codec._to_tensor([images[0]])
    y_ours = codec.model.analysis(x0, qt)
    info["dy"] = float((net.g_a(x0) - y_ours).abs().max())
    y_r = torch.round(y_ours)
    info["dx"] = float((net.g_s(y_r) - codec.model.synthesis(y_r, qt)).abs().max())

    warm, nic, cai = Timer(1), Timer(repeats), Timer(repeats)
    for k, img in enumerate([images[0]] + images):  # first pass: warm-up, untimed results discarded
        t_nic, t_cai = (warm, warm) if k == 0 else (nic, cai)
        h, w = img.shape[:2]
        # whole codecs, interleaved so that background load hits both alike
        stream = t_nic("enc", codec.encode, img)
        out = t_cai("enc", cai_encode, net, img)
        rec_nic = t_nic("dec", codec.decode, stream)
        rec_cai = t_cai("dec", cai_decode, net, out, h, w)
        t_nic("dec.fast", fast.decode, stream)
        # nicbeam internals on the same input
        x = codec._to_tensor([img])
        lat = t_nic("enc.transforms", nic_transforms, codec, x, qt)
        t_nic("enc.tiles", codec._encode_tiles, x, qt)
        if hyper:
            t_nic("enc.int_hs", codec.bundle.extras["int_hs"].entropy_parameters, lat, codec.model.M)
        _, payload = container.unpack(stream)
        assert len(codec.tiles(h, w)) == 1, "images must fit one tile (default tile 1024)"
        (blob,) = codec._split(payload, 1)
        y_hat = t_nic("dec.entropy", codec._decode_tile, blob, *codec.padded(h, w), q - 1)[None]
        if hyper:
            t_nic("dec.int_hs", codec.bundle.extras["int_hs"].entropy_parameters, lat.double(), codec.model.M)
        t_nic("dec.gs64", codec.synthesis_model.synthesis, y_hat.double(), qt)
        t_nic("dec.gs32", codec.model.synthesis, y_hat, qt)
        # CompressAI internals
        xc = cai_tensor(img)
        t_cai("enc.transforms", cai_transforms, net, xc)
        t_cai("enc.tiles", net.compress, xc)
        y_cai = t_cai("dec.entropy", cai_entropy_decode, net, out["strings"], out["shape"])
        t_cai("dec.gs32", net.g_s, y_cai)
        if k:
            info["bpp"][0] += len(stream) * 8 / (h * w) / len(images)
            info["bpp"][1] += sum(len(s[0]) for s in out["strings"]) * 8 / (h * w) / len(images)
            info["psnr"][0] += psnr(rec_nic, img) / len(images)
            info["psnr"][1] += psnr(rec_cai, img) / len(images)
    return nic, cai, info


def report(results: list[tuple[str, int, Timer, Timer, dict]], mp: float, n: int) -> None:
    def rate(t: Timer, stage: str) -> str:
        return f"{mp / t.get(stage):6.2f} ({mp / t.get(stage, True):6.2f})"

    print(f"\nThroughput, {n} Kodak images ({mp:.2f} MP); MP/s by wall clock (by process CPU time); "
          "ratio > 1: nicbeam faster;\nbpp: nicbeam's whole stream (header included), CompressAI's strings")
    print(f"{'model':<21}{'q':>2}  {'impl':<11}{'encode MP/s':>17}{'decode MP/s':>17}{'bpp':>8}{'PSNR':>7}")
    for fam, q, nic, cai, info in results:
        for i, (name, t) in enumerate((("nicbeam", nic), ("compressai", cai))):
            print(f"{fam if i == 0 else '':<21}{q if i == 0 else '':>2}  {name:<11}{rate(t, 'enc'):>17}"
                  f"{rate(t, 'dec'):>17}{info['bpp'][i]:8.3f}{info['psnr'][i]:7.2f}")
        r = [f"{cai.get(s, c) / nic.get(s, c):.2f}" for s in ("enc", "dec") for c in (False, True)]
        print(f"{'':<23}{'ratio n/c':<11}{r[0] + ' (' + r[1] + ')':>17}{r[2] + ' (' + r[3] + ')':>17}")
        f = [f"{cai.get('dec', c) / nic.get('dec.fast', c):.2f}" for c in (False, True)]
        print(f"{'':<23}{'fast dec':<11}{'':>17}{rate(nic, 'dec.fast'):>17}  ratio n/c {f[0]} ({f[1]})"
              "  [precision='fast': float32 g_s]")

    for cpu in (False, True):
        _split_table(results, n, cpu)
    for fam, q, _, _, info in results:
        print(f"check {fam} q{q}: max|y_cai - y_nic| = {info['dy']:.2e}, max|g_s_cai - g_s_nic| (f32, same "
              f"y) = {info['dx']:.2e}; CompressAI keys not filled from nicbeam: {info['missing'] or 'none'}")


def _split_table(results: list[tuple[str, int, Timer, Timer, dict]], n: int, cpu: bool) -> None:
    clock = "process CPU time" if cpu else "wall clock"
    print(f"\nWhere the time goes, ms per image ({clock}); entropy = coder call minus transforms, "
          "other = whole codec minus its parts (can be < 0 by noise)")
    print(f"{'model':<21}{'q':>2}  {'impl':<11}| {'enc':>6}{'transf':>7}{'entropy':>8}{'(int_hs)':>9}{'other':>6}"
          f" | {'dec':>6}{'ent+h_s':>8}{'(int_hs)':>9}{'g_s f64':>8}{'g_s f32':>8}{'other':>6}")
    for fam, q, nic, cai, info in results:
        for i, (name, t) in enumerate((("nicbeam", nic), ("compressai", cai))):
            g = {s: 1000 * t.get(s, cpu) / n for s in ("enc", "enc.transforms", "enc.tiles", "enc.int_hs", "dec",
                                                   "dec.entropy", "dec.int_hs", "dec.gs64", "dec.gs32")}
            opt = {s: f"{g[s]:{w}.1f}" if s in t.total else f"{'-':>{w}}"
                   for s, w in (("enc.int_hs", 9), ("dec.int_hs", 9), ("dec.gs64", 8))}
            gs = g["dec.gs64"] if i == 0 else g["dec.gs32"]  # the precision each decoder really runs
            print(f"{fam if i == 0 else '':<21}{q if i == 0 else '':>2}  {name:<11}| {g['enc']:6.0f}"
                  f"{g['enc.transforms']:7.0f}{g['enc.tiles'] - g['enc.transforms']:8.0f}{opt['enc.int_hs']}"
                  f"{g['enc'] - g['enc.tiles']:6.0f} | {g['dec']:6.0f}{g['dec.entropy']:8.0f}{opt['dec.int_hs']}"
                  f"{opt['dec.gs64']}{g['dec.gs32']:8.0f}{g['dec'] - g['dec.entropy'] - gs:6.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=24, help="first N Kodak images")
    ap.add_argument("--qualities", default="1,8", help="comma-separated qualities 1..8")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for all timings")
    ap.add_argument("--repeats", type=int, default=1, help="per-image time = min over this many runs")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--kodak", type=Path, default=KODAK, help="folder of kodim*.png")
    args = ap.parse_args()

    from importlib.metadata import version

    from PIL import Image

    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.script deprecation inside compressai
    torch.set_num_threads(args.threads)
    paths = sorted(args.kodak.glob("kodim*.png"))[: args.images]
    images = [np.array(Image.open(p).convert("RGB")) for p in paths]
    mp = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
    cpu_model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print("command:", " ".join([sys.executable, *sys.argv]))
    print(f"python {platform.python_version()}, torch {torch.__version__}, compressai {version('compressai')}, "
          f"numpy {np.__version__}, constriction {version('constriction')}")
    print(f"cpu: {cpu_model}; os.cpu_count() = {os.cpu_count()}, usable = {len(os.sched_getaffinity(0))}; "
          f"torch threads = {torch.get_num_threads()}; load average at start = {os.getloadavg()[0]:.2f}")
    print(f"images: {len(images)} from {args.kodak}; qualities {args.qualities}; repeats {args.repeats}")

    results = []
    for fam in args.families.split(","):
        for q in (int(v) for v in args.qualities.split(",")):
            nic, cai, info = bench_one(fam, q, images, args.repeats)
            results.append((fam, q, nic, cai, info))
            print(f"  done {fam} q{q}", flush=True)
    report(results, mp, len(images))
    print(f"load average at end = {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
