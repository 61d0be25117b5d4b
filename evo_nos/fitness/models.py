"""Networks: the small child ConvNet every candidate rule trains, and a ResNet.

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

:class:`SmallResNet` is the larger network of the transfer check (a task with
``model = "resnet"``, see :data:`MODELS`), built and initialised the same way.
:class:`SequenceLSTM` and :class:`TabularMLP` are the held-out suite's recurrent and MLP
families (:mod:`evo_nos.fitness.heldout`); :func:`seeded` builds any module from a seed.
"""
from __future__ import annotations

import torch
from torch import nn

HEADS = ("flatten", "gap")
# a task's network (Task.model): the child ConvNet, or the transfer check's SmallResNet
MODELS = ("child", "resnet")


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


# -- a larger network for the transfer check (evo_nos.experiments.transfer) ---------------------------
class _BasicBlock(nn.Module):
    """conv3x3 · BN · ReLU · conv3x3 · BN, plus the input (1x1 conv + BN when the shape
    changes), then ReLU: the basic residual block."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A CIFAR-style ResNet: a 3x3 stem, three stages of basic blocks with widths
    ``width · (1, 2, 4)`` (the last two halve the resolution), global average pooling and
    a linear head.  ``blocks=(1, 1, 1)`` is an 8-layer ResNet (~78k parameters at width 16,
    about 4x the child's compute per image); (3, 3, 3) is ResNet-20."""

    def __init__(self, n_classes: int = 10, width: int = 16, blocks: tuple = (1, 1, 1)):
        super().__init__()
        if len(blocks) != 3 or min(blocks) < 1:
            raise ValueError(f"blocks must be three counts >= 1, got {blocks!r}")
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        layers, c_in = [], width
        for stage, count in enumerate(blocks):
            c_out = width * 2 ** stage
            for i in range(count):
                layers.append(_BasicBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.stages(self.stem(x)).mean(dim=(2, 3)))


def make_resnet(seed: int, *, n_classes: int = 10, width: int = 16, blocks: tuple = (1, 1, 1),
                device: str | torch.device = "cpu", channels_last: bool = True) -> SmallResNet:
    """A freshly initialised :class:`SmallResNet`; same seed, same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallResNet(n_classes, width, tuple(blocks))
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


# -- the held-out suite's other model families (evo_nos.fitness.heldout) --------------------------
class SequenceLSTM(nn.Module):
    """A recurrent sequence classifier: token embedding · one-layer LSTM · linear head on
    the last hidden state (so whatever decides the class must be carried through time).
    Input: int64 tokens [N, L]; output: logits [N, n_classes]."""

    def __init__(self, vocab: int, n_classes: int, embed: int = 32, hidden: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(self.embed(tokens))
        return self.classifier(h[-1])


class TabularMLP(nn.Module):
    """A plain MLP for tabular features: ``depth`` hidden layers of ``hidden`` ReLU units,
    then a linear head.  Input: float [N, n_features]; output: logits [N, n_classes]."""

    def __init__(self, n_features: int, n_classes: int, hidden: int = 64, depth: int = 2):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        layers, width = [], n_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


class TinyAttention(nn.Module):
    """A one-block transformer classifier: token and position embeddings · one pre-norm
    self-attention layer (``heads`` heads) and MLP, each residual · layer norm · linear
    head on the first position.  Input: int64 tokens [N, L]; output: logits [N, classes]."""

    def __init__(self, vocab: int, n_classes: int, length: int, dim: int = 32,
                 heads: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.randn(length, dim) * 0.1)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(dim) for _ in range(3))
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.classifier = nn.Linear(dim, n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position[:tokens.shape[1]]
        a = self.norm1(h)
        h = h + self.attention(a, a, a, need_weights=False)[0]
        h = h + self.mlp(self.norm2(h))
        return self.classifier(self.norm3(h[:, 0]))


def seeded(seed: int, build, device: str | torch.device = "cpu") -> nn.Module:
    """``build()`` (a module constructor) with torch's default init drawn from a forked
    CPU generator seeded with ``seed``, moved to ``device``: same seed, same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    return model.to(device)
