"""The campaign files users copy (runs/*.toml): each loads into a valid CampaignPlan,
unknown keys are refused, and the command line runs one, its options over the file's."""
from __future__ import annotations

from pathlib import Path

import pytest

from evo_nos.cli.campaign import build_parser, main, plan_from_args
from evo_nos.cli.errors import EXIT_ERROR, EXIT_OK
from evo_nos.experiments.campaign import PLAN_KEYS, CampaignPlan, load_plan_file
from evo_nos.experiments.references import fitness_key
from evo_nos.fitness.factory import make_backend
from evo_nos.strategies import strategy_names
from mlflow_store import fresh_store

RUNS = Path(__file__).resolve().parent.parent / "runs"
FILES = sorted(RUNS.glob("*.toml"))
SMOKE = RUNS / "head-to-head-smoke.toml"


def plan_of(*argv) -> CampaignPlan:
    return plan_from_args(build_parser().parse_args(list(argv)))


def test_runs_holds_the_head_to_head_files():
    assert {p.name for p in FILES} >= {"head-to-head-cpu.toml", "head-to-head-smoke.toml"}
    assert (RUNS / "README.md").is_file()


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_run_file_loads_into_a_valid_plan(path):
    values = load_plan_file(path)
    assert set(values) <= set(PLAN_KEYS)
    plan = CampaignPlan(**values)
    assert set(plan.strategies) <= set(strategy_names())
    assert plan.budget >= 1 and plan.seeds
    # the header says how to run it
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert any(f"python -m evo_nos.campaign --config runs/{path.name}" in line
               for line in header), f"{path.name}: no run command in the comment header"


def test_the_head_to_head_files_hold_the_head_to_head():
    cpu = CampaignPlan(**load_plan_file(RUNS / "head-to-head-cpu.toml"))
    assert (cpu.strategies, cpu.seeds, cpu.preset, cpu.budget) == \
        (("evo", "rl", "random"), (0, 1, 2), "cpu", 40)
    smoke = CampaignPlan(**load_plan_file(SMOKE))
    assert (smoke.strategies, smoke.seeds, smoke.preset, smoke.budget) == \
        (("evo", "rl", "random"), (0,), "smoke", 4)
    # through the command line, with nothing given but the file
    assert plan_of("--config", str(SMOKE)) == smoke


def test_an_unknown_key_is_refused_naming_the_valid_keys(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('strategies = ["random"]\nbudgt = 3\n')
    with pytest.raises(ValueError) as err:
        load_plan_file(bad)
    message = str(err.value)
    assert "budgt" in message and "valid keys" in message
    assert all(repr(key) in message for key in PLAN_KEYS)
    assert main(["--config", str(bad)]) == EXIT_ERROR
    assert "budgt" in capsys.readouterr().err


def test_command_line_options_override_the_file(tmp_path):
    plan = plan_of("--config", str(SMOKE), "--budget", "3", "--seeds", "5", "7",
                   "--out", str(tmp_path), "--population", "4")
    assert plan.budget == 3 and plan.seeds == (5, 7) and plan.out == tmp_path
    assert plan.strategies == ("evo", "rl", "random") and plan.preset == "smoke"   # the file's
    assert plan.strategy_args == {"population": 4}
    assert plan.folder == tmp_path / "campaign-smoke-budget3"


def test_the_smoke_file_runs_from_the_command_line(tmp_path, capsys):
    uri = fresh_store(tmp_path / "mlflow")
    out = tmp_path / "out"
    code = main(["--config", str(SMOKE), "--out", str(out), "--tracking-uri", uri, "--quiet",
                 "--no-report", "--references", "none", "--fitness", "standin:powersign",
                 "--budget", "2"])
    printed = capsys.readouterr()
    assert code == EXIT_OK, printed.out + printed.err
    # --out, --budget and --fitness won (the stand-in replaces the file's preset, and the
    # folder and the logged preset say so)
    folder = out / "campaign-standin_powersign-budget2"
    assert sorted(p.name for p in folder.iterdir()) == \
        ["evo-seed0", "random-seed0", "rl-seed0"]           # strategies and seeds: the file's
    for name in ("evo", "rl", "random"):
        assert f"{name} seed 0" in printed.out
    assert printed.out.count(": finished, 2.0/2 trainings of compute") == 3, printed.out


def test_rule_settings_reach_the_plan_its_searches_and_the_fitness_key(tmp_path):
    plan = plan_of("--config", str(SMOKE), "--out", str(tmp_path),
                   "--set", "bias_correction=false", "--set", "population=4")
    assert plan.rule_settings == {"bias_correction": False}
    assert plan.strategy_args == {"population": 4}
    config = plan.config("evo", 0)
    assert config["rule_settings"] == {"bias_correction": False}
    assert "rule_settings" not in plan_of("--config", str(SMOKE)).config("evo", 0)
    backend = make_backend(dict(config, preset=plan.preset))
    assert backend.settings.bias_correction is False
    default = make_backend(dict(plan_of("--config", str(SMOKE)).config("evo", 0),
                                preset=plan.preset))
    assert fitness_key(backend.describe()) != fitness_key(default.describe())
    with pytest.raises(SystemExit, match="beta1 must be in"):
        plan_of("--config", str(SMOKE), "--set", "beta1=2")
