"""Bad command-line values: one line on stderr naming the option and the fix, exit status
2, no traceback, and nothing written to the working folder.

Almost every case runs the command's ``main(argv)`` in this process (the check happens
while the options are parsed, before any import-time or training cost); two cases run
``python -m evo_nos.X`` for real to see the exit status and stderr the user sees.
"""
import os
import subprocess
import sys

import pytest

from evo_nos.cli import campaign as campaign_cli
from evo_nos.cli import compare as compare_cli
from evo_nos.cli import evaluate as evaluate_cli
from evo_nos.cli import export as export_cli
from evo_nos.cli import fidelity as fidelity_cli
from evo_nos.cli import references as references_cli
from evo_nos.cli import run as run_cli
from evo_nos.cli import transfer as transfer_cli
from evo_nos.cli.errors import EXIT_ERROR, EXIT_INTERRUPTED, guarded
from evo_nos.cli.option_types import MAX_SPACE_BINARY
from evo_nos.cli.options import validate_search_args
from evo_nos.core.rules import MAX_RULE_DEPTH, Rule, RuleSyntaxError
from evo_nos.operators.space import SearchSpace

DEEP_UNARY = "neg(" * 400 + "g" + ")" * 400
DEEP_BINARY = "add(" * 300 + "g" + ", m)" * 300


def unary_chain(depth: int) -> str:
    """A rule ``depth`` levels deep: neg(neg(... g ...))."""
    return "neg(" * (depth - 1) + "g" + ")" * (depth - 1)


@pytest.fixture
def here(tmp_path, monkeypatch):
    """An empty working folder (with MLflow pointed at its default there)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def refused(main, argv, capsys, folder) -> str:
    """Run ``main(argv)``; check the one-line refusal; return that line."""
    before = sorted(os.listdir(folder))
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == EXIT_ERROR
    assert out == ""
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    line = err.rstrip("\n")
    assert line.startswith("error: ") and line.endswith(" (see --help)"), line
    assert sorted(os.listdir(folder)) == before, "the refused command left files behind"
    return line


# -- python -m evo_nos.run --------------------------------------------------------------------
@pytest.mark.parametrize("argv, expected", [
    (["--budget", "0"], "--budget expects a positive integer, got '0'"),
    (["--budget", "-1"], "--budget expects a positive integer, got '-1'"),
    (["--batch-size", "0"], "--batch-size expects a positive integer, got '0'"),
    (["--hall-of-fame", "0"], "--hall-of-fame expects a positive integer, got '0'"),
    (["--n-jobs", "0"], "--n-jobs expects a positive integer, or -1 for every core, got '0'"),
    (["--n-jobs", "-2"], "--n-jobs expects a positive integer"),
    (["--seed", "-1"], "--seed expects an integer >= 0, got '-1'"),
    (["--time-limit", "-5"], "--time-limit expects a positive number, got '-5'"),
    (["--time-limit", "nan"], "--time-limit expects a positive number"),
    (["--max-binary", "-1"], f"--max-binary expects an integer from 1 to {MAX_SPACE_BINARY}"),
    (["--max-binary", "0"], "--max-binary expects an integer from 1"),
    (["--max-binary", str(MAX_SPACE_BINARY + 1)], "--max-binary expects an integer from 1"),
    (["--funnel-seeds", "-1"], "--funnel-seeds expects an integer >= 0, got '-1'"),
    (["--hurdle", "2"], "--hurdle expects a quantile in (0, 1)"),
    (["--preset", "nope"], "--preset: unknown preset 'nope'; presets: ['cpu', 'fast', "
                           "'fast-cosine', 'mix', 'nos', 'smoke']"),
    (["--preset", "missing.toml"], "--preset: task file missing.toml does not exist"),
    (["--data", "foo"], "--data: unknown data source 'foo'"),
    (["--data", "imagefolder:/no/such/dir"],
     "--data: no folder '/no/such/dir': imagefolder:DIR expects DIR/train/<class>/*.jpg"),
    (["--operands", "foo"], "--operands: unknown operand function(s) ['foo']; choose from"),
    (["--unaries", "exp,frob"], "--unaries: unknown unary function(s) ['frob']"),
    (["--binaries", "mul,foo"], "--binaries: unknown binary function(s) ['foo']"),
    (["--root", "leaf"], "--root: invalid choice: 'leaf'"),
    (["--fitness", "foo"], "--fitness expects standin:TARGET"),
    (["--fitness", "standin:powersine"], "--fitness: standin target: 'powersine' is neither"),
    (["--set", "population=abc"], "--set population expects an integer, got 'abc'"),
    (["--set", "offspring=abc"], "--set offspring expects an integer or none, got 'abc'"),
    (["--offspring", "abc"], "--offspring expects an integer or none, got 'abc'"),
    (["--population", "2.5"], "--population expects an integer, got '2.5'"),
    (["--crossover-prob", "high"], "--crossover-prob expects a number, got 'high'"),
    (["--set", "mutation_weights=abc"], "--set mutation_weights expects a Python dict"),
    (["--set", "popsize=3"], "--set: unknown setting 'popsize'; strategy settings:"),
    (["--set", "population"], "--set expects KEY=VALUE, got 'population'"),
    (["--set", "beta1=1.5"], "--set: beta1 must be in"),
    (["--set", "bias_correction=maybe"], "--set bias_correction expects true or false"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_run_refuses_a_bad_value_in_one_line(argv, expected, here, capsys):
    line = refused(run_cli.main, argv + ["--out", str(here / "runs"), "--quiet"], capsys, here)
    assert expected in line
    assert not (here / "runs").exists() and os.listdir(here) == []


def test_run_lists_the_known_names(here, capsys):
    line = refused(run_cli.main, ["--operands", "foo"], capsys, here)
    assert all(f"'{name}'" in line for name in SearchSpace().operands)
    line = refused(run_cli.main, ["--preset", "turbo"], capsys, here)
    assert all(name in line for name in ("smoke", "cpu", "nos", "fast"))


def test_run_refuses_an_imagefolder_without_its_train_folder(here, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("images")              # exists, but has no train/
    line = refused(run_cli.main, ["--data", f"imagefolder:{folder}"], capsys, here)
    assert f"'{folder}' has no train/ folder" in line and "DIR/train/<class>/" in line


def test_run_refuses_an_out_folder_under_a_file(here, capsys):
    (here / "afile.txt").write_text("not a folder")
    line = refused(run_cli.main, ["--out", "afile.txt/runs"], capsys, here)
    assert "--out: 'afile.txt' is a file, not a folder" in line
    line = refused(run_cli.main, ["--out", "afile.txt"], capsys, here)
    assert "--out: 'afile.txt' is a file, not a folder" in line


def test_a_campaign_refuses_the_same_values(here, capsys):
    line = refused(run_cli.main, ["--strategy", "evo", "rl", "--budget", "0",
                                  "--out", str(here / "c")], capsys, here)
    assert "--budget expects a positive integer, got '0'" in line
    line = refused(campaign_cli.main, ["--n-jobs", "0", "--out", str(here / "c")], capsys,
                   here)
    assert "--n-jobs expects a positive integer" in line
    line = refused(run_cli.main, ["--seeds"], capsys, here)
    assert line == "error: --seeds: expected at least one argument (see --help)"


def test_the_valid_edge_values_are_taken():
    args = run_cli.build_parser().parse_args(
        ["--n-jobs", "-1", "--max-binary", str(MAX_SPACE_BINARY), "--offspring", "none",
         "--set", "offspring=7", "--set", "bias_correction=false", "--hurdle", "0.5",
         "--funnel-seeds", "0", "--time-limit", "0.5"])
    assert args.n_jobs == -1 and args.max_binary == MAX_SPACE_BINARY
    assert args.offspring is None and args.hurdle == 0.5 and args.funnel_seeds == 0
    assert args.settings == ["offspring=7", "bias_correction=false"]
    validate_search_args(args)                        # nothing to refuse


def test_the_space_of_the_largest_bound_still_parses_its_deepest_rule():
    # a unary over a binary over a unary ...: 2k + 2 levels for k binary functions
    k = MAX_SPACE_BINARY
    text = "exp(g)"
    for _ in range(k):
        text = f"exp(add({text}, g))"
    deepest = Rule.parse(text)
    assert deepest.n_binary == k and deepest.depth == 2 * k + 2 <= MAX_RULE_DEPTH
    assert SearchSpace(max_binary=k, root="slot").violation(deepest) is None


# -- checks that need several options (validate_search_args) ---------------------------------
@pytest.mark.parametrize("argv, campaign, expected", [
    (["--population", "1"], False, "strategy evo: population must be >= 2, got 1"),
    (["--tournament", "9", "--population", "4"], False, "tournament must be in 1..population"),
    (["--strategy", "random", "--set", "population=3"], False,
     "strategy 'random' has no setting(s) ['population']"),
    (["--seed-rules", "powersine"], False, "strategy evo: 'powersine' is neither"),
    (["--seed-rules", f"adam,{DEEP_UNARY}"], False,
     f"strategy evo: rule nested 401 deep; at most {MAX_RULE_DEPTH}"),
    (["--strategy", "rl", "--set", "hidden_size=0"], False, "hidden_size must be >= 1, got 0"),
    (["--strategy", "evo", "random", "--set", "hidden_size=5"], True,
     "no strategy of this campaign (evo, random) takes the setting(s) ['hidden_size']"),
    (["--strategy", "evo", "rl", "--tournament", "30"], True, "strategy evo: tournament"),
    (["--seeds", "0", "-1"], True, "--seeds expects integers >= 0, got -1"),
    (["--references", "adam,nope"], True, "--references: 'nope' is neither"),
])
def test_combined_values_are_refused_before_any_work(argv, campaign, expected, here, capsys):
    parser = (campaign_cli if campaign else run_cli).build_parser()
    args = parser.parse_args(argv + ["--out", str(here / "runs")])
    line = refused(lambda _: validate_search_args(args, campaign=campaign), [], capsys, here)
    assert expected in line


def test_resume_takes_its_settings_from_the_checkpoint_so_nothing_is_checked():
    args = run_cli.build_parser().parse_args(["--resume", "last", "--population", "1"])
    validate_search_args(args)


# -- the rule parser's depth bound -------------------------------------------------------------
def test_the_depth_bound_is_exact():
    assert Rule.parse(unary_chain(MAX_RULE_DEPTH)).depth == MAX_RULE_DEPTH
    with pytest.raises(RuleSyntaxError) as info:
        Rule.parse(unary_chain(MAX_RULE_DEPTH + 1))
    assert info.value.reason == f"rule nested {MAX_RULE_DEPTH + 1} deep; at most " \
                                f"{MAX_RULE_DEPTH}"


@pytest.mark.parametrize("text, depth", [(DEEP_UNARY, 401), (DEEP_BINARY, 301),
                                         ("neg(" * 20_000 + "g" + ")" * 20_000, 20_001),
                                         ("neg(" * 5_000, 5_001)])
def test_a_deep_rule_is_refused_before_anything_recurses(text, depth):
    with pytest.raises(RuleSyntaxError) as info:
        Rule.parse(text)
    assert info.value.reason == f"rule nested {depth} deep; at most {MAX_RULE_DEPTH}"
    assert "\n" not in info.value.brief and len(info.value.brief) < 100


@pytest.mark.parametrize("rule", [DEEP_UNARY, DEEP_BINARY])
def test_every_command_that_takes_a_rule_refuses_a_deep_one_in_one_line(rule, here, capsys):
    expected = f"deep; at most {MAX_RULE_DEPTH}"
    for main, argv in [
        (evaluate_cli.main, ["--rule", rule, "--preset", "smoke", "--device", "cpu"]),
        (export_cli.main, ["--rule", rule, "--out", str(here / "deep.py")]),
        (transfer_cli.main, ["--rule", rule, "--quick", "--no-log"]),
        (transfer_cli.main, ["--references", f"adam,{rule}", "--quick", "--no-log"]),
        (references_cli.main, ["--references", rule, "--preset", "smoke"]),
        (fidelity_cli.main, ["--presets", "smoke", "--known", rule]),
        (run_cli.main, ["--fitness", f"standin:{rule}", "--out", str(here / "r")]),
    ]:
        line = refused(main, argv, capsys, here)
        assert expected in line, line


def test_a_rule_error_names_the_token_in_one_line(here, capsys):
    line = refused(evaluate_cli.main, ["--rule", "mul(g, frob)"], capsys, here)
    assert line == ("error: --rule: unknown token 'frob' (position 7 of 'mul(g, frob)') "
                    "(see --help)")


# -- the other commands ------------------------------------------------------------------------
@pytest.mark.parametrize("main, argv, expected", [
    (evaluate_cli.main, ["--rule", "sgd", "--preset", "turbo"], "--preset: unknown preset"),
    (evaluate_cli.main, ["--rule", "sgd", "--data", "imagefolder:/no/such/dir"],
     "--data: no folder '/no/such/dir'"),
    (evaluate_cli.main, ["--rule", "sgd", "--seed", "-3"], "--seed expects an integer >= 0"),
    (evaluate_cli.main, ["--rule", "sgd", "--device", "tpu"], "--device expects auto, cpu"),
    (evaluate_cli.main, ["--preset", "smoke"], "the following arguments are required: --rule"),
    (export_cli.main, ["--rule", "powersign", "--out", "x.txt"], "--out expects a .py file"),
    (export_cli.main, ["--rule", "powersign", "--out", "x.py", "--rank", "0"],
     "--rank expects a positive integer, got '0'"),
    (export_cli.main, ["--rule", "sgd", "--out", "x.py", "--set", "beta1=1.5"],
     "--set: beta1 must be in"),
    (transfer_cli.main, ["--top", "0"], "--top expects a positive integer, got '0'"),
    (transfer_cli.main, ["--preset", "nope"], "--preset: unknown preset 'nope'; presets: "
                                              "['cpu', 'gpu', 'quick']"),
    (transfer_cli.main, ["--baselines", "torch-lion"], "--baselines: unknown baseline(s)"),
    (transfer_cli.main, ["--seeds", "0"], "--seeds expects a positive integer, got '0'"),
    (transfer_cli.main, ["--epochs", "-1"], "--epochs expects a positive number"),
    (transfer_cli.main, ["--report", "no-such.json"], "--report: no file 'no-such.json'"),
    (transfer_cli.main, ["--rule", "sgd,mul(g"], "--rule: unexpected end of rule"),
    (references_cli.main, ["--seeds", "-1", "--preset", "smoke"],
     "--seeds expects an integer >= 0"),
    (references_cli.main, [], "give --preset NAME or --fitness standin:TARGET"),
    (fidelity_cli.main, ["--presets", "smoke", "nosuch"], "--presets: unknown preset 'nosuch'"),
    (fidelity_cli.main, ["--presets", "smoke", "--random", "-1"],
     "--random expects an integer >= 0, got '-1'"),
    (fidelity_cli.main, ["--presets", "smoke", "--reference", "cpu"],
     "--reference 'cpu' is not one of the --presets measured: smoke"),
    (fidelity_cli.main, ["--presets", "smoke", "--n-jobs", "0"], "--n-jobs expects"),
    (compare_cli.main, ["--budget", "0"], "--budget expects a positive integer, got '0'"),
    (compare_cli.main, ["--strategies", "evo,foo"],
     "--strategies: unknown strategy 'foo'; strategies: evo, random, rl"),
])
def test_each_command_refuses_a_bad_value_in_one_line(main, argv, expected, here, capsys):
    assert expected in refused(main, argv, capsys, here)


def test_export_refuses_an_out_path_under_a_file(here, capsys):
    (here / "afile.txt").write_text("a file")
    line = refused(export_cli.main, ["--rule", "powersign", "--out", "afile.txt/x.py"],
                   capsys, here)
    assert line == "error: --out: 'afile.txt' is a file, not a folder (see --help)"
    (here / "folder.py").mkdir()
    line = refused(export_cli.main, ["--rule", "powersign", "--out", "folder.py"], capsys,
                   here)
    assert "--out: 'folder.py' is a folder, not a .py file" in line


def test_out_folders_under_a_file_are_refused_by_every_command(here, capsys):
    (here / "afile.txt").write_text("a file")
    for main, argv in [(transfer_cli.main, ["--quick", "--no-log"]),
                       (fidelity_cli.main, ["--presets", "smoke"]),
                       (compare_cli.main, [])]:
        line = refused(main, argv + ["--out", "afile.txt/sub"], capsys, here)
        assert "--out: 'afile.txt' is a file, not a folder" in line


# -- Ctrl+C ----------------------------------------------------------------------------------
def test_ctrl_c_is_one_line_and_exit_130(capsys):
    def main(argv=None):
        raise KeyboardInterrupt

    assert guarded(main)([]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "interrupted\n"


def test_ctrl_c_during_an_evaluation(monkeypatch, here, capsys):
    def interrupted(self, rules):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_cli.FitnessBackend, "evaluate", interrupted)
    assert evaluate_cli.main(["--rule", "sgd", "--preset", "smoke", "--device", "cpu"]) \
        == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "interrupted\n"


# -- for real: python -m ---------------------------------------------------------------------
def test_python_m_prints_one_line_and_exits_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", "evo_nos.run", "--budget", "0", "--out",
                           "runs"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == EXIT_ERROR
    assert proc.stdout == ""
    assert proc.stderr == "error: --budget expects a positive integer, got '0' (see --help)\n"
    assert os.listdir(tmp_path) == []


def test_export_says_exactly_this_for_a_deep_rule(here, capsys):
    line = refused(export_cli.main, ["--rule", DEEP_BINARY, "--out", "deep.py"], capsys, here)
    assert line == (f"error: --rule: rule nested 301 deep; at most {MAX_RULE_DEPTH} "
                    "(position 255) (see --help)")
