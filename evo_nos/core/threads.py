"""How many CPU threads torch uses, for the length of a ``with`` block."""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int):
    """Run with ``n`` intra-op CPU threads, then restore the caller's setting (0: leave
    torch's setting alone)."""
    before = torch.get_num_threads()
    if n <= 0 or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
