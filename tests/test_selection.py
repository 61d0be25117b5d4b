"""Program selection: the top k re-scored on a suite disjoint from the reporting one."""
import pandas as pd
import pytest

from evo_nos.experiments import selection
from evo_nos.experiments.transfer import load_suite
from evo_nos.fitness.protocol import Score


def test_the_selection_suite_is_the_reporting_kinds_on_other_data():
    chosen = selection.selection_suite("quick", schedule="cosine")
    reported = load_suite("quick")
    assert [t.name for t in chosen] == ["select-images", "select-sequence", "select-tabular"]
    assert [t.family for t in chosen] == [t.family for t in reported]
    assert all(a.data_seed != b.data_seed for a, b in zip(chosen, reported))
    assert all(t.schedule == "cosine" for t in chosen)


def test_select_crowns_the_best_mean_rank_and_keeps_both_scores(monkeypatch):
    tests = {("g", "a"): 0.5, ("g", "b"): 0.9, ("m", "a"): 0.7, ("m", "b"): 0.8,
             ("sign_g", "a"): 0.6, ("sign_g", "b"): 0.1}

    class Task:
        def __init__(self, name):
            self.name, self.data_seed = name, 0

        def build(self, seed, device):
            return None

    def fake(task, setup, rule):
        value = tests[rule, task.name]
        return Score(rule, "ok", 0.1, {}, (0, 1), (value, value), (0.0, 0.0), 1, 0.0)

    monkeypatch.setattr(selection, "score_optimizer", fake)
    fame = pd.DataFrame({"rank": [1, 2, 3, 4], "rule": ["sign_g", "g", "m", "v"],
                         "fitness": [0.9, 0.8, 0.7, 0.6], "fitness_se": [0.01, None, 0.02, 0]})
    frame = selection.select(fame, [Task("a"), Task("b")], top=3, echo=lambda *_: None)
    # ranks: a: m 1, sign_g 2, g 3; b: g 1, m 2, sign_g 3 -> m 1.5, g 2, sign_g 2.5
    assert list(frame["rule"]) == ["m", "g", "sign_g"]
    assert list(frame["mean_rank"]) == [1.5, 2.0, 2.5]
    assert list(frame["fitness"]) == [0.7, 0.8, 0.9]
    assert list(frame["selection_rank"]) == [1, 2, 3]
    assert list(frame["a"]) == [0.7, 0.5, 0.6]
    with pytest.raises(ValueError, match="top must be >= 1"):
        selection.select(fame, [Task("a")], top=0)
