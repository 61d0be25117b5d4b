"""Noise handling: seeds and SE on scores, the re-evaluation funnel, the final stage,
hurdles and the compute budget."""
import dataclasses
import math
import statistics

import pytest

from evo_nos.fitness.backend import FitnessBackend, candidate_seed
from evo_nos.fitness.evaluation import HURDLED, OK, Evaluation
from evo_nos.fitness.tasks import load_task
from evo_nos.fitness.protocol import protocol_steps
from evo_nos.fitness.train import score_rule, task_data
from evo_nos.search import HallOfFame, Search, load_checkpoint
from evo_nos.search.defaults import FUNNEL, funnel_settings
from evo_nos.search.driver import CANDIDATE, FINAL, RESCORE


class ListStrategy:
    """Proposes the given rules in order (and tells nothing)."""
    name = "list"

    def __init__(self, rules):
        self.rules, self.i = list(rules), 0

    def ask(self, n):
        out = self.rules[self.i:self.i + n]
        self.i += n
        return out

    def tell(self, rules, evaluations):
        pass

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, state):
        self.i = state["i"]


class TableBackend:
    """Fitness from a table: ``scores[rule][k]`` is the rule's score on replicate k.
    Every protocol run costs 10 optimizer steps (steps_per_training = 10)."""
    steps_per_training = 10

    def __init__(self, scores):
        self.scores = scores
        self.cache = {}

    def evaluate(self, rules):
        out = []
        for rule in rules:
            value = self.scores[rule][0]
            ev = Evaluation(rule=rule, fitness=value, status=OK, trainings=1, steps=10,
                            fingerprint=rule, seed_fitness=[value])
            self.cache[rule] = ev
            out.append(ev)
        return out

    def rescore(self, evaluations, seeds):
        out = []
        for ev in evaluations:
            known = self.cache[ev.fingerprint]
            have = len(known.seed_fitness)
            values = self.scores[ev.rule][:max(seeds, have)]
            new = len(values) - have
            combined = dataclasses.replace(
                known, fitness=statistics.fmean(values), seeds=len(values),
                fitness_se=statistics.stdev(values) / math.sqrt(len(values)),
                seed_fitness=list(values))
            self.cache[ev.fingerprint] = combined
            out.append(dataclasses.replace(combined, trainings=new, steps=10 * new))
        return out

    def state_dict(self):
        return {"cache": {k: v.to_dict() for k, v in self.cache.items()}}

    def load_state_dict(self, state):
        self.cache = {k: Evaluation.from_dict(v) for k, v in state["cache"].items()}

    def describe(self):
        return {"fitness": "table"}


SCORES = {"g": [0.9, 0.5, 0.4, 0.3, 0.2], "m": [0.6, 0.6, 0.6, 0.6, 0.6],
          "v": [0.3, 0.2, 0.1, 0.0, 0.0], "adam": [0.7, 0.8, 0.9, 1.0, 1.0]}


# -- plain data ---------------------------------------------------------------------------
def test_evaluation_carries_seeds_and_se_and_reads_old_records():
    ev = Evaluation(rule="g", fitness=0.5, status=OK, seeds=2, fitness_se=0.1,
                    seed_fitness=[0.4, 0.6])
    assert Evaluation.from_dict(ev.to_dict()) == ev
    old = {"rule": "g", "fitness": 0.5, "status": "ok"}        # written before seeds existed
    assert Evaluation.from_dict(old).seeds == 1
    assert Evaluation.from_dict(old).fitness_se is None


def test_funnel_settings_fill_defaults_and_refuse_unknown_keys():
    assert funnel_settings({"funnel_seeds": 5}) == {**FUNNEL, "funnel_seeds": 5}
    with pytest.raises(ValueError, match="unknown funnel setting"):
        funnel_settings({"seeds": 3})


def test_a_rescored_rule_replaces_its_numbers_in_the_hall_of_fame():
    hof = HallOfFame(size=3)
    hof.update(Evaluation(rule="g", fitness=0.9, status=OK, fingerprint="G"))
    hof.update(Evaluation(rule="m", fitness=0.6, status=OK, fingerprint="M"))
    assert hof.rank_of(Evaluation(rule="g", fitness=0, status=OK, fingerprint="G")) == 1
    hof.update(Evaluation(rule="mul(g, 1)", fitness=0.5, status=OK, fingerprint="G", seeds=3,
                          fitness_se=0.05))
    assert [(e.rule, e.fitness, e.seeds) for e in hof.top] == [("m", 0.6, 1), ("g", 0.5, 3)]
    row = hof.rows()[1]
    assert (row["fitness_se"], row["seeds"]) == (0.05, 3)
    assert "± SE" in hof.markdown() and "seeds" in hof.table_text()


# -- the funnel in the driver -----------------------------------------------------------------
def test_funnel_rescores_the_top_k_charges_the_budget_and_ranks_by_the_mean():
    search = Search(ListStrategy(["g", "m", "v", "adam"]), TableBackend(SCORES), budget=10,
                    batch_size=1, progress=False, funnel_top=2, funnel_seeds=3)
    result = search.run()
    # g enters (0.9) and is re-scored: mean(0.9, 0.5, 0.4) = 0.6; m enters at 0.6 and is
    # re-scored to 0.6; v ranks 3rd (not re-scored); adam enters: (0.7+0.8+0.9)/3 = 0.8;
    # after adam the budget (10) is spent: 4 candidates + 3 x 2 re-scorings.
    top = {e.rule: (round(e.fitness, 12), e.seeds) for e in result.hall_of_fame.top}
    assert top == {"adam": (0.8, 3), "g": (0.6, 3), "m": (0.6, 3), "v": (0.3, 1)}
    assert result.best.rule == "adam"
    assert result.best.fitness_se == pytest.approx(statistics.stdev([0.7, 0.8, 0.9]) / 3 ** .5)
    assert result.trainings == 10 and result.compute == 10.0
    assert result.counts["rescored"] == 3
    assert [r["kind"] for r in result.history] == [
        CANDIDATE, RESCORE, CANDIDATE, RESCORE, CANDIDATE, CANDIDATE, RESCORE]
    assert [r["step"] for r in result.history] == [10, 30, 40, 60, 70, 80, 100]


def test_funnel_never_rescores_past_the_budget():
    search = Search(ListStrategy(["g", "m"]), TableBackend(SCORES), budget=2, batch_size=2,
                    progress=False, funnel_top=2, funnel_seeds=3)
    result = search.run()
    assert result.compute == 2.0 and result.counts["rescored"] == 0
    assert all(e.seeds == 1 for e in result.hall_of_fame.top)


def test_the_funnel_rescores_only_as_many_as_the_budget_holds_together():
    # g and m enter together with 3 trainings left; each needs 2 more seeds, so each fits
    # alone but not both: g (first in rank) is re-scored, m is not (before, both were: 6
    # trainings on a budget of 5); the last training goes to v
    search = Search(ListStrategy(["g", "m", "v"]), TableBackend(SCORES), budget=5,
                    batch_size=2, progress=False, funnel_top=2, funnel_seeds=3)
    result = search.run()
    assert result.trainings == 5 and result.compute == 5.0
    assert {e.rule: e.seeds for e in result.hall_of_fame.top} == {"g": 3, "m": 1, "v": 1}


def test_final_stage_rescores_the_finalists_outside_the_budget_and_resumes(tmp_path):
    search = Search(ListStrategy(["g", "m", "v"]), TableBackend(SCORES), budget=3,
                    batch_size=1, progress=False, funnel_seeds=1, final_top=2,
                    final_seeds=5, checkpoint_dir=tmp_path)
    result = search.run()
    top = {e.rule: (round(e.fitness, 12), e.seeds) for e in result.hall_of_fame.top}
    # before the final stage: g 0.9, m 0.6 (the top 2) -> 5 seeds each: g 0.46, m 0.6
    assert top == {"m": (0.6, 5), "g": (0.46, 5), "v": (0.3, 1)}
    assert result.compute == 3.0 and result.trainings == 3 + 8
    assert [r["kind"] for r in result.history].count(FINAL) == 2
    state = load_checkpoint(tmp_path)
    assert state["final_trainings"] == 8 and state["funnel"]["final_seeds"] == 5


def test_a_backend_without_rescore_runs_no_funnel():
    class NoRescore(TableBackend):
        rescore = None
    result = Search(ListStrategy(["g", "m"]), NoRescore(SCORES), budget=2, batch_size=1,
                    progress=False).run()
    assert result.counts["rescored"] == 0 and result.trainings == 2


def test_budget_counts_optimizer_steps_so_a_cheap_candidate_costs_less():
    class Cheap(TableBackend):
        def evaluate(self, rules):
            out = super().evaluate(rules)
            return [dataclasses.replace(e, steps=4) for e in out]   # stopped early
    search = Search(ListStrategy(["g", "m", "v", "adam"]), Cheap(SCORES), budget=2,
                    batch_size=1, progress=False, funnel_seeds=1)
    result = search.run()
    assert result.compute == pytest.approx(1.2)      # 3 candidates x 4 steps of 10
    assert result.trainings == 3
    # the budget is a cap: a 4th would start with less than a whole training left
    assert search.unspent == pytest.approx(0.8)


# -- the real backend: hurdles, seeds, compute ------------------------------------------------
def test_protocol_steps_of_the_smoke_preset():
    task = load_task("smoke")             # 1000 images / 100 = 10 steps per epoch
    assert protocol_steps(task, 10) == 6 * 10 + 2 * 10
    assert FitnessBackend(task).steps_per_training == 80


def test_replicate_seeds_differ_and_replicate_zero_is_the_original_seed():
    assert candidate_seed(0, "F", 0) == candidate_seed(0, "F")
    assert len({candidate_seed(0, "F", k) for k in range(4)}) == 4


def test_hurdle_threshold_is_the_quantile_of_the_sweeps_seen():
    backend = FitnessBackend("smoke", hurdle=0.5, hurdle_warmup=3)
    backend.sweeps = [0.1, 0.2]
    assert backend.threshold() is None           # not warmed up
    backend.sweeps = [0.1, 0.2, 0.6, 0.9]
    assert backend.threshold() == pytest.approx(0.4)
    with pytest.raises(ValueError, match="quantile in"):
        FitnessBackend("smoke", hurdle=1.5)


def test_a_candidate_below_the_hurdle_skips_its_final_run():
    task = load_task("smoke", n_train=200, n_val=100, lrs=[1e-3, 1e-2])
    data = task_data(task)
    full = score_rule("adam", data, task, seed=0)
    hurdled = score_rule("adam", data, task, seed=0, hurdle=1.01)
    assert hurdled.status == HURDLED and hurdled.best_lr == full.best_lr
    assert hurdled.fitness == max(full.lr_scores.values())
    assert hurdled.steps == 2 * 2 < full.steps == 2 * 2 + 2 * 2   # 2 steps/epoch


def test_rescore_adds_seeds_keeps_the_mean_and_charges_only_the_new_runs():
    backend = FitnessBackend(load_task("smoke", n_train=200, n_val=100, lrs=[1e-2]))
    first = backend.evaluate(["adam"])[0]
    again = backend.rescore([first], 3)[0]
    assert again.seeds == 3 and len(again.seed_fitness) == 3
    assert again.seed_fitness[0] == first.fitness
    assert again.fitness == pytest.approx(statistics.fmean(again.seed_fitness))
    assert again.fitness_se == pytest.approx(statistics.stdev(again.seed_fitness) / 3 ** .5)
    assert again.trainings == 2 and again.steps == 2 * first.steps
    cached = backend.evaluate(["adam"])[0]
    assert (cached.status, cached.fitness, cached.seeds) == ("cached", again.fitness, 3)
    assert backend.rescore([first], 3)[0].trainings == 0     # already has 3 seeds
