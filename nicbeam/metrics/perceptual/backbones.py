"""Feature trunks of AlexNet, VGG16 and MobileNetV2 with torchvision's exact module layout.

Written here in plain torch because torchvision does not import beside the PyTorch this project pins;
the layout (module indices, and so the ``state_dict`` keys ``features.<i>.*``) is torchvision's, so
its ImageNet checkpoints and the ``lpips`` package's load by key. Import this module only when a
perceptual metric is used: it imports torch.
"""

from __future__ import annotations

import torch
from torch import nn

#: Output channels of the five LPIPS taps of each trunk (lpips.pretrained_networks).
LPIPS_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
#: ``features`` index after which each LPIPS tap is taken (end of lpips' slice1..slice5, exclusive).
LPIPS_TAPS = {"alex": (2, 5, 8, 10, 12), "vgg": (4, 9, 16, 23, 30)}
#: Smallest image side the trunk's pooling up to the last tap accepts (smaller images: LPIPS undefined).
LPIPS_MIN_SIDE = {"alex": 31, "vgg": 16}

# torchvision.models.vgg cfg "D" (VGG16): channel counts, "M" = 2x2 max-pool.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# torchvision.models.mobilenetv2 inverted residual setting: expand ratio t, channels c, repeats n, stride s.
_MOBILENET_V2_CFG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                     (6, 160, 3, 2), (6, 320, 1, 1))
MOBILENET_V2_CHANNELS = 1280
VGG16_CHANNELS = 512


def alexnet_features() -> nn.Sequential:
    """``torchvision.models.alexnet().features`` (the "one weird trick" variant torchvision ships)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def vgg16_features() -> nn.Sequential:
    """``torchvision.models.vgg16().features`` (no batch norm): 13 convolutions, ReLUs and 5 max-pools."""
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = int(item)
    return nn.Sequential(*layers)


def _conv_bn_relu6(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` with BatchNorm2d and ReLU6 (children 0, 1, 2)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block: ``conv`` = [expand 1x1,] depthwise 3x3, linear 1x1 + BN."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(cin, hidden, kernel=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def mobilenet_v2_features() -> nn.Sequential:
    """``torchvision.models.mobilenet_v2().features`` (width 1.0): 19 stages ending in 1280 channels."""
    layers: list[nn.Module] = [_conv_bn_relu6(3, 32, stride=2)]
    channels = 32
    for t, c, n, s in _MOBILENET_V2_CFG:
        for i in range(n):
            layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
            channels = c
    layers.append(_conv_bn_relu6(channels, MOBILENET_V2_CHANNELS, kernel=1))
    return nn.Sequential(*layers)
