"""Step time of rule optimizers against torch.optim.Adam(foreach=True).

    python benchmarks/optimizer_step.py [--sets convnet resnet18 small] [--threads 1]

For each parameter set (the paper's child ConvNet, a ResNet-18-shaped set, many small
tensors) it times ``step()`` of torch's Adam (foreach and for-loop), of the ``adam`` and
``powersign`` rules under RuleOptimizer and as exported files, each on the per-tensor and
the foreach path (and the exported adam rule with ``capturable=True``), and prints the
time per step and the ratio to torch's foreach Adam; the last lines sum up the adam
rule's ratio on each set.  Gradients are fixed random tensors (no forward/backward);
timings are the best of ``--repeats`` interleaved rounds, so a busy machine inflates them
less.
"""
from __future__ import annotations

import argparse
import importlib.util
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


SETS = {"convnet": convnet_shapes, "resnet18": resnet18_shapes, "small": small_shapes}


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


def run(set_name, device, steps, repeats, folder):
    shapes = SETS[set_name]()
    params = make_params(shapes, device)
    n = sum(p.numel() for p in params)
    opts = {
        "torch Adam foreach": torch.optim.Adam(params, 1e-3, foreach=True),
        "torch Adam for-loop": torch.optim.Adam(params, 1e-3, foreach=False),
    }
    for rule in ("adam", "powersign"):
        cls = exported(rule, folder)
        for foreach in (False, True):
            path = "foreach" if foreach else "per-tensor"
            opts[f"{rule} RuleOptimizer {path}"] = RuleOptimizer(params, rule, 1e-3,
                                                                 foreach=foreach)
            opts[f"{rule} exported {path}"] = cls(params, 1e-3, foreach=foreach)
        if rule == "adam":
            opts["adam exported foreach capturable"] = cls(params, 1e-3, foreach=True,
                                                           capturable=True)
    for opt in opts.values():          # warm up (state allocation, first-call costs)
        time_steps(opt, 3, device)
    best = {name: float("inf") for name in opts}
    for _ in range(repeats):
        for name, opt in opts.items():
            best[name] = min(best[name], time_steps(opt, steps, device))
    base = best["torch Adam foreach"]
    print(f"\n{set_name}: {len(params)} tensors, {n:,} parameters, {device}")
    print(f"  {'optimizer':34s} {'ms/step':>9s} {'vs torch foreach Adam':>22s}")
    for name, seconds in best.items():
        print(f"  {name:34s} {seconds * 1e3:9.3f} {seconds / base:21.2f}x")
    return {name: seconds / base for name, seconds in best.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (best is kept)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {args.threads} thread(s), best of {args.repeats} x "
          f"{args.steps} steps")
    with tempfile.TemporaryDirectory() as folder:
        ratios = {name: run(name, device, args.steps, args.repeats, Path(folder))
                  for name in args.sets}
    print("\nadam rule, foreach=True, step time / torch.optim.Adam(foreach=True):")
    for name, r in ratios.items():
        print(f"  {name:9s} RuleOptimizer {r['adam RuleOptimizer foreach']:.2f}x, "
              f"exported {r['adam exported foreach']:.2f}x "
              f"(per-tensor path: {r['adam RuleOptimizer per-tensor']:.2f}x / "
              f"{r['adam exported per-tensor']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
