"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"),
version 0.1, built here in plain torch so it runs beside this project's PyTorch (the ``lpips`` package
imports torchvision, which does not import with it).

Network, as in ``lpips.LPIPS(net='alex'|'vgg', version='0.1')``: inputs scaled to [-1, 1], then the
ScalingLayer ``(x - shift) / scale``; five ReLU taps of an AlexNet or VGG16 trunk; each tap unit-
normalised over channels (eps 1e-10); squared difference; a non-negative 1x1 convolution ``lin<k>`` to
one channel; spatial mean; sum over the five taps. 0 for identical images, larger = more different.

Weights (nothing is downloaded): one file or several merged (see :mod:`.weights`), holding the trunk as
torchvision names it (``features.<i>.weight``/``bias``, e.g. ``alexnet-owt-7be5be79.pth``) or as a
saved ``lpips.LPIPS`` names it (``net.slice<k>.<i>.*``), and the heads as the ``lpips`` package ships
them (``lin<k>.model.1.weight`` in ``lpips/weights/v0.1/alex.pth``) or as ``lin<k>.weight``. The trunk
(AlexNet or VGG16) is recognised from the first convolution's shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nicbeam.metrics._checks import check_rgb, check_rgb_pair
from nicbeam.metrics.perceptual.backbones import (
    LPIPS_CHANNELS,
    LPIPS_MIN_SIDE,
    LPIPS_TAPS,
    alexnet_features,
    vgg16_features,
)
from nicbeam.metrics.perceptual.weights import PerceptualWeightsError, load_into, load_state

#: lpips.ScalingLayer constants (ImageNet statistics on the [-1, 1] scale).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10
_TRUNK_KEY = re.compile(r"^(?:net\.slice\d+\.)?(\d+)\.(weight|bias)$")
_HEAD_KEY = re.compile(r"^lin(\d)\.(?:model\.\d\.)?weight$")


class LPIPSNet(nn.Module):
    """The LPIPS v0.1 network over an AlexNet (``alex``) or VGG16 (``vgg``) trunk; see the module docstring."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in LPIPS_CHANNELS:
            raise ValueError(f"LPIPS trunk must be one of {', '.join(LPIPS_CHANNELS)}, got {net!r}")
        self.net = net
        self.taps = LPIPS_TAPS[net]
        self.features = alexnet_features() if net == "alex" else vgg16_features()
        for k, channels in enumerate(LPIPS_CHANNELS[net]):
            self.add_module(f"lin{k}", nn.Conv2d(channels, 1, kernel_size=1, bias=False))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.digest = ""
        self.requires_grad_(False)  # inference only
        self.eval()

    @property
    def min_side(self) -> int:
        return LPIPS_MIN_SIDE[self.net]

    @property
    def device(self) -> torch.device:
        return self.shift.device

    def _tensor(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        for image in images:
            check_rgb(image)
            if min(image.shape[:2]) < self.min_side:
                raise ValueError(f"LPIPS ({self.net}) needs both image sides >= {self.min_side} pixels, "
                                 f"got {image.shape[0]}x{image.shape[1]}")
        x = torch.from_numpy(np.ascontiguousarray(np.stack(images))).to(self.device)
        x = x.permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0
        # channels-last: the AlexNet trunk took 11 % less CPU time per 768x512 forward (interleaved A/B, 12 runs)
        return ((x - self.shift) / self.scale).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def feature_taps(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """The five channel-normalised taps of a batch of same-size RGB uint8 images."""
        h = self._tensor(images)
        taps, start = [], 0
        for end in self.taps:
            for layer in self.features[start:end]:
                h = layer(h)
            start = end
            taps.append(h / (torch.sqrt(torch.sum(h * h, dim=1, keepdim=True)) + _EPS))
        return taps

    @torch.inference_mode()
    def distance_from_features(self, a: list[torch.Tensor], b: list[torch.Tensor]) -> list[float]:
        """LPIPS per image between two batches of taps (broadcast: ``a`` may be one image's taps)."""
        total = None
        for k, (fa, fb) in enumerate(zip(a, b)):
            layer = getattr(self, f"lin{k}")((fa - fb) ** 2).mean(dim=(2, 3)).flatten()
            total = layer if total is None else total + layer
        return [float(v) for v in total.double().cpu()]

    def distance(self, reference: np.ndarray, distorted: np.ndarray) -> float:
        """LPIPS between two RGB uint8 images of one size (0 for identical)."""
        check_rgb_pair(reference, distorted)
        if np.array_equal(reference, distorted):
            return 0.0
        return self.distance_from_features(self.feature_taps([reference]), self.feature_taps([distorted]))[0]


def map_state(state: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(trunk name, state dict keyed as :class:`LPIPSNet`) from torchvision / lpips checkpoint keys."""
    mapped: dict[str, Any] = {}
    for key, value in state.items():
        name = key.removeprefix("features.")
        trunk = _TRUNK_KEY.match(name) if (key.startswith("features.") or key.startswith("net.slice")) else None
        if trunk:
            mapped[f"features.{trunk.group(1)}.{trunk.group(2)}"] = value
            continue
        head = _HEAD_KEY.match(key)
        if head:
            mapped[f"lin{head.group(1)}.weight"] = value
    first = mapped.get("features.0.weight")
    if first is None:
        raise PerceptualWeightsError(
            "LPIPS: no AlexNet/VGG16 trunk in the weights (expected torchvision's features.0.weight or "
            "lpips' net.slice1.0.weight)"
        )
    shape = tuple(first.shape)
    if shape == (64, 3, 11, 11):
        return "alex", mapped
    if shape == (64, 3, 3, 3):
        return "vgg", mapped
    raise PerceptualWeightsError(f"LPIPS: first convolution has shape {shape}; neither AlexNet nor VGG16")


def load_lpips(paths: Sequence[str], device: str = "cpu") -> LPIPSNet:
    """The LPIPS network with weights from ``paths`` (merged in order), on ``device``, in eval mode."""
    state, digest = load_state(paths)
    net_name, mapped = map_state(state)
    net = LPIPSNet(net_name)
    load_into(net, mapped, f"LPIPS ({net_name})")
    heads = [getattr(net, f"lin{k}").weight for k in range(len(net.taps))]
    if any(bool((w < 0).any()) for w in heads):
        raise PerceptualWeightsError("LPIPS: the lin heads have negative weights (trained heads are >= 0)")
    net.digest = digest
    return net.to(device, memory_format=torch.channels_last).eval()


def random_lpips_state(net: str = "alex", seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded random trunk with non-negative heads, for tests and timing only: NOT a perceptual metric."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LPIPSNet(net)
        for k in range(len(model.taps)):
            head = getattr(model, f"lin{k}")
            head.weight.data.abs_()
    return {k: v.contiguous() for k, v in model.state_dict().items()}
