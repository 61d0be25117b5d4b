"""Child training on a GPU: packed against one-at-a-time and the conventional loop.

    python benchmarks/gpu_throughput.py                      # nos preset, synthetic images
    python benchmarks/gpu_throughput.py --data imagefolder:DIR --json out.json

For the ``nos`` protocol (45k/5k images at 32 px, batch 100; a candidate is 6 sweep
trainings of 1 epoch and a final run of 5 epochs = 4,950 optimizer steps), this times
``--steps`` optimizer steps of each way to train and prints, per way: child steps per
second, candidates per hour (child steps/s × 3600 / 4,950), (rule, lr) sweep trainings
per hour (candidates/h × 6) and peak GPU memory:

* **conventional**: the loop of public optimizer-search code: a ``DataLoader`` over the
  train images (``--loader-workers`` processes, random crop and flip per image on the
  CPU, pinned memory), the child on the GPU, ``torch.optim.Adam``, ``loss.item()`` every
  step;
* **one at a time**: :func:`evo_nos.fitness.train.train_run` (on-device data and
  augmentation, :class:`~evo_nos.optim.RuleOptimizer`, ``check_every`` host syncs);
* **packed, K per pack**: :func:`evo_nos.fitness.packed.train_pack` with K children
  (one grouped convolution per layer for all K, no host sync inside an epoch), for each
  K of ``--packs`` (``auto``: the size the backend picks from free memory).

Then scores: ``--rules`` (8 by default) scored by the protocol packed
(:func:`~evo_nos.fitness.packed.score_rules`) and one at a time
(:func:`~evo_nos.fitness.train.score_rule`) on a shortened protocol (``--equality-epochs``
sweep,final), and how far apart they are.  Images are synthetic by default: the rates do
not depend on what the pixels show; pass ``--data`` for CIFAR-10.  One run takes a few
minutes; the whole output also goes to ``--json`` when given.  With ``--device cpu
--preset smoke`` it runs anywhere (a check of the script, not a measurement).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from evo_nos.core.known import KNOWN, resolve
from evo_nos.fitness.models import make_child
from evo_nos.fitness.packed import Child, auto_pack, score_rules, train_pack
from evo_nos.fitness.tasks import load_task
from evo_nos.fitness.protocol import protocol_steps
from evo_nos.fitness.train import score_rule, task_data, train_run

RULES = "sgd;momentum;adam;rmsprop;powersign;addsign;mul(drop3(g), sign_m);div(adam, exp(w1))"


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_reset(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else 0.0


def timed(device, run) -> float:
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - start


def conventional(data, task, steps: int, workers: int) -> float:
    """Seconds for ``steps`` steps of the DataLoader + torch.optim.Adam loop."""
    from torch.utils.data import DataLoader, Dataset

    pad, size = task.translate, data.image_size
    mean, std = data.mean.flatten().cpu(), data.std.flatten().cpu()
    images, labels = data.train_x.cpu(), data.train_y.cpu()

    class Augmented(Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            x = F.pad(images[i].float().unsqueeze(0), (pad,) * 4, mode="replicate")[0]
            dy, dx = torch.randint(0, 2 * pad + 1, (2,)).tolist()
            x = x[:, dy:dy + size, dx:dx + size]
            if torch.rand(()) < 0.5:
                x = x.flip(2)
            return (x - mean.view(3, 1, 1)) / std.view(3, 1, 1), labels[i]

    loader = DataLoader(Augmented(), batch_size=task.batch_size, shuffle=True,
                        drop_last=True, num_workers=workers, pin_memory=True,
                        persistent_workers=workers > 0)
    model = make_child(0, image_size=size, n_classes=data.n_classes, width=task.width,
                       head=task.head, device=data.device, channels_last=task.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = iter(loader)
    next(batches)                                   # workers started before the clock

    def run():
        nonlocal batches
        for _ in range(steps):
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(loader)
                x, y = next(batches)
            x = x.to(data.device, non_blocking=True).contiguous(
                memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), y.to(data.device, non_blocking=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()

    return timed(data.device, run)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="nos")
    parser.add_argument("--data", default="synthetic",
                        help="synthetic (default), cifar10 or imagefolder:DIR")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=450,
                        help="optimizer steps per timing (450: one nos epoch, one sweep training)")
    parser.add_argument("--packs", default="8,32,64,auto", help="pack sizes (children)")
    parser.add_argument("--loader-workers", type=int, default=4)
    parser.add_argument("--rules", default=RULES, help="semicolon-separated rules of the "
                        "score check (known names or rule strings)")
    parser.add_argument("--equality-epochs", default="0.1,0.5",
                        help="sweep,final epochs of the score check's protocol")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible: run this on a GPU machine, or pass "
                         "--device cpu --preset smoke to check the script")
    task = load_task(args.preset, data=args.data)
    start = time.perf_counter()
    data = task_data(task, device)
    per_epoch = data.steps_per_epoch(task.batch_size)
    per_candidate = protocol_steps(task, per_epoch)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name}, torch {torch.__version__}; preset {task.name}: {data.n_train} train "
          f"images {data.image_size}px, batch {task.batch_size}, {len(task.lrs)} lrs, "
          f"{per_candidate} steps per candidate; data on the device in "
          f"{time.perf_counter() - start:.1f} s")
    report = {"device": name, "torch": torch.__version__, "preset": task.name,
              "data": args.data, "steps": args.steps, "steps_per_candidate": per_candidate,
              "ways": {}}
    epochs = args.steps / per_epoch
    rules = [resolve(r) for r in args.rules.split(";")]

    def record(way: str, child_steps: int, seconds: float, peak: float) -> None:
        rate = child_steps / seconds
        per_hour = 3600 * rate / per_candidate
        report["ways"][way] = {"child_steps_per_s": rate, "candidates_per_hour": per_hour,
                               "sweep_trainings_per_hour": per_hour * len(task.lrs),
                               "peak_gib": peak, "seconds": seconds}
        print(f"  {way:24s} {rate:9.0f} child steps/s  {per_hour:9.0f} candidates/h  "
              f"{per_hour * len(task.lrs):9.0f} (rule, lr) trainings/h  peak {peak:6.2f} GiB",
              flush=True)

    ways = [("conventional", None), ("one at a time", None)]
    ways += [(f"packed, {p} per pack", p) for p in args.packs.split(",")]
    for way, pack in ways:
        peak_reset(device)
        try:
            if way == "conventional":
                seconds = conventional(data, task, args.steps, args.loader_workers)
                record(way, args.steps, seconds, peak_gib(device))
                continue
            if pack is None:
                train_run(KNOWN["adam"], 1e-3, data, task, seed=0, epochs=5 / per_epoch)
                seconds = timed(device, lambda: train_run(KNOWN["adam"], 1e-3, data, task,
                                                          seed=0, epochs=epochs))
                record(way, args.steps, seconds, peak_gib(device))
                continue
            k = auto_pack(task.replace(pack="auto"), data) if pack == "auto" else int(pack)
            children = [Child(rules[i % len(rules)], task.lrs[i % len(task.lrs)], i)
                        for i in range(k)]
            train_pack(children, data, task, epochs=5 / per_epoch)      # warm-up
            seconds = timed(device, lambda: train_pack(children, data, task, epochs=epochs))
            record(way if pack != "auto" else f"packed, auto ({k}) per pack",
                   k * args.steps, seconds, peak_gib(device))
        except (RuntimeError, ValueError) as err:      # e.g. out of memory: report, go on
            print(f"  {way:24s} failed: {type(err).__name__}: {str(err)[:200]}", flush=True)
            report["ways"][way] = {"error": f"{type(err).__name__}: {err}"}
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if "one at a time" in report["ways"] and "error" not in report["ways"]["one at a time"]:
        base = report["ways"]["one at a time"]["child_steps_per_s"]
        best = max((w["child_steps_per_s"], n) for n, w in report["ways"].items()
                   if n.startswith("packed") and "error" not in w)
        print(f"best packed ({best[1]}) vs one at a time: {best[0] / base:.1f}x")
        report["best_packed_vs_one_at_a_time"] = best[0] / base

    sweep, final = (float(v) for v in args.equality_epochs.split(","))
    short = task.replace(sweep_epochs=sweep, final_epochs=final, pack="auto")
    jobs = [(rule, 500 + i) for i, rule in enumerate(rules)]
    packed_seconds = timed(device, lambda: report.setdefault(
        "packed_scores", score_rules(jobs, data, short)))
    alone_seconds = timed(device, lambda: report.setdefault(
        "alone_scores", [score_rule(rule, data, short, seed=s) for rule, s in jobs]))
    packed_scores, alone_scores = report.pop("packed_scores"), report.pop("alone_scores")
    gaps = [abs(a.fitness - b.fitness) for a, b in zip(packed_scores, alone_scores)]
    same = sum(a.fitness == b.fitness and a.best_lr == b.best_lr
               for a, b in zip(packed_scores, alone_scores))
    print(f"scores of {len(rules)} rules (protocol of {sweep:g} + {final:g} epochs), packed "
          f"vs one at a time: {same}/{len(rules)} identical, |difference| mean "
          f"{statistics.fmean(gaps):.4f}, max {max(gaps):.4f}; packed {packed_seconds:.1f} s, "
          f"one at a time {alone_seconds:.1f} s")
    for a, b in zip(packed_scores, alone_scores):
        print(f"    {a.fitness:.4f} (lr {a.best_lr})  {b.fitness:.4f} (lr {b.best_lr})  {a.rule}")
    report["scores"] = [{"rule": a.rule, "packed": a.fitness, "alone": b.fitness,
                         "packed_lr": a.best_lr, "alone_lr": b.best_lr}
                        for a, b in zip(packed_scores, alone_scores)]
    report["seconds"] = time.perf_counter() - start
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    print(f"done in {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
