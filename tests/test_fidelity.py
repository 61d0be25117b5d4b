"""python -m evo_nos.fidelity: the panel, the statistics, resuming a measurement."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from evo_nos.cli.fidelity import main
from evo_nos.core.known import resolve
from evo_nos.experiments import fidelity
from evo_nos.experiments.fidelity import load_scores, measure, panel, summarize
from evo_nos.fitness.screen import screen


def test_the_panel_is_fixed_valid_and_distinct():
    rules = panel(5, seed=3, known=("sgd", "adam"))
    assert rules == panel(5, seed=3, known=("sgd", "adam"))
    assert rules[:2] == [resolve("sgd").canonical, resolve("adam").canonical]
    assert len(rules) == 7 and rules != panel(5, seed=4, known=("sgd", "adam"))
    prints = [screen(r).fingerprint for r in rules]
    assert all(screen(r).valid for r in rules) and len(set(prints)) == 7


def scores(table: dict, seconds: dict) -> pd.DataFrame:
    rows = [{"preset": p, "seed": s, "rule": r, "fitness": v, "seconds": seconds[p],
             "images": 100.0, "status": "ok", "best_lr": 0.1}
            for p, rules in table.items() for r, values in rules.items()
            for s, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_summary_figures_on_a_fabricated_table():
    table = {"big": {"a": [0.1, 0.3], "b": [0.5, 0.5], "c": [0.8, 1.0]},
             "small": {"a": [0.2, 0.2], "b": [0.4, 0.6], "c": [0.9, 0.9]}}
    result = summarize(scores(table, {"big": 10.0, "small": 2.0}))
    assert result.reference == "big"                     # the most seconds per candidate
    big, small = (result.summary.set_index("preset").loc[p] for p in ("big", "small"))
    assert small["cost_ratio"] == 5.0 and big["cost_ratio"] == 1.0
    # same ranking of the means (a < b < c): rank correlations are exactly 1
    assert small["spearman"] == pytest.approx(1.0) and small["kendall"] == pytest.approx(1.0)
    assert small["top_rules"] == 1                        # only c is above big's median
    # pooled SD of "big": variances 0.02, 0, 0.02 -> sqrt(0.04 / 3)
    assert big["seed_sd"] == pytest.approx(math.sqrt(0.04 / 3))
    # SNR of "big": SD of the means (0.2, 0.5, 0.9) over the mean SE (0.1, 0, 0.1)/3
    assert big["snr"] == pytest.approx(np.std([0.2, 0.5, 0.9], ddof=1) / (0.2 / 3))
    with pytest.raises(ValueError, match="reference preset 'nope' was not measured"):
        summarize(scores(table, {"big": 10.0, "small": 2.0}), reference="nope")


def test_a_reversed_ranking_correlates_at_minus_one():
    table = {"x": {r: [v] for r, v in zip("abcdef", (0.1, 0.2, 0.3, 0.4, 0.5, 0.6))},
             "y": {r: [v] for r, v in zip("abcdef", (0.6, 0.5, 0.4, 0.3, 0.2, 0.1))}}
    summary = summarize(scores(table, {"x": 2.0, "y": 1.0})).summary.set_index("preset")
    assert summary.loc["y", "spearman"] == pytest.approx(-1.0)
    # every resample of a perfectly reversed ranking is reversed: the CI is [-1, -1]
    assert summary.loc["y", "spearman_low"] == pytest.approx(-1.0)
    assert summary.loc["y", "spearman_high"] == pytest.approx(-1.0)
    # above x's median: d, e, f, still reversed
    assert summary.loc["y", "top_rules"] == 3
    assert summary.loc["y", "spearman_top"] == pytest.approx(-1.0)
    assert summary.loc["y", "kendall"] == pytest.approx(-1.0)
    assert math.isnan(summary.loc["y", "seed_sd"])       # one seed: no seed-to-seed SD


def test_measure_writes_every_score_and_resumes_without_training_again(tmp_path, monkeypatch):
    rules = ["sgd", "adam"]
    first = measure(["smoke"], [0], tmp_path, rules=rules, progress=None)
    assert len(first) == 2 and list(first["preset"]) == ["smoke", "smoke"]
    assert len(load_scores(tmp_path)) == 2

    def refuse(*args, **kwargs):
        raise AssertionError("trained again")
    monkeypatch.setattr(fidelity.FitnessBackend, "evaluate", refuse)
    again = measure(["smoke"], [0], tmp_path, rules=rules, progress=None)
    assert again["fitness"].tolist() == first["fitness"].tolist()


def test_command_line_writes_the_tables_and_refuses_bad_input(tmp_path, capsys):
    assert main(["--presets", "smoke", "--seeds", "0", "--random", "0", "--known", "sgd,adam",
                 "--out", str(tmp_path)]) == 0
    assert "| smoke | 2 | 1 |" in capsys.readouterr().out
    rows = json.loads((tmp_path / "fidelity.json").read_text())
    assert rows[0]["preset"] == "smoke" and rows[0]["rules"] == 2
    for bad in (["--presets", "smoke", "--random", "-1"],     # refused while parsed
                ["--presets", "nosuch", "--out", str(tmp_path / "x")]):
        with pytest.raises(SystemExit) as info:
            main(bad)
        assert info.value.code == 2
    assert "unknown preset 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
