"""The baselines practitioners pick, as the protocol's optimizers.

Each is a torch optimizer factory ``(params, lr, total_steps) -> Optimizer``, tuned by the
same lr sweep and run on the same schedule as every rule (:mod:`evo_nos.fitness.protocol`):

* ``torch-adam``     -- ``torch.optim.Adam`` (betas 0.9, 0.999; eps 1e-8);
* ``torch-adamw``    -- ``torch.optim.AdamW``, decoupled weight decay 0.01 (torch's default);
* ``torch-sgdm``     -- ``torch.optim.SGD``, momentum 0.9;
* ``torch-nesterov`` -- ``torch.optim.SGD``, Nesterov momentum 0.9;
* ``lion``           -- Lion (Chen et al. 2023) from the ``lion-pytorch`` package: betas
  (0.9, 0.99), decoupled weight decay 0.1 (Lion's authors: a weight decay 3-10x AdamW's,
  since its lr is 3-10x smaller).

The weight decays are these optimizers' usual settings, not tuned: only the learning rate
is swept, for baselines and rules alike.
"""
from __future__ import annotations

from typing import Callable

import torch
from lion_pytorch import Lion

TORCH_ADAM, TORCH_ADAMW, TORCH_SGDM, TORCH_NESTEROV, LION = (
    "torch-adam", "torch-adamw", "torch-sgdm", "torch-nesterov", "lion")

BASELINES: dict[str, tuple[str, Callable]] = {
    TORCH_ADAM: ("torch.optim.Adam (betas 0.9, 0.999; eps 1e-8)",
                 lambda params, lr, total_steps: torch.optim.Adam(params, lr=lr)),
    TORCH_ADAMW: ("torch.optim.AdamW (betas 0.9, 0.999; weight decay 0.01)",
                  lambda params, lr, total_steps: torch.optim.AdamW(params, lr=lr,
                                                                    weight_decay=0.01)),
    TORCH_SGDM: ("torch.optim.SGD (momentum 0.9)",
                 lambda params, lr, total_steps: torch.optim.SGD(params, lr=lr, momentum=0.9)),
    TORCH_NESTEROV: ("torch.optim.SGD (Nesterov momentum 0.9)",
                     lambda params, lr, total_steps: torch.optim.SGD(
                         params, lr=lr, momentum=0.9, nesterov=True)),
    LION: ("Lion (lion-pytorch; betas 0.9, 0.99; weight decay 0.1)",
           lambda params, lr, total_steps: Lion(params, lr=lr, betas=(0.9, 0.99),
                                                weight_decay=0.1)),
}
DEFAULT_BASELINES = tuple(BASELINES)         # every one of them
LABELS = {TORCH_ADAM: "torch Adam", TORCH_ADAMW: "torch AdamW", TORCH_SGDM: "torch SGD+momentum",
          TORCH_NESTEROV: "torch SGD+Nesterov", LION: "Lion"}


def is_baseline(optimizer) -> bool:
    return isinstance(optimizer, str) and optimizer in BASELINES


def baseline_factory(name: str) -> Callable:
    """The factory of baseline ``name`` (one of :data:`BASELINES`)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; baselines: {list(BASELINES)}")
    return BASELINES[name][1]
