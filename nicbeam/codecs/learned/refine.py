"""Encoder-side latent refinement: optimise one image's latents for rate + lambda * distortion before coding.

The analysis transform is amortised (one network for all images), so ``g_a(x)`` is not the best latent for a
given image under the trained decoder and entropy model; optimising the latents of that image directly closes
part of that "amortisation gap" (Campos et al. 2019, "Content adaptive optimization for neural image
compression"; Yang, Bamler, Mandt 2020, "Improving inference for neural image compression"). Only the encoder
changes: the stream format, the decoder and its exactness are untouched, so refined streams decode with any
nicbeam build that has the same weights.

Quantisation is relaxed with Stochastic Gumbel Annealing (SGA, Yang et al. 2020): each latent is stochastically
rounded down or up with probabilities that depend on its distance to the two integers, through a Gumbel-softmax
whose temperature is annealed towards hard rounding, so rate and distortion are evaluated close to the values
the coder will actually see. Plain straight-through rounding was measured unstable here (the objective rose
after 10-25 Adam steps on kodim05), SGA decreased it monotonically.

No library implements SGA for arbitrary models (tensorflow-compression and CompressAI ship none), hence this
small module.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

#: Adam step size on the latents (units of one quantisation bin) up to the reference trade-off; 0.01 measured best
#: of 0.003 / 0.005 / 0.01 / 0.02 there.
LEARNING_RATE = 0.01
#: Above ``LR_REFERENCE_LAMBDA`` (the shipped quality 6) the step grows as ``(lambda / reference) ** LR_EXPONENT``:
#: high-rate latents gain from longer moves (see :func:`step_sizes`).
LR_REFERENCE_LAMBDA = 0.013
LR_EXPONENT = 0.6
TAU_START, TAU_MIN, TAU_DECAY = 0.5, 0.05, 4.0


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bfloat16 runs natively here: CPUs with AVX512-BF16 / AMX, CUDA GPUs that support it (elsewhere
    CPU bfloat16 is emulated and slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # torch's own check (private, so guarded)
        return bool(probe and probe())
    return False


def sga_round(v: torch.Tensor, tau: float, generator: torch.Generator | None) -> torch.Tensor:
    """Stochastic, differentiable rounding of ``v`` to floor(v) or floor(v) + 1 (SGA, Yang et al. 2020)."""
    lo = torch.floor(v).detach()
    frac = (v - lo).clamp(1e-4, 1 - 1e-4)
    logits = torch.stack([-torch.atanh(frac) / tau, -torch.atanh(1 - frac) / tau], dim=-1)
    u = torch.rand(logits.shape, generator=generator, device=v.device, dtype=v.dtype).clamp_(1e-10, 1 - 1e-10)
    gumbel = -torch.log(-torch.log(u))
    w = F.softmax((logits + gumbel) / tau, dim=-1)
    return lo + w[..., 1]


def temperature(step: int, steps: int) -> float:
    """Annealing schedule: TAU_START decaying exponentially over the run, floored at TAU_MIN."""
    return max(TAU_START * math.exp(-TAU_DECAY * step / max(steps, 1)), TAU_MIN)


def step_sizes(lmbda: torch.Tensor) -> torch.Tensor:
    """Each image's Adam step size (B,) for its trade-off ``lmbda`` (B,). Measured with ``mbt2018-mean`` on 3
    BSDS500 val images at 60 steps (``benchmarks/results/refine_learning_rate.txt``): the best constant step is
    0.01 at qualities 2 and 6 (lambda <= 0.013), 0.02 at quality 8, 0.03-0.05 at 9 and 0.05-0.08 at 10; the
    rule ``0.01 * max(1, lambda / 0.013) ** 0.6`` (0.022 / 0.033 / 0.048 there) follows it."""
    ratio = (lmbda / LR_REFERENCE_LAMBDA).clamp(min=1.0)
    return LEARNING_RATE * ratio**LR_EXPONENT


def refine_latents(
    y: torch.Tensor,
    x: torch.Tensor,
    *,
    center: torch.Tensor,
    lmbda: torch.Tensor,
    rate_bits: Callable[[torch.Tensor], torch.Tensor],
    synthesis: Callable[[torch.Tensor], torch.Tensor],
    steps: int,
    seed: int = 0,
) -> torch.Tensor:
    """Latents minimising ``bits / pixels + lambda * 255^2 * MSE`` per image, starting from ``y``.

    y (B, C, h, w): the analysis latents; x (B, 3, H, W) in [0, 1]: the images they code; center: what the
    coder rounds around (the means of a mean-scale model, else zeros): the coded symbols are
    ``round(y - center)``; lmbda (B,): each image's trade-off; rate_bits(y_tilde) -> (B,) bits of quantised
    latents; synthesis(y_tilde) -> reconstruction. Returns the refined continuous latents (detached), which
    the caller quantises exactly as it would ``y``, or ``y`` itself for an image whose objective (hard
    rounding) refinement did not lower. Images in a batch are optimised independently (the loss
    is a sum of per-image terms and Adam is element-wise).
    """
    if steps <= 0:
        return y
    pixels = x.shape[-2] * x.shape[-1]
    generator = torch.Generator(device=y.device).manual_seed(seed)
    center = center.detach()

    def objective(y_tilde: torch.Tensor) -> torch.Tensor:
        mse = ((synthesis(y_tilde).clamp(0, 1) - x) ** 2).mean(dim=(1, 2, 3))
        return rate_bits(y_tilde) / pixels + lmbda * 255.0**2 * mse

    # Adam moves each parameter by ~lr per step whatever its gradient's scale, so optimising u = v / step_size
    # with lr 1 moves v by ~step_size per step: one optimiser, a step size per image
    step_size = step_sizes(lmbda.to(y.dtype)).reshape(-1, *([1] * (y.dim() - 1)))
    with torch.enable_grad():
        u = ((y - center) / step_size).detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([u], lr=1.0)
        for step in range(steps):
            loss = objective(sga_round(u * step_size, temperature(step, steps), generator) + center).sum()
            (grad,) = torch.autograd.grad(loss, [u])
            opt.zero_grad(set_to_none=True)
            u.grad = grad
            opt.step()
    refined = (u * step_size).detach() + center
    # keep, per image, whichever of the two latents codes better once hard-rounded (SGA's last iterate is
    # almost always the better one, but nothing guarantees it)
    with torch.no_grad():
        before = objective(torch.round(y - center) + center)
        after = objective(torch.round(refined - center) + center)
    keep = (after <= before).reshape(-1, *([1] * (y.dim() - 1)))
    return torch.where(keep, refined, y).to(y.dtype)
