"""A small network and a fixed batch, shared by the optimizer tests."""
import torch


def small_net(seed=0):
    """A 4-8-3 tanh MLP initialised from ``seed``."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def batch(seed=1):
    """16 inputs of 4 features and their labels among 3 classes, from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, generator=gen), torch.randint(0, 3, (16,), generator=gen)
