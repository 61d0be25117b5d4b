"""The source of a held-out task of a user's own, as tests write it to a FILE.py
(``python -m evo_nos.transfer --task FILE.py:NAME``): a tiny XOR table and an MLP."""
import textwrap

BUILD = textwrap.dedent('''
    import torch
    from evo_nos.fitness.heldout import HeldOutTask, TaskSetup, TensorData, split3, seeded
    from evo_nos.fitness.models import TabularMLP

    def build(seed, device):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(300, 4, generator=g)
        y = (x[:, 0] * x[:, 1] > 0).long()
        return TaskSetup(TensorData(*split3(x, y, 200, 50), device),
                         model=lambda s: seeded(s, lambda: TabularMLP(4, 2, 8, 1), device))
''')
