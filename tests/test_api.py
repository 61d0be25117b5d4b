"""The public API at the package top, and the command lines over it."""
import subprocess
import sys

import pytest
import torch

import evo_nos
from evo_nos import (FitnessBackend, Rule, RuleOptimizer, Search, SearchSpace, StandInBackend,
                     load_task, make_strategy)
from evo_nos import export_optimizer as export
from evo_nos.cli import export as export_cli

COMMANDS = ("run", "evaluate", "export", "compare", "transfer", "campaign", "references")


def test_every_public_name_is_there_and_named_in_all():
    for name in evo_nos.__all__:
        assert hasattr(evo_nos, name), name
    for name in ("Rule", "RuleOptimizer", "SearchSpace", "make_strategy", "FitnessBackend",
                 "StandInBackend", "Search", "load_task", "export_optimizer"):
        assert name in evo_nos.__all__
    assert set(evo_nos.__all__) <= set(dir(evo_nos))


def test_importing_the_package_imports_no_dependency_until_a_name_is_used():
    code = ("import sys, evo_nos; heavy = ('torch', 'mlflow', 'scipy', 'matplotlib', 'deap'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy "
            "or m.startswith('evo_nos.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_export_stays_the_function_when_the_command_line_is_imported():
    import evo_nos.export                 # the command line's shim: the module evo_nos.export

    assert callable(export) and export.__module__ == "evo_nos.optim.export"
    assert export_cli.main is not None
    assert evo_nos.export_optimizer is export
    assert evo_nos.export.main is export_cli.main


def test_a_search_from_the_public_api(tmp_path):
    space = SearchSpace(max_binary=2)
    strategy = make_strategy("random", space, seed=0)
    result = Search(strategy, StandInBackend("powersign"), budget=5, progress=False).run()
    assert result.status == "finished" and result.trainings == 5
    py, spec = export(result.best.rule, tmp_path / "Best.py")
    assert py.is_file() and spec.suffix == ".json"


def test_rule_optimizer_from_the_top_steps_like_sgd():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = RuleOptimizer([w], Rule.parse("g"), lr=0.5)
    w.grad = torch.tensor([2.0, 4.0])
    opt.step()
    assert w.tolist() == [0.0, -4.0]


def test_the_backend_from_the_top_takes_a_preset():
    backend = FitnessBackend(load_task("smoke"), seed=3)
    assert backend.task.name == "smoke" and backend.seed == 3


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_line_answers_help(command):
    done = subprocess.run([sys.executable, "-m", f"evo_nos.{command}", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"python -m evo_nos.{command}" in done.stdout
