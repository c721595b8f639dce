"""NIMA (Talebi & Milanfar 2018, "NIMA: Neural Image Assessment"): a no-reference score, the mean and
standard deviation of a 10-bin (scores 1..10) distribution predicted for one image.

Network, as in the paper: an ImageNet trunk whose classifier is replaced by dropout (p=0.75, inactive
at inference) and a 10-way fully connected layer with softmax. Two trunks, recognised from the head's
input width: MobileNetV2 (``1280``: torchvision's ``features``, global average pool) and VGG16
(``25088`` = 512x7x7: torchvision's ``features``, flattened). The image is resized to 224x224
(bilinear, antialiased) and normalised with the ImageNet mean and std, as the common PyTorch ports do.

Weights (nothing is downloaded): the trunk as torchvision names it (``features.*``) and the head as
``classifier.1.weight``/``bias`` of shape (10, C) (torchvision's classifier index 1, which the PyTorch
NIMA ports keep). Several files merge in order, so a torchvision ImageNet file followed by a head-only
file works (the head file's ``classifier.1`` replaces the 1000-way one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nicbeam.metrics._checks import check_rgb
from nicbeam.metrics.perceptual.backbones import (
    MOBILENET_V2_CHANNELS,
    VGG16_CHANNELS,
    mobilenet_v2_features,
    vgg16_features,
)
from nicbeam.metrics.perceptual.weights import PerceptualWeightsError, load_into, load_state

INPUT_SIDE = 224
BINS = 10
DROPOUT = 0.75
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Head input width of each trunk.
HEAD_INPUTS = {"mobilenet_v2": MOBILENET_V2_CHANNELS, "vgg16": VGG16_CHANNELS * 7 * 7}


class NIMANet(nn.Module):
    """Trunk + dropout + 10-way softmax head; :meth:`scores` gives (mean, std) per image."""

    def __init__(self, trunk: str = "mobilenet_v2") -> None:
        super().__init__()
        if trunk not in HEAD_INPUTS:
            raise ValueError(f"NIMA trunk must be one of {', '.join(HEAD_INPUTS)}, got {trunk!r}")
        self.trunk = trunk
        self.features = mobilenet_v2_features() if trunk == "mobilenet_v2" else vgg16_features()
        self.classifier = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(HEAD_INPUTS[trunk], BINS))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("bins", torch.arange(1, BINS + 1, dtype=torch.float64), persistent=False)
        self.digest = ""
        self.requires_grad_(False)  # inference only
        self.eval()

    def _tensor(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        resized = []
        for image in images:
            check_rgb(image)
            x = torch.from_numpy(np.array(image)).to(self.mean.device)  # a copy: decoded arrays may be read-only
            x = x.permute(2, 0, 1)[None].to(torch.float32) / 255.0
            resized.append(nn.functional.interpolate(x, size=(INPUT_SIDE, INPUT_SIDE), mode="bilinear",
                                                     align_corners=False, antialias=True))
        return (torch.cat(resized) - self.mean) / self.std

    @torch.inference_mode()
    def distribution(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """The (N, 10) score distributions of RGB uint8 images of any sizes."""
        h = self.features(self._tensor(images))
        h = h.mean(dim=(2, 3)) if self.trunk == "mobilenet_v2" else torch.flatten(h, 1)
        return torch.softmax(self.classifier(h).double(), dim=1)

    def scores(self, images: Sequence[np.ndarray]) -> list[tuple[float, float]]:
        """(mean, std) of each image's distribution over the scores 1..10 (higher mean = rated better)."""
        p = self.distribution(images)
        mean = (p * self.bins).sum(dim=1)
        std = torch.sqrt((p * (self.bins[None] - mean[:, None]) ** 2).sum(dim=1))
        return [(float(m), float(s)) for m, s in zip(mean.cpu(), std.cpu())]


def map_state(state: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(trunk name, state dict keyed as :class:`NIMANet`): the head's input width names the trunk."""
    head = state.get("classifier.1.weight")
    if head is None or head.ndim != 2:
        raise PerceptualWeightsError("NIMA: no classifier.1.weight (the 10-way head) in the weights")
    if head.shape[0] != BINS:
        raise PerceptualWeightsError(
            f"NIMA: classifier.1.weight has {head.shape[0]} outputs, expected {BINS} (an ImageNet classifier? "
            "give the NIMA head file after the trunk file)"
        )
    trunk = next((name for name, width in HEAD_INPUTS.items() if width == head.shape[1]), None)
    if trunk is None:
        raise PerceptualWeightsError(f"NIMA: head input width {head.shape[1]} fits neither MobileNetV2 "
                                     "(1280) nor VGG16 (25088)")
    mapped = {k: v for k, v in state.items() if k.startswith("features.") or k.startswith("classifier.1.")}
    return trunk, mapped


def load_nima(paths: Sequence[str], device: str = "cpu") -> NIMANet:
    """The NIMA network with weights from ``paths`` (merged in order), on ``device``, in eval mode."""
    state, digest = load_state(paths)
    trunk, mapped = map_state(state)
    net = NIMANet(trunk)
    load_into(net, mapped, f"NIMA ({trunk})")
    net.digest = digest
    return net.to(device).eval()


def random_nima_state(trunk: str = "mobilenet_v2", seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded random NIMA network's state, for tests and timing only: NOT an aesthetic model."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = NIMANet(trunk)
    return {k: v.contiguous() for k, v in model.state_dict().items()}
