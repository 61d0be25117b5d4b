"""Train a model with an exported optimizer in an ordinary PyTorch loop.

1. export a rule (a known one, or the best of a search's hall of fame) to a standalone
   ``.py`` file with ``evo_nos.export_optimizer``;
2. import that file: it needs only torch, so it can be copied into any project;
3. use it like any ``torch.optim`` optimizer: DataLoader, ``zero_grad``/``backward``/
   ``step``, and an lr scheduler.

::

    python examples/train_with_exported.py                        # PowerSign
    EVO_NOS_RULE=addsign-ld python examples/train_with_exported.py
    EVO_NOS_RUN=<mlflow run id> python examples/train_with_exported.py   # a search's best

Data: CIFAR-10 from ``EVO_NOS_CIFAR_DIR`` (``train/`` and ``test/`` image folders) when
set, else a generated 10-class image set.  ``EVO_NOS_EPOCHS`` (default 3) and
``EVO_NOS_IMAGES`` (training images, default 5000) size the run; ``EVO_NOS_LR`` sets the
learning rate (default: the rule's best lr in the search, else 0.01).
"""
import importlib.util
import json
import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from evo_nos import export_optimizer, load_hall_of_fame
from evo_nos.fitness.data import synthetic_images      # a stand-in for real images

RULE = os.environ.get("EVO_NOS_RULE", "powersign")
RUN = os.environ.get("EVO_NOS_RUN")              # an MLflow search run id (optional)
EPOCHS = int(os.environ.get("EVO_NOS_EPOCHS", "3"))
IMAGES = int(os.environ.get("EVO_NOS_IMAGES", "5000"))
CIFAR = os.environ.get("EVO_NOS_CIFAR_DIR")


def choose_rule() -> tuple[str, float | None]:
    """The rule to export and the lr it trained best with (None: unknown)."""
    if not RUN:
        return RULE, None
    best = load_hall_of_fame(RUN)[0]
    print(f"best rule of search {RUN}: {best['rule']} (fitness {best['fitness']:.4f})")
    return best["rule"], best.get("best_lr")


def load_optimizer_class(path: Path):
    """Import an exported file by path and return its optimizer class."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (name,) = module.__all__
    return getattr(module, name)


def data() -> tuple[TensorDataset, TensorDataset]:
    if CIFAR:
        from torchvision import datasets, transforms

        to_tensor = transforms.ToTensor()
        train = datasets.ImageFolder(os.path.join(CIFAR, "train"), transform=to_tensor)
        test = datasets.ImageFolder(os.path.join(CIFAR, "test"), transform=to_tensor)
        g = torch.Generator().manual_seed(0)
        pick = lambda ds, n: [ds[i] for i in torch.randperm(len(ds), generator=g)[:n]]  # noqa: E731
        stack = lambda items: TensorDataset(torch.stack([x for x, _ in items]),  # noqa: E731
                                            torch.tensor([y for _, y in items]))
        return stack(pick(train, IMAGES)), stack(pick(test, max(500, IMAGES // 5)))

    n_test = max(200, IMAGES // 5)
    x, y = synthetic_images(IMAGES + n_test, image_size=32, seed=0)
    x = x.float() / 255.0
    return TensorDataset(x[:IMAGES], y[:IMAGES]), TensorDataset(x[IMAGES:], y[IMAGES:])


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 10))


def main() -> None:
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    rule, search_lr = choose_rule()
    lr = float(os.environ.get("EVO_NOS_LR", search_lr or 0.01))
    with tempfile.TemporaryDirectory() as folder:
        py_file, json_file = export_optimizer(rule, Path(folder) / "found_optimizer.py")
        Optimizer = load_optimizer_class(py_file)
        update = json.loads(json_file.read_text())["update"]
        print(f"exported {py_file.name}: class {Optimizer.__name__}, {update}")

        train, test = data()
        loader = DataLoader(train, batch_size=100, shuffle=True,
                            generator=torch.Generator().manual_seed(0))
        net = model()
        steps = EPOCHS * len(loader)
        # total_steps: rules with a decay operand (ld, cd, rd) need the training length
        opt = Optimizer(net.parameters(), lr=lr, total_steps=steps)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        for epoch in range(EPOCHS):
            net.train()
            total = 0.0
            for x, y in loader:
                opt.zero_grad()
                loss = F.cross_entropy(net(x), y)
                loss.backward()
                opt.step()
                schedule.step()
                total += loss.item() * len(y)
            print(f"epoch {epoch + 1}/{EPOCHS}: train loss {total / len(train):.4f}")
        net.eval()
        with torch.no_grad():
            x, y = test.tensors
            accuracy = (net(x).argmax(1) == y).float().mean().item()
        print(f"test accuracy {accuracy:.4f} ({len(test)} images), lr {lr:g}")


if __name__ == "__main__":
    main()
