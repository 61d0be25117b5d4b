"""Step time of rule optimizers against torch.optim.Adam, at defaults and with foreach.

    python benchmarks/optimizer_step.py [--sets convnet resnet18 small transformer_norms]
                                        [--threads 1 2]

For each parameter set (the paper's child ConvNet, a ResNet-18-shaped set, many small
tensors, a transformer's layer norms and biases) and each thread count it times
``step()`` of torch's Adam (at its defaults: the for-loop on the CPU, foreach on CUDA;
foreach; for-loop), of the ``adam`` and ``powersign`` rules under RuleOptimizer and as
exported files, each at its defaults (``foreach=None``), on the per-tensor path
(``foreach=False``) and on the multi-tensor path (``foreach=True``), and the exported adam
rule with ``capturable=True``.  It prints the time per step and the ratios to torch's
``Adam()`` and ``Adam(foreach=True)``; the last lines check issue 24's goal: at defaults
the exported rules within 1.1x of ``Adam()``, and with ``foreach=True`` within 1.1x of
``Adam(foreach=True)``.  Gradients are fixed random tensors (no forward/backward).  Every
round times each optimizer once, interleaved; times are the median over ``--repeats``
rounds and ratios the median of each round's ratio, so a busy machine skews them less.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from evo_nos.optim.export import export
from evo_nos.optim.optimizer import RuleOptimizer


def convnet_shapes():
    """The paper's child network: two 3x3 conv layers of 32 filters with batch norm, linear head."""
    return [(32, 3, 3, 3), (32,), (32,), (32,), (32, 32, 3, 3), (32,), (32,), (32,),
            (10, 32), (10,)]


def resnet18_shapes():
    """The parameter shapes of torchvision's resnet18 (11.7M parameters, 62 tensors)."""
    shapes = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            first_in = cin if block == 0 else cout
            shapes += [(cout, first_in, 3, 3), (cout,), (cout,), (cout, cout, 3, 3), (cout,), (cout,)]
            if block == 0 and (stride != 1 or cin != cout):
                shapes += [(cout, cin, 1, 1), (cout,), (cout,)]
        cin = cout
    return shapes + [(1000, 512), (1000,)]


def small_shapes():
    """Many small tensors (e.g. a model of many tiny layers): 500 tensors of 64 entries."""
    return [(64,)] * 500


def transformer_norms_shapes():
    """A transformer's layer norms and biases (GPT-2 small: 12 layers, width 768): per
    layer two layer norms (weight, bias), the biases of the attention's qkv and output
    projections and of the MLP's two layers; the final layer norm.  98 tensors, 121k
    parameters: what an optimizer's param group "no weight decay" often holds."""
    d = 768
    layer = [(d,), (d,), (3 * d,), (d,), (d,), (d,), (4 * d,), (d,)]
    return layer * 12 + [(d,), (d,)]


SETS = {"convnet": convnet_shapes, "resnet18": resnet18_shapes, "small": small_shapes,
        "transformer_norms": transformer_norms_shapes}


def make_params(shapes, device):
    gen = torch.Generator().manual_seed(0)
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.randn(shape, generator=gen).to(device))
        p.grad = torch.randn(shape, generator=gen).to(device) * 1e-2
        params.append(p)
    return params


def exported(rule: str, folder: Path):
    py, _ = export(rule, folder / f"{rule}.py", class_name="Exported")
    spec = importlib.util.spec_from_file_location(f"bench_{rule}", py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Exported


def time_steps(opt, steps, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


PATHS = {"default": {}, "per-tensor": {"foreach": False}, "foreach": {"foreach": True}}


def run(set_name, device, steps, repeats, folder):
    """Time every optimizer on one parameter set; return {name: (median ms, median ratio
    to torch's Adam() at its defaults, median ratio to Adam(foreach=True))}, the ratios
    taken round by round (each round times every optimizer once, interleaved)."""
    shapes = SETS[set_name]()
    params = make_params(shapes, device)
    n = sum(p.numel() for p in params)
    opts = {
        "torch Adam default": torch.optim.Adam(params, 1e-3),
        "torch Adam foreach": torch.optim.Adam(params, 1e-3, foreach=True),
        "torch Adam for-loop": torch.optim.Adam(params, 1e-3, foreach=False),
    }
    for rule in ("adam", "powersign"):
        cls = exported(rule, folder)
        for path, kwargs in PATHS.items():
            opts[f"{rule} RuleOptimizer {path}"] = RuleOptimizer(params, rule, 1e-3, **kwargs)
            opts[f"{rule} exported {path}"] = cls(params, 1e-3, **kwargs)
        if rule == "adam":
            opts["adam exported foreach capturable"] = cls(params, 1e-3, foreach=True,
                                                           capturable=True)
    for opt in opts.values():          # warm up (state allocation, first-call costs)
        time_steps(opt, 3, device)
    rounds = {name: [] for name in opts}
    for _ in range(repeats):
        for name, opt in opts.items():
            rounds[name].append(time_steps(opt, steps, device))
    out = {}
    for name, times in rounds.items():
        out[name] = (statistics.median(times) * 1e3,
                     statistics.median(t / b for t, b in zip(times, rounds["torch Adam default"])),
                     statistics.median(t / b for t, b in zip(times, rounds["torch Adam foreach"])))
    print(f"\n{set_name}: {len(params)} tensors, {n:,} parameters, {device}")
    print(f"  {'optimizer':34s} {'ms/step':>9s} {'vs Adam()':>10s} {'vs Adam(foreach=True)':>22s}")
    for name, (ms, to_default, to_foreach) in out.items():
        print(f"  {name:34s} {ms:9.3f} {to_default:9.2f}x {to_foreach:21.2f}x")
    return out


GOAL = 1.1     # issue 24: at most 1.1x torch's Adam, defaults against defaults, foreach too


def measure(args, device, threads):
    """Every set at ``threads`` torch threads; print the goal's lines; whether it is met."""
    torch.set_num_threads(threads)
    print(f"\n==== torch {torch.__version__}, {threads} thread(s), median of {args.repeats} "
          f"interleaved rounds of {args.steps} steps ====")
    with tempfile.TemporaryDirectory() as folder:
        ratios = {name: run(name, device, args.steps, args.repeats, Path(folder))
                  for name in args.sets}
    print(f"\n{threads} thread(s), exported rules' step time / torch's Adam (goal: <= {GOAL}x; "
          f"medians of the rounds' ratios):")
    print(f"  {'set':18s} {'default / Adam()':>22s}   {'foreach / Adam(foreach=True)':>30s}")
    print(f"  {'':18s} {'adam':>10s} {'powersign':>11s}   {'adam':>18s} {'powersign':>11s}")
    met = True
    for name, r in ratios.items():
        default = [r[f"{rule} exported default"][1] for rule in ("adam", "powersign")]
        foreach = [r[f"{rule} exported foreach"][2] for rule in ("adam", "powersign")]
        met = met and max(default + foreach) <= GOAL
        print(f"  {name:18s} {default[0]:9.2f}x {default[1]:10.2f}x   "
              f"{foreach[0]:17.2f}x {foreach[1]:10.2f}x")
    return met


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch CPU thread counts, each measured in turn")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed rounds (the median is kept)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    met = True
    for threads in args.threads:
        met = measure(args, device, threads) and met
    print(f"\ngoal met on every set{' and thread count' * (len(args.threads) > 1)}: "
          f"{'yes' if met else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
