"""python -m evo_nos.evaluate: one rule scored by hand, printed as Evaluation JSON."""
import json
import subprocess
import sys

import pytest

from evo_nos.cli.evaluate import main
from evo_nos.fitness.evaluation import Evaluation


def test_cli_prints_the_evaluation_as_json_for_a_known_name():
    proc = subprocess.run(
        [sys.executable, "-m", "evo_nos.evaluate", "--rule", "powersign", "--preset", "smoke",
         "--seed", "3", "--device", "cpu"],
        capture_output=True, text=True, timeout=300, check=True)
    ev = Evaluation.from_dict(json.loads(proc.stdout))
    assert ev.rule == "mul(exp(mul(sign_g, sign_m)), g)"
    assert ev.status == "ok" and ev.trainings == 1 and ev.fitness > 0.5
    assert len(ev.lr_scores) == 6
    assert "exp(sign(g)·sign(m̂))·g" in proc.stderr


def test_cli_reports_an_invalid_rule_without_training(capsys):
    assert main(["--rule", "w4", "--preset", "smoke", "--device", "cpu"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["status"] == "invalid" and ev["trainings"] == 0


def test_cli_bad_rule_string_exits_2_naming_the_token(capsys):
    with pytest.raises(SystemExit) as info:        # refused while the options are parsed
        main(["--rule", "mul(g, frob)", "--preset", "smoke"])
    assert info.value.code == 2
    assert "frob" in capsys.readouterr().err


def test_cli_unknown_preset_lists_the_presets(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--rule", "sgd", "--preset", "turbo"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "turbo" in err and "smoke" in err and "cpu" in err
