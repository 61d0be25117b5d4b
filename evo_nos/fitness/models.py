"""Child networks: the small ConvNet every candidate rule trains.

The paper's child is "a small two layer 3x3 ConvNet with 32 filters, ReLU activations
and batch normalization after each convolutional layer"; its head is not specified.
Ours::

    conv3x3(3→32) · BN · ReLU · maxpool2      32×32 → 16×16
    conv3x3(32→32) · BN · ReLU · maxpool2     16×16 → 8×8
    head "flatten": flatten (32·8·8 = 2048) · linear(→10)        (default)
    head "gap":     global average pool (32) · linear(→10)

Why flatten by default: with only 32 channels a global average pool throws away where
things are, and the child then plateaus low, which compresses the differences between
rules that the search needs to see; the flattened head keeps the net tiny (~30k
parameters) while leaving room to learn.  Convolutions have no bias (BN follows).  The
network is built in ``channels_last`` layout, and its initialisation depends only on
``seed`` (torch's default init, drawn from a forked, seeded CPU generator, then moved to
the device), so every learning rate of a candidate starts from the same weights.
"""
from __future__ import annotations

import torch
from torch import nn

HEADS = ("flatten", "gap")


class ChildNet(nn.Module):
    def __init__(self, image_size: int = 32, n_classes: int = 10, width: int = 32,
                 head: str = "flatten"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose from {HEADS}")
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 (two 2x2 pools), got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.head = head
        features = width * (image_size // 4) ** 2 if head == "flatten" else width
        self.classifier = nn.Linear(features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1) if self.head == "flatten" else x.mean(dim=(2, 3))
        return self.classifier(x)


def make_child(seed: int, *, image_size: int = 32, n_classes: int = 10, width: int = 32,
               head: str = "flatten", device: str | torch.device = "cpu",
               channels_last: bool = True) -> ChildNet:
    """A freshly initialised child network; same seed, same weights, on any device."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ChildNet(image_size, n_classes, width, head)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
