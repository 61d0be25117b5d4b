"""The search driver: budget, hall of fame, checkpoints, interrupt and resume."""
import dataclasses
import json
import math
import pickle

import pytest
import torch

from evo_nos.core.algebra import readable, readable_latex
from evo_nos.fitness.evaluation import Evaluation
from evo_nos.operators.space import SearchSpace
from evo_nos.core.rules import Rule
from evo_nos.search import (
    CHECKPOINT_FILE, SUMMARY_FILE, HallOfFame, Search, load_checkpoint, rng_states,
    seed_everything, set_rng_states,
)
from evo_nos.search.checkpoint import LOCK_FILE, PREVIOUS_FILE
from evo_nos.strategies import make_strategy

from counting_backend import CountingBackend

TARGET = "mul(exp(mul(sign_g, sign_m)), g)"


def ev(rule, fitness, status="ok", fingerprint=None, lr_scores=None):
    return Evaluation(rule=rule, fitness=fitness, status=status, fingerprint=fingerprint,
                      trainings=int(status == "ok"), best_lr=0.1,
                      lr_scores=lr_scores or {0.1: fitness})


def evo(seed=0):
    return make_strategy("evo", SearchSpace(), seed, population=8, tournament=3)


# -- hall of fame ---------------------------------------------------------------------------
def test_hall_of_fame_keeps_the_k_best_distinct_rules_in_order():
    hof = HallOfFame(size=3)
    for rule, fitness in [("g", 0.5), ("m", 0.7), ("adam", 0.6), ("sign_g", 0.9), ("v", 0.1)]:
        hof.update(ev(rule, fitness))
    assert [e.rule for e in hof.top] == ["sign_g", "m", "adam"]
    assert hof.best.rule == "sign_g"


def test_hall_of_fame_ignores_failed_evaluations():
    hof = HallOfFame()
    assert not hof.update(ev("g", 0.0, status="invalid"))
    assert not hof.update(ev("m", 0.3, status="diverged"))
    assert not hof.update(ev("v", math.nan))
    assert hof.top == []


def test_behaviourally_equal_rules_are_one_entry_represented_by_the_simplest():
    hof = HallOfFame()
    hof.update(ev("mul(g, 1)", 0.8, fingerprint="F"))
    hof.update(ev("g", 0.8, status="cached", fingerprint="F"))
    hof.update(ev("keep(g, m)", 0.8, status="cached",
                  fingerprint="F"))
    assert [e.rule for e in hof.top] == ["g"]


def test_equal_fitness_ranks_simpler_then_earlier_first():
    hof = HallOfFame()
    for rule in ["mul(g, m)", "add(g, m)", "g"]:
        hof.update(ev(rule, 0.5))
    assert [e.rule for e in hof.top] == ["g", "mul(g, m)", "add(g, m)"]


def test_pareto_front_is_the_best_per_complexity_that_beats_all_simpler_rules():
    hof = HallOfFame(size=2)
    for rule, fitness in [("g", 0.5), ("exp(g)", 0.4), ("mul(g, m)", 0.7), ("add(g, m)", 0.6),
                          ("mul(exp(m), g)", 0.65), ("mul(exp(mul(sign_g, sign_m)), g)", 0.9)]:
        hof.update(ev(rule, fitness))
    assert [(Rule.parse(e.rule).complexity, e.rule, e.fitness) for e in hof.pareto()] == [
        (1, "g", 0.5), (3, "mul(g, m)", 0.7), (6, "mul(exp(mul(sign_g, sign_m)), g)", 0.9)]


def test_hall_of_fame_views_and_state():
    hof = HallOfFame(size=2)
    hof.update(ev(TARGET, 0.9))
    hof.update(ev("g", 0.5))
    row = hof.rows()[0]
    assert row == {"rank": 1, "rule": TARGET, "name": "powersign",
                   "math": Rule.parse(TARGET).math, "latex": Rule.parse(TARGET).latex,
                   "simplified": TARGET, "readable": readable(Rule.parse(TARGET)),
                   "readable_latex": readable_latex(Rule.parse(TARGET)),
                   "fitness": 0.9, "fitness_se": None, "seeds": 1, "best_lr": 0.1,
                   "complexity": 6, "simplified_complexity": 6, "variants": 1,
                   "status": "ok"}
    assert f"`{TARGET}`" in hof.markdown() and "Pareto front" in hof.markdown()
    assert "powersign" in hof.table_text()
    copy = HallOfFame(size=9)
    copy.load_state_dict(pickle.loads(pickle.dumps(hof.state_dict())))
    assert copy.rows() == hof.rows() and copy.pareto_rows() == hof.pareto_rows()


# -- budget ---------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 7])
def test_budget_is_child_trainings_and_never_exceeded(tmp_path, batch_size):
    backend = CountingBackend()
    result = Search(evo(), backend, budget=20, batch_size=batch_size, progress=False,
                    checkpoint_dir=tmp_path).run()
    assert result.status == "finished"
    assert result.trainings == len(backend.trained) == 20
    free = result.counts["cached"] + result.counts["invalid"]
    assert result.evaluations == 20 + free == len(result.history)
    assert result.history[-1]["step"] == 20
    assert [r["step"] for r in result.history] == sorted(r["step"] for r in result.history)


class RepeatStrategy:
    """Proposes the same rule for ever: every evaluation after the first is a cache hit."""

    name = "repeat"
    settings: dict = {}

    def ask(self, n):
        return [Rule.parse("g")] * n

    def tell(self, rules, evaluations):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_a_strategy_proposing_only_free_rules_stops_as_stalled():
    result = Search(RepeatStrategy(), CountingBackend(), budget=10, batch_size=1,
                    free_limit=25, progress=False).run()
    assert result.status == "stalled"
    assert result.trainings == 1 and result.counts["cached"] == 25


class SlowBackend(CountingBackend):
    def evaluate(self, rules):
        __import__("time").sleep(0.3)
        return super().evaluate(rules)


def test_time_limit_stops_between_batches():
    result = Search(evo(), SlowBackend(), budget=1000, time_limit=0.2, progress=False).run()
    # the first batch (0.3 s) ends past the limit: the search stops before the second
    assert result.status == "time_limit" and result.evaluations == 1


# -- checkpoints ------------------------------------------------------------------------------
def test_checkpoint_holds_everything_needed_to_continue(tmp_path):
    Search(evo(), CountingBackend(), budget=12, batch_size=3, progress=False,
           checkpoint_dir=tmp_path, config={"seed": 0}).run()
    state = load_checkpoint(tmp_path)
    assert state["status"] == "finished" and state["trainings"] == 12
    for key in ("strategy_state", "backend_state", "hall_of_fame", "rng", "history",
                "counts", "run_id", "config", "budget"):
        assert key in state
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    # the last checkpoint, the one before it, the summary, the (released) lock
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [CHECKPOINT_FILE, PREVIOUS_FILE, SUMMARY_FILE, LOCK_FILE])
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["trainings"] == 12 and summary["best_rule"] == state["history"][
        max(range(len(state["history"])), key=lambda i: state["history"][i]["fitness"])]["rule"]


def test_rng_states_round_trip():
    seed_everything(3)
    state = rng_states()
    a = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    set_rng_states(state)
    b = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def _uninterrupted(budget, batch_size, seed=0):
    backend = CountingBackend()
    result = Search(evo(seed), backend, budget=budget, batch_size=batch_size,
                    progress=False).run()
    return result, backend


@pytest.mark.parametrize("batch_size", [1, 3])
def test_interrupt_then_resume_retrains_nothing_and_matches_an_uninterrupted_run(
        tmp_path, batch_size):
    budget = 30
    reference, reference_backend = _uninterrupted(budget, batch_size)

    first = CountingBackend(interrupt_on_call=6)          # Ctrl+C inside the 6th batch
    interrupted = Search(evo(), first, budget=budget, batch_size=batch_size,
                         progress=False, checkpoint_dir=tmp_path).run()
    assert interrupted.status == "interrupted"
    assert load_checkpoint(tmp_path)["status"] == "interrupted"
    done_before = interrupted.trainings
    assert done_before == len(first.trained) > 0

    second = CountingBackend()
    resumed = Search.resume(tmp_path, evo(), second, progress=False).run()
    assert resumed.status == "finished" and resumed.trainings == budget
    # nothing trained twice: the two processes together trained exactly the budget,
    # and never the same rule twice
    assert len(first.trained) + len(second.trained) == budget
    assert not set(first.trained) & set(second.trained)
    # and the search is the one an uninterrupted run makes
    assert [r["rule"] for r in resumed.history] == [r["rule"] for r in reference.history]
    assert resumed.hall_of_fame.rows() == reference.hall_of_fame.rows()
    assert first.trained + second.trained == reference_backend.trained


def test_resume_refuses_another_strategy_or_a_smaller_budget(tmp_path):
    Search(evo(), CountingBackend(), budget=3, progress=False, checkpoint_dir=tmp_path).run()
    with pytest.raises(ValueError, match="is a 'evo' search, not 'random'"):
        Search.resume(tmp_path, make_strategy("random"), CountingBackend())
    with pytest.raises(ValueError, match="below this search's budget of 3 child trainings"):
        Search.resume(tmp_path, evo(), CountingBackend(), budget=2)


def test_a_grown_budget_trains_what_a_one_go_search_would(tmp_path):
    one_go = Search(evo(), CountingBackend(), budget=7, progress=False,
                    checkpoint_dir=tmp_path / "a", batch_size=1).run()
    Search(evo(), CountingBackend(), budget=4, progress=False, checkpoint_dir=tmp_path / "b",
           batch_size=1).run()
    grown = Search.resume(tmp_path / "b", evo(), CountingBackend(), budget=7, progress=False)
    assert grown.grown_from == 4 and grown.budget == 7 and not grown.cut_batch
    result = grown.run()
    assert result.trainings == one_go.trainings == 7
    assert [r["rule"] for r in load_checkpoint(tmp_path / "b")["history"]] == \
        [r["rule"] for r in load_checkpoint(tmp_path / "a")["history"]]


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path)


def test_progress_bar_shows_the_best_rule(capsys):
    Search(evo(), CountingBackend(), budget=5, progress=True).run()
    err = capsys.readouterr().err
    assert "evo" in err and "best" in err


# -- the budget is a cap ----------------------------------------------------------------------
class EarlyStoppers(CountingBackend):
    """Charged in steps (10 a training); every third trained candidate stops at 7 steps,
    as a diverged or hurdled one does."""

    steps_per_training = 10

    def evaluate(self, rules):
        out = []
        for evaluation in super().evaluate(rules):
            if evaluation.trainings:
                early = len(self.trained) % 3 == 0
                evaluation = dataclasses.replace(evaluation, steps=7 if early else 10)
            out.append(evaluation)
        return out


@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_search_never_spends_more_than_its_budget(batch_size):
    backend = EarlyStoppers()
    search = Search(make_strategy("random", SearchSpace(), 5), backend, budget=20,
                    batch_size=batch_size, progress=False)
    result = search.run()
    assert result.status == "finished"
    assert search.spent <= 20 * 10
    assert 0 <= search.unspent < 1                      # less than one whole training left
    assert result.compute == pytest.approx(20 - search.unspent)
    assert any(r["steps"] == 7 for r in result.history)   # some did stop early
    assert [r["compute"] for r in result.history] == sorted(r["compute"] for r in result.history)


def test_a_budget_of_whole_trainings_is_spent_exactly():
    search = Search(make_strategy("random", SearchSpace(), 5), CountingBackend(), budget=20,
                    batch_size=3, progress=False)
    result = search.run()
    assert result.compute == 20.0 and search.unspent == 0
