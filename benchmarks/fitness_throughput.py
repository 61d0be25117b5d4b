"""How fast does the fitness backend train children?  Three ratios from one run.

    python benchmarks/fitness_throughput.py --data imagefolder:/work/cifar10

On the ``cpu`` preset's data (its train images, batch size and child network), one
torch thread each, this measures child-training images per second of:

* **ours**: :func:`evo_nos.fitness.train.train_run` -- on-device uint8 data, gather-based
  translate+flip augmentation, :class:`RuleOptimizer`, non-finite checks every step;
* **bare**: the same model and the same on-device tensors, batches by ``randperm`` and
  normalisation only (no augmentation), ``torch.optim.SGD``, no checks -- the floor;
* **conventional**: what public optimizer-search code does: ``torchvision`` ImageFolder
  + transforms (RandomCrop with padding, RandomHorizontalFlip, ToTensor, Normalize) +
  ``DataLoader`` (shuffle, ``--loader-workers`` worker processes, JPEGs decoded every
  epoch) and a per-parameter Python optimizer that walks the rule's expression tree at
  every step for every parameter.

Ratios: ours/bare with the ``sgd`` rule (the cost of the rule machinery and the data
path; goal: > 0.9), ours/conventional with ``powersign`` (goal: >= 2).  Each timing is
the median of ``--repeats`` interleaved repetitions (the machine may be shared).  Then
candidates scored per minute by :class:`FitnessBackend` on the full ``cpu`` preset,
serially and with ``--jobs`` loky workers.

Last, **packed against one-at-a-time**: the whole protocol of ``--rules`` scored by
:func:`evo_nos.fitness.train.score_rule` one rule after the other, and by
:func:`evo_nos.fitness.packed.score_rules` (every (rule, lr) child of the sweeps in packs,
then the final runs in packs), interleaved ``--repeats`` times; images/s, candidates/min,
and whether the Evaluations are equal.  ``--quick`` runs only this part, on the ``fast``
preset (any ``--data``, synthetic too; a few minutes on two cores)::

    python benchmarks/fitness_throughput.py --quick --data imagefolder:DIR

Its last line reads ``packed vs one-at-a-time: X.XXx images/s, scores equal: yes``.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import joblib
import torch
import torch.nn.functional as F

from evo_nos.fitness.backend import FitnessBackend, worker_data
from evo_nos.fitness.data import parse_data_spec
from evo_nos.fitness.models import make_child
from evo_nos.fitness.tasks import load_task
from evo_nos.fitness.packed import score_rules
from evo_nos.fitness.protocol import evaluate
from evo_nos.fitness.train import child_setup, score_rule, train_run
from evo_nos.core.known import KNOWN
from evo_nos.core.rules import Rule


# ---------------------------------------------------------------------------------------
# the bare loop: same model, same tensors, torch.optim.SGD
# ---------------------------------------------------------------------------------------
def bare_sgd(data, task, steps: int, lr: float, seed: int = 0) -> float:
    model = make_child(seed, image_size=data.image_size, n_classes=data.n_classes,
                       width=task.width, head=task.head, channels_last=task.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    bs = task.batch_size
    start = time.perf_counter()
    done = 0
    while done < steps:
        order = torch.randperm(data.n_train, generator=gen)
        for s in range(data.n_train // bs):
            idx = order[s * bs:(s + 1) * bs]
            loss = F.cross_entropy(model(data.normalise(data.train_x[idx])), data.train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - start


def ours(data, task, steps: int, rule: str, lr: float, seed: int = 0) -> float:
    epochs = steps / data.steps_per_epoch(task.batch_size)
    start = time.perf_counter()
    result = train_run(KNOWN[rule], lr, data, task.replace(eval_batch_size=task.batch_size),
                       seed=seed, epochs=epochs)
    elapsed = time.perf_counter() - start
    # train_run ends with a validation pass; time one and subtract it (bare has none)
    assert result.steps == steps and not result.diverged
    return elapsed - _validation_seconds(data, task)


def _validation_seconds(data, task) -> float:
    model = make_child(0, image_size=data.image_size, n_classes=data.n_classes,
                       width=task.width, head=task.head, channels_last=task.channels_last)
    start = time.perf_counter()
    evaluate(model, child_setup(task, data), batch_size=task.batch_size)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------
# the conventional implementation
# ---------------------------------------------------------------------------------------
_UNARY = {"exp": torch.exp, "neg": torch.neg, "sign": torch.sign}
_BINARY = {"mul": torch.mul, "add": torch.add, "sub": torch.sub}


class TreeWalkingOptimizer:
    """A per-parameter Python optimizer that interprets the rule tree at every step."""

    def __init__(self, params, rule: Rule, lr: float, beta1: float = 0.9):
        self.params, self.rule, self.lr, self.beta1 = list(params), rule, lr, beta1
        self.state = {}

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def _eval(self, node: Rule, env: dict) -> torch.Tensor:
        if not node.args:
            return env[node.op]
        args = [self._eval(a, env) for a in node.args]
        return (_UNARY[node.op] if len(args) == 1 else _BINARY[node.op])(*args)

    @torch.no_grad()
    def step(self):
        for p in self.params:
            g = p.grad
            st = self.state.setdefault(id(p), {"m": torch.zeros_like(p), "t": 0})
            st["t"] += 1
            st["m"].mul_(self.beta1).add_(g, alpha=1 - self.beta1)
            m_hat = st["m"] / (1 - self.beta1 ** st["t"])
            env = {"g": g, "m": m_hat, "sign_g": torch.sign(g), "sign_m": torch.sign(m_hat)}
            p.sub_(self.lr * self._eval(self.rule, env))


def conventional_loader(folder: str, task, workers: int):
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    data = worker_data(task, "cpu")
    mean = (data.mean.flatten() / 255).tolist()
    std = (data.std.flatten() / 255).tolist()
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=task.translate, padding_mode="edge"),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
    dataset = datasets.ImageFolder(os.path.join(folder, "train"), transform=transform)
    subset = Subset(dataset, list(range(0, len(dataset), max(1, len(dataset) // task.n_train)))
                    [:task.n_train])
    return DataLoader(subset, batch_size=task.batch_size, shuffle=True, drop_last=True,
                      num_workers=workers, persistent_workers=workers > 0)


def conventional(loader, task, steps: int, rule: str, lr: float, seed: int = 0) -> float:
    torch.manual_seed(seed)
    model = make_child(seed, width=task.width, head=task.head, channels_last=False)
    opt = TreeWalkingOptimizer(model.parameters(), KNOWN[rule], lr)
    start = time.perf_counter()
    done = 0
    while done < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------
def candidates_per_minute(task, rules, n_jobs: int) -> tuple[float, list]:
    backend = FitnessBackend(task, seed=0, n_jobs=n_jobs, device="cpu")
    start = time.perf_counter()
    with joblib.parallel_config(backend="loky"):
        evaluations = backend.evaluate([KNOWN[r] for r in rules])
    elapsed = time.perf_counter() - start
    assert all(e.trainings == 1 for e in evaluations)
    return 60.0 * len(rules) / elapsed, evaluations


def packed_against_alone(task, data, rules, repeats: int, packs) -> tuple[float, bool]:
    """Print images/s and candidates/min of the protocol one rule at a time and packed
    (one line per pack size in ``packs``); returns (best packed / alone ratio, whether
    every packed Evaluation equals the lone one)."""
    jobs = [(KNOWN[r], 1000 + i) for i, r in enumerate(rules)]

    def alone():
        return [score_rule(rule, data, task, seed=seed) for rule, seed in jobs]

    def packed(size):
        return lambda: score_rules(jobs, data, task.replace(pack=size))

    runs = {"one at a time": alone, **{f"packed, {p} per pack": packed(p) for p in packs}}
    timings = {name: [] for name in runs}
    scores = {}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            scores[name] = run()
            timings[name].append(time.perf_counter() - start)
    images = sum(e.steps for e in scores["one at a time"]) * task.batch_size

    def same(evaluations):
        return [{k: v for k, v in e.to_dict().items() if k != "seconds"} for e in evaluations]

    equal = all(same(v) == same(scores["one at a time"]) for v in scores.values())
    rate = {name: images / statistics.median(t) for name, t in timings.items()}
    print(f"protocol of {len(rules)} rules on the {task.name} preset ({images} images "
          f"trained per scoring, median of {repeats}):")
    for name, r in rate.items():
        print(f"  {name:22s} {r:8.0f} images/s  {60 * len(rules) * r / images:6.2f} "
              f"candidates/min  (runs: {', '.join(f'{t:.1f}' for t in timings[name])} s)")
    best = max(r for name, r in rate.items() if name != "one at a time")
    return best / rate["one at a time"], equal


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="imagefolder:/work/cifar10",
                        help="an imagefolder:DIR spec (the conventional loader reads DIR/train)")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--steps", type=int, default=60, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loader-workers", type=int, default=1,
                        help="DataLoader worker processes of the conventional loop")
    parser.add_argument("--jobs", type=int, default=2, help="loky workers for candidates/min")
    parser.add_argument("--rules", default="sgd,adam,powersign,addsign",
                        help="rules scored for candidates/min")
    parser.add_argument("--skip-candidates", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="only packed against one-at-a-time, on the fast preset")
    parser.add_argument("--packs", default="auto,8",
                        help="pack sizes to time (children per pack; auto: the task's)")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    packs = [p if p == "auto" else int(p) for p in args.packs.split(",")]
    if args.quick:
        task = load_task("fast", data=args.data)
        ratio, equal = packed_against_alone(task, worker_data(task, "cpu"),
                                            args.rules.split(","), args.repeats, packs)
        print(f"packed vs one-at-a-time: {ratio:.2f}x images/s, scores equal: "
              f"{'yes' if equal else 'no'}")
        return
    spec = parse_data_spec(args.data)
    if spec.kind != "imagefolder":
        raise SystemExit("--data must be imagefolder:DIR (the conventional loader reads JPEGs)")
    task = load_task(args.preset, data=args.data)
    data = worker_data(task, "cpu")
    loader = conventional_loader(spec.path, task, args.loader_workers)
    n = args.steps
    images = n * task.batch_size
    print(f"preset {task.name}: {task.n_train} train images {task.image_size}px, batch "
          f"{task.batch_size}, {torch.get_num_threads()} torch thread, {os.cpu_count()} cores")

    timings = {"bare sgd": [], "ours sgd": [], "ours powersign": [],
               "conventional powersign": []}
    ours(data, task, 5, "sgd", 0.01)           # warm up kernels and allocator
    bare_sgd(data, task, 5, 0.01)
    conventional(loader, task, 5, "powersign", 0.01)
    for _ in range(args.repeats):
        timings["bare sgd"].append(bare_sgd(data, task, n, 0.01))
        timings["ours sgd"].append(ours(data, task, n, "sgd", 0.01))
        timings["ours powersign"].append(ours(data, task, n, "powersign", 0.01))
        timings["conventional powersign"].append(conventional(loader, task, n, "powersign",
                                                              0.01))
    rate = {k: images / statistics.median(v) for k, v in timings.items()}
    for k, v in rate.items():
        print(f"  {k:24s} {v:8.0f} images/s   (runs: "
              f"{', '.join(f'{images / t:.0f}' for t in timings[k])})")
    print(f"ours/bare (sgd):                 {rate['ours sgd'] / rate['bare sgd']:.3f}  "
          f"(overhead {100 * (1 - rate['ours sgd'] / rate['bare sgd']):.1f}%; goal < 10%)")
    print(f"ours/conventional (powersign):   "
          f"{rate['ours powersign'] / rate['conventional powersign']:.2f}x  (goal >= 2x)")

    if not args.skip_candidates:
        rules = args.rules.split(",")
        for jobs in (1, args.jobs):
            per_min, evs = candidates_per_minute(task, rules, jobs)
            print(f"candidates/min on the {task.name} preset, n_jobs={jobs}: {per_min:.2f}  ("
                  + ", ".join(f"{e.rule if len(e.rule) < 12 else r}={e.fitness:.3f}"
                              for r, e in zip(rules, evs))
                  + f"; {statistics.mean(e.seconds for e in evs):.1f} s per candidate)")
    if not math.isfinite(rate["ours sgd"]):
        raise SystemExit(1)
    ratio, equal = packed_against_alone(task, data, args.rules.split(","), args.repeats, packs)
    print(f"packed vs one-at-a-time: {ratio:.2f}x images/s, scores equal: "
          f"{'yes' if equal else 'no'}")


if __name__ == "__main__":
    main()
