"""A residual network small enough to train, prune and export in a test, by class path (`toy_models.TinyResNet`)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TinyResNet(nn.Module):
    """stem → an identity residual block → a strided block with a 1×1 projection → pool → linear.

    Four prunable groups in the network's order: the stem's stream (stem + block 1's second conv,
    tied by the add), block 1's first conv, block 2's first conv, block 2's stream (its second conv
    + the projection, tied by the add).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        self.b1_conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.b1_bn1 = nn.BatchNorm2d(width)
        self.b1_conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.b1_bn2 = nn.BatchNorm2d(width)
        self.b2_conv1 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.b2_bn1 = nn.BatchNorm2d(2 * width)
        self.b2_conv2 = nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False)
        self.b2_bn2 = nn.BatchNorm2d(2 * width)
        self.b2_proj = nn.Conv2d(width, 2 * width, 1, stride=2, bias=False)
        self.b2_proj_bn = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        x = F.relu(x + self.b1_bn2(self.b1_conv2(F.relu(self.b1_bn1(self.b1_conv1(x))))))
        y = self.b2_bn2(self.b2_conv2(F.relu(self.b2_bn1(self.b2_conv1(x)))))
        x = F.relu(y + self.b2_proj_bn(self.b2_proj(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
