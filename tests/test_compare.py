"""The head-to-head: reference scores, campaigns (run, interrupt, continue), the report."""
import json
import math
from pathlib import Path

import pytest

from evo_nos.cli.campaign import wants_campaign
from evo_nos.cli.compare import main
from evo_nos.experiments.campaign import CampaignPlan, run_campaign
import pandas as pd
from scipy.stats import mannwhitneyu

from evo_nos.core.tables import records, write_table
from evo_nos.experiments.compare import compare
from evo_nos.experiments.curves import MixedRunsError, SearchCurve, check_comparable
from evo_nos.experiments.rendering import SHOWN, markdown
from evo_nos.experiments.report import summarise, verdicts
from evo_nos.experiments.statistics import (BOOTSTRAP_SEED, bootstrap_interval,
                                            improvement_interval, probability_of_improvement)
from evo_nos.fitness.backend import FitnessBackend
from evo_nos.fitness.standin import StandInBackend
from evo_nos.fitness.tasks import load_task
from evo_nos.core.known import REFERENCE_NAMES, resolve
from evo_nos.operators.space import SearchSpace
from evo_nos.experiments.references import ReferenceScore, ReferenceSet, score_references
from evo_nos.search import Search
from evo_nos.strategies import make_strategy, strategy_names
from evo_nos.tracking import Tracker, find_runs, list_artifacts, load_table

from mlflow_store import fresh_store

FITNESS = "standin:powersign"
BUDGET = 10
STRATEGIES = tuple(s for s in ("evo", "rl", "random") if s in strategy_names())
SEEDS = (0, 1)


def quiet(*_):
    pass


def plan(tmp: Path, uri: str, **changes) -> CampaignPlan:
    values = dict(strategies=STRATEGIES, seeds=SEEDS, fitness=FITNESS, budget=BUDGET,
                  tracking_uri=uri, experiment="h2h", out=tmp / "runs", progress=False,
                  strategy_args={"population": 6, "tournament": 2}, hall_of_fame=3,
                  report_out=tmp / "report")
    values.update(changes)
    return CampaignPlan(**values)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """The tiny head-to-head, end to end: every strategy × seeds 0 1 on the stand-in
    fitness, then the references, then the report."""
    tmp = tmp_path_factory.mktemp("campaign")
    uri = fresh_store(tmp / "store")
    the_plan = plan(tmp, uri)
    return the_plan, run_campaign(the_plan, echo=quiet), uri, tmp


# -- the campaign ----------------------------------------------------------------------------
def test_campaign_runs_every_strategy_with_every_seed_on_one_budget(campaign):
    the_plan, result, _, _ = campaign
    assert result.status == "finished"
    assert [(s.strategy, s.seed) for s in result.searches] == [
        (strategy, seed) for seed in SEEDS for strategy in STRATEGIES]
    assert all(s.trainings == BUDGET and s.status == "finished" and s.how == "new"
               for s in result.searches)
    assert len(set(result.run_ids)) == len(STRATEGIES) * len(SEEDS)
    assert all((the_plan.checkpoint_dir(s.strategy, s.seed) / "checkpoint.pkl").is_file()
               for s in result.searches)


def test_references_are_scored_per_seed_by_the_same_backend(campaign):
    _, result, uri, _ = campaign
    assert [r.seed for r in result.references] == list(SEEDS)
    adam = StandInBackend("powersign").evaluate([resolve("adam")])[0].fitness
    for refs in result.references:
        assert list(refs.scores) == list(REFERENCE_NAMES)
        assert refs.fitness("adam") == pytest.approx(adam)
        assert refs.fitness("powersign") == pytest.approx(1.0)   # the stand-in's own target
    runs = find_runs("h2h", uri, kind="reference")
    assert sorted(r.tags["seed"] for r in runs) == ["0", "1"]
    assert all(r.tags["preset"] == FITNESS for r in runs)


def test_rerunning_a_finished_campaign_trains_nothing(campaign, monkeypatch):
    the_plan, first, _, _ = campaign

    class Refusing:
        def __init__(self, *a, **k):
            pass

        def describe(self):
            return StandInBackend("powersign").describe()

        def evaluate(self, rules):
            raise AssertionError("trained again")

    monkeypatch.setattr("evo_nos.experiments.campaign.make_backend", lambda config: Refusing())
    again = run_campaign(CampaignPlan(**{**the_plan.__dict__, "report": False}), echo=quiet)
    assert [s.how for s in again.searches] == ["done before"] * len(first.searches)
    assert again.run_ids == first.run_ids
    assert [r.run_id for r in again.references] == [r.run_id for r in first.references]
    assert all(r.scored == [] for r in again.references)


def test_an_interrupted_campaign_continues_where_it_stopped(tmp_path, monkeypatch):
    """Ctrl+C in the second search; the same command again finishes it in the same
    MLflow run and does not touch the first."""
    from evo_nos.fitness.factory import make_backend as real

    made = []

    class Interrupting:
        def __init__(self, inner, interrupt_on):
            self.inner, self.calls, self.interrupt_on = inner, 0, interrupt_on

        def evaluate(self, rules):
            self.calls += 1
            if self.calls == self.interrupt_on:
                raise KeyboardInterrupt
            return self.inner.evaluate(rules)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    def factory(config):
        made.append(config)
        return Interrupting(real(config), 3 if len(made) == 2 else None)

    monkeypatch.setattr("evo_nos.experiments.campaign.make_backend", factory)
    uri = fresh_store(tmp_path / "store")
    the_plan = plan(tmp_path, uri, strategies=("evo", "random"), seeds=(0,), budget=6,
                    references=(), report=False)
    first = run_campaign(the_plan, echo=quiet)
    assert first.status == "interrupted"
    assert [(s.strategy, s.status) for s in first.searches] == [
        ("evo", "finished"), ("random", "interrupted")]
    assert first.searches[1].trainings < 6

    second = run_campaign(the_plan, echo=quiet)
    assert second.status == "finished"
    assert [(s.strategy, s.how, s.status, s.trainings) for s in second.searches] == [
        ("evo", "done before", "finished", 6), ("random", "resumed", "finished", 6)]
    assert second.run_ids == first.run_ids


def test_a_checkpoint_folder_with_other_settings_is_refused(campaign):
    the_plan, _, _, _ = campaign
    other = CampaignPlan(**{**the_plan.__dict__, "data": "synthetic"})
    with pytest.raises(ValueError, match=r"other settings \(data"):
        run_campaign(other, echo=quiet)


def test_settings_reach_only_the_strategies_that_take_them(tmp_path):
    p = plan(tmp_path, "sqlite://", strategy_args={"population": 6})
    assert p.settings_for("evo") == {"population": 6}
    assert p.settings_for("random") == {}
    bad = plan(tmp_path, fresh_store(tmp_path / "s"), strategy_args={"populaton": 6})
    with pytest.raises(ValueError, match="populaton"):
        run_campaign(bad, echo=quiet)


def test_run_command_lines_with_several_strategies_or_seeds_are_campaigns():
    assert wants_campaign(["--strategy", "evo", "rl", "random", "--seeds", "0", "1", "2"])
    assert wants_campaign(["--strategy", "evo", "random"])
    assert wants_campaign(["--seeds", "0", "1"])
    assert not wants_campaign(["--strategy", "evo", "--seed", "3"])
    assert not wants_campaign([])


def test_the_run_command_with_several_strategies_runs_a_campaign(tmp_path, capsys):
    from evo_nos.cli.run import main as run_main

    uri = fresh_store(tmp_path / "store")
    code = run_main(["--strategy", "evo", "random", "--seeds", "0", "--fitness", FITNESS,
                     "--budget", "3", "--tracking-uri", uri, "--experiment", "cli",
                     "--out", str(tmp_path / "runs"), "--quiet", "--references", "adam",
                     "--hall-of-fame", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "[1/2] evo seed 0" in out and "[2/2] random seed 0" in out
    assert f"# Head-to-head: preset `{FITNESS}`, budget 3 child trainings" in out
    folder = tmp_path / "runs" / "campaign-standin_powersign-budget3"
    assert (folder / "report" / "comparison.md").is_file()
    assert sorted(r.tags["strategy"] for r in find_runs("cli", uri)) == ["evo", "random"]


# -- the report ------------------------------------------------------------------------------
def test_report_files_figures_and_table_exist(campaign):
    _, result, _, tmp = campaign
    report = result.report
    out = tmp / "report"
    for name in ("best_vs_trainings.png", "best_vs_time.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "comparison.md").read_text()
    for strategy in STRATEGIES:
        assert f"\n| {strategy} | {len(SEEDS)} | " in text
    assert "## Compute to reach the references" in text and "trainings to beat" not in text
    assert "## Is the difference real?" in text and "### Probability of improvement" in text
    for strategy in STRATEGIES:
        for ref in ("adam", "powersign"):
            assert f"\n| {strategy} | {ref} | " in text
    assert (out / "improvement.csv").is_file() and (out / "reach.json").is_file()
    assert "## References" in text and "`mul(exp(mul(sign_g, sign_m)), g)`" in text
    data = json.loads((out / "comparison.json").read_text())
    assert sorted(data["strategies"]) == sorted(STRATEGIES)
    assert len(data["improvement"]) == len(STRATEGIES) * (len(STRATEGIES) - 1)
    assert data["verdicts"] and all(v.endswith(".") for v in data["verdicts"])
    assert data["preset"] == FITNESS and data["budget"] == BUDGET
    assert sorted(r["run_id"] for r in data["runs"]) == sorted(result.run_ids)
    assert report.run_id == data["compare_run_id"]


def test_report_is_logged_as_its_own_mlflow_run(campaign):
    _, result, uri, _ = campaign
    (run,) = find_runs("h2h", uri, kind="compare")
    assert run.run_id == result.report.run_id
    assert run.tags["preset"] == FITNESS and run.params["budget"] == str(BUDGET)
    assert {"best_vs_trainings.png", "best_vs_time.png", "comparison.md", "comparison.json",
            "comparison_table.json", "improvement_table.json", "reach_table.json"} <= set(
        list_artifacts(run.run_id, uri))
    table = load_table(run.run_id, "comparison_table.json", uri)
    assert sorted(row["strategy"] for row in table) == sorted(STRATEGIES)
    evo = result.report.strategies["evo"]
    (row,) = [row for row in table if row["strategy"] == "evo"]
    assert row["best_mean"] == pytest.approx(evo.best_mean)
    assert row["ci_low"] == pytest.approx(evo.best_ci["ci_low"])
    reach = load_table(run.run_id, "reach_table.json", uri)
    assert [r["reached"] for r in reach if (r["strategy"], r["reference"]) == ("evo", "adam")] \
        == [evo.reach["adam"]["reached"]]
    improvement = load_table(run.run_id, "improvement_table.json", uri)
    assert {(r["strategy"], r["versus"]) for r in improvement} == {
        (a, b) for a in STRATEGIES for b in STRATEGIES if a != b}
    # its numbers are in those tables, not metrics that would each add a chart to the
    # experiment's chart view
    assert run.metrics == {}
    # reports and references are not searches
    assert sorted(r.run_id for r in find_runs("h2h", uri)) == sorted(result.run_ids)


def test_report_numbers_are_the_runs_numbers(campaign):
    _, result, _, _ = campaign
    for name, summary in result.report.strategies.items():
        finals = [s.best_fitness for s in result.searches if s.strategy == name]
        # (MLflow's tables keep 10 decimals)
        assert summary.best_mean == pytest.approx(sum(finals) / len(finals), abs=1e-9)
        assert summary.trainings_mean == BUDGET
        assert summary.best_per_seed == pytest.approx(finals, abs=1e-9)
    adam = result.report.references["adam"]
    assert adam["seeds"] == {0: pytest.approx(adam["mean"]), 1: pytest.approx(adam["mean"])}


def test_compare_command_prints_the_report(campaign, capsys, tmp_path):
    _, result, uri, _ = campaign
    assert main(["--experiment", "h2h", "--tracking-uri", uri, "--out", str(tmp_path),
                 "--runs", *result.run_ids, "--no-log"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"# Head-to-head: preset `{FITNESS}`, budget {BUDGET}")
    assert (tmp_path / "comparison.md").read_text() in printed


# -- like with like ------------------------------------------------------------------------------
def _search(uri, fitness, budget, seed=0, strategy="random"):
    tracker = Tracker(experiment="mixed", tracking_uri=uri)
    Search(make_strategy(strategy, SearchSpace(), seed), StandInBackend(fitness.split(":")[1]),
           budget=budget, tracker=tracker, progress=False,
           config={"seed": seed, "preset": fitness}).run()


def test_mixing_presets_is_refused_naming_the_runs_and_the_filter(tmp_path, capsys):
    uri = fresh_store(tmp_path / "store")
    _search(uri, "standin:powersign", 4)
    _search(uri, "standin:addsign", 4)
    with pytest.raises(MixedRunsError) as err:
        compare("mixed", uri, out=tmp_path / "out")
    message = str(err.value)
    assert "different presets or budgets" in message
    assert "preset 'standin:powersign', budget 4: 1 run(s): random seed 0" in message
    assert "preset 'standin:addsign', budget 4: 1 run(s): random seed 0" in message
    assert "python -m evo_nos.compare --preset standin:" in message
    assert not (tmp_path / "out").exists()
    assert main(["--experiment", "mixed", "--tracking-uri", uri]) == 2
    assert "different presets or budgets" in capsys.readouterr().err
    # the suggested filter works
    report = compare("mixed", uri, preset="standin:addsign", out=tmp_path / "out", log=False)
    assert [c.preset for c in report.runs] == ["standin:addsign"]


def test_mixing_budgets_is_refused(tmp_path):
    uri = fresh_store(tmp_path / "store")
    _search(uri, "standin:powersign", 3)
    _search(uri, "standin:powersign", 5, seed=1)
    with pytest.raises(MixedRunsError, match=r"budget 3: .*\n.*budget 5: .*\n.*--budget"):
        compare("mixed", uri, out=tmp_path / "out", log=False)


def test_a_search_that_scored_nothing_is_left_out(tmp_path):
    uri = fresh_store(tmp_path / "store")
    _search(uri, "standin:powersign", 3)
    Tracker(experiment="mixed", tracking_uri=uri).start(     # a run stopped before batch 1
        params={"seed": 1, "preset": "standin:addsign"}, tags={"strategy": "random"})
    report = compare("mixed", uri, out=tmp_path / "out", log=False)
    assert [(c.preset, c.seed) for c in report.runs] == [("standin:powersign", 0)]


def curve(strategy, seed, steps, best, settings=None, **counts):
    return SearchCurve(run_id=f"{strategy}{seed}" + "0" * 30, name="", strategy=strategy,
                       seed=seed, preset="p", budget=4, status="FINISHED",
                       settings=settings or {"task.n_train": "100"}, steps=steps,
                       elapsed=[10.0 * s for s in steps], best=best, **counts)


def test_different_scoring_settings_are_refused_naming_the_setting():
    a = curve("evo", 0, [1], [0.5])
    b = curve("evo", 1, [1], [0.5], settings={"task.n_train": "200"})
    with pytest.raises(MixedRunsError, match=r"task.n_train: '100' in evo0000.*'200' in evo1"):
        check_comparable([a, b])


def test_summary_by_hand():
    nan = math.nan
    runs = [curve("evo", 0, [1, 2, 3, 4], [nan, 0.5, 0.5, 0.8], trainings=4, evaluations=8,
                  cached=2, invalid=1, seconds=120.0),
            curve("evo", 1, [1, 2, 3, 4], [0.2, 0.3, 0.6, 0.6], trainings=4, evaluations=4,
                  cached=0, invalid=1, seconds=30.0)]
    refs = [ReferenceSet("p", 0, "k", {"adam": ReferenceScore("adam", "adam", 0.4, "ok"),
                                       "powersign": ReferenceScore("powersign", "x", 0.7, "ok")}),
            ReferenceSet("p", 1, "k", {"adam": ReferenceScore("adam", "adam", 0.55, "ok"),
                                       "powersign": ReferenceScore("powersign", "x", 0.9, "ok")})]
    s = summarise(runs, refs).strategies["evo"]
    assert s.best_mean == pytest.approx(0.7)
    assert s.best_std == pytest.approx(math.sqrt(0.02))        # sample std of 0.8 and 0.6
    assert s.reach["adam"] == {"mean": 2.5, "ci_low": 2.0, "ci_high": 3.0,
                               "ci_method": "percentile", "reached": 2, "runs": 2,
                               "per_seed": [2.0, 3.0]}
    assert s.reach["powersign"] == {"mean": 4.0, "ci_low": None, "ci_high": None,
                                    "ci_method": "none", "reached": 1, "runs": 2,
                                    "per_seed": [4.0, None]}
    assert s.cache_hit_rate == pytest.approx(2 / 12)
    assert s.invalid_rate == pytest.approx(2 / 12)
    assert s.candidates_per_min == pytest.approx((8 / 2 + 4 / 0.5) / 2)


def test_best_so_far_is_a_step_function_of_trainings_and_time():
    c = curve("evo", 0, [0, 1, 1, 3], [math.nan, 0.2, 0.4, 0.9])
    got = c.best_at([0, 1, 2, 3, 10])
    assert math.isnan(got[0]) and list(got[1:]) == [0.4, 0.4, 0.9, 0.9]
    assert list(c.best_at([15.0, 30.0], axis="time")) == [0.4, 0.9]
    assert c.compute_to_reach(0.3) == 1.0 and c.compute_to_reach(0.9) == 3.0
    assert c.compute_to_reach(0.95) is None and c.compute_to_reach(None) is None


def test_reference_scores_are_reused_and_only_missing_names_trained(tmp_path):
    uri = fresh_store(tmp_path / "store")

    class Counting(StandInBackend):
        trained: list = []

        def evaluate(self, rules):
            Counting.trained += [str(r) for r in rules]
            return super().evaluate(rules)

    first = score_references(Counting("powersign"), preset="p", seed=0, names=("adam", "sgd"),
                             experiment="refs", tracking_uri=uri)
    again = score_references(Counting("powersign"), preset="p", seed=0, names=("sgd",),
                             experiment="refs", tracking_uri=uri)
    more = score_references(Counting("powersign"), preset="p", seed=0,
                            names=("sgd", "powersign"), experiment="refs", tracking_uri=uri)
    other_seed = score_references(Counting("powersign"), preset="p", seed=1, names=("sgd",),
                                  experiment="refs", tracking_uri=uri)
    assert Counting.trained == ["adam", "g", "mul(exp(mul(sign_g, sign_m)), g)", "g"]
    assert again.run_id == first.run_id and again.scored == []
    assert more.scored == ["powersign"] and more.run_id != first.run_id
    assert list(more.scores) == ["sgd", "powersign"]
    assert other_seed.scored == ["sgd"]


def test_baselines_stand_beside_the_references_scored_by_the_same_protocol(tmp_path):
    """torch optimizers through the real backend's protocol (lr sweep, schedule, final
    run), listed under their names beside the rules; the stand-in refuses them."""
    uri = fresh_store(tmp_path / "store")
    task = load_task("smoke", n_train=300, n_val=100, lrs=[1e-3, 1e-2], final_epochs=1,
                     schedule="cosine")
    refs = score_references(FitnessBackend(task, seed=0), preset="smoke", seed=0,
                            names=("adam",), baselines=("torch-adam", "lion"),
                            experiment="refs", tracking_uri=uri)
    assert list(refs.scores) == ["adam", "torch-adam", "lion"]
    for name in ("torch-adam", "lion"):
        score = refs.scores[name]
        assert (score.rule, score.status) == (name, "ok")
        assert score.best_lr in (1e-3, 1e-2) and set(score.lr_scores) == {1e-3, 1e-2}
        assert 0.0 < score.fitness <= 1.0
    rows = load_table(refs.run_id, "references.json", uri)
    assert [r["name"] for r in rows] == ["adam", "torch-adam", "lion"]
    with pytest.raises(ValueError, match="scores rules only.*torch-adam"):
        score_references(StandInBackend("powersign"), preset="p", seed=0, names=("sgd",),
                         baselines=("torch-adam",), log=False)
    with pytest.raises(ValueError, match="unknown baseline 'adamw'"):
        score_references(StandInBackend("powersign"), preset="p", seed=0, names=(),
                         baselines=("adamw",), log=False)


@pytest.mark.slow
def test_a_tiny_campaign_on_the_smoke_preset_trains_end_to_end(tmp_path):
    """The real backend (smoke preset: synthetic images, child trainings): two
    strategies, seeds 0 and 1, 2 trainings each, two references, the report."""
    uri = fresh_store(tmp_path / "store")
    the_plan = CampaignPlan(strategies=("evo", "random"), seeds=(0, 1), preset="smoke",
                            budget=2, references=("adam", "powersign"), tracking_uri=uri,
                            baselines=("torch-adam",),
                            experiment="smoke", out=tmp_path / "runs", progress=False,
                            strategy_args={"population": 4, "tournament": 2})
    result = run_campaign(the_plan, echo=quiet)
    assert result.status == "finished"
    assert [s.trainings for s in result.searches] == [2, 2, 2, 2]
    for refs in result.references:
        assert 0.1 < refs.fitness("adam") <= 1.0
        assert refs.scored == ["adam", "powersign", "torch-adam"]
        assert 0.1 < refs.fitness("torch-adam") <= 1.0
    report = result.report
    assert sorted(report.strategies) == ["evo", "random"] and report.preset == "smoke"
    assert all(Path(report.files[k]).is_file() for k in ("best_vs_trainings", "best_vs_time",
                                                         "markdown", "json"))
    assert sorted(report.references) == ["adam", "powersign", "torch-adam"]   # beside them
    with pytest.raises(ValueError, match="baselines need the real fitness"):
        CampaignPlan(strategies=("evo",), fitness="standin:powersign", baselines=("lion",))
    with pytest.raises(ValueError, match="unknown baseline 'adamw'"):
        CampaignPlan(strategies=("evo",), preset="smoke", baselines=("adamw",))


# -- statistics ----------------------------------------------------------------------------------
def test_probability_of_improvement_counts_pairs_ties_half():
    # 1>0 yes, 1>2 no, 1>5 no, 2>0 yes, 2=2 half, 2>5 no, 3>0 yes, 3>2 yes, 3>5 no: 4.5/9
    assert probability_of_improvement([1, 2, 3], [0, 2, 5]) == 0.5
    assert probability_of_improvement([0, 2, 5], [1, 2, 3]) == 0.5
    # 2>1 yes, 2=2 half, 2>4 no, 3>1 yes, 3>2 yes, 3>4 no: 3.5/6
    assert probability_of_improvement([2, 3], [1, 2, 4]) == 3.5 / 6
    assert probability_of_improvement([2, 3], [1, 2, 4]) == pytest.approx(
        mannwhitneyu([2, 3], [1, 2, 4]).statistic / 6)
    assert probability_of_improvement([5, 6], [1, 2]) == 1.0
    assert probability_of_improvement([1, 1], [1]) == 0.5
    assert math.isnan(probability_of_improvement([], [1.0]))
    assert probability_of_improvement([1, math.nan, 3], [2]) == 0.5     # nan: dropped


def test_bootstrap_interval_contains_the_mean_and_is_reproducible():
    values = [0.61, 0.64, 0.58, 0.70, 0.66, 0.63]
    ci = bootstrap_interval([values])
    assert ci.estimate == pytest.approx(sum(values) / len(values))
    assert ci.method == "BCa" and ci.sizes == (6,)
    assert ci.low < ci.estimate < ci.high and min(values) <= ci.low and ci.high <= max(values)
    assert bootstrap_interval([values]) == ci                    # the fixed seed
    assert bootstrap_interval([list(reversed(values))]).estimate == pytest.approx(ci.estimate)
    other = bootstrap_interval([values], seed=BOOTSTRAP_SEED + 1)
    assert other.method == "BCa" and (other.low, other.high) != (ci.low, ci.high)
    wider = bootstrap_interval([values], confidence=0.99)
    assert wider.low <= ci.low and ci.high <= wider.high


def test_small_or_degenerate_samples_fall_back_instead_of_failing():
    two = bootstrap_interval([[0.5, 0.7]])           # BCa needs 3: the percentile interval
    assert (two.estimate, two.method) == (pytest.approx(0.6), "percentile")
    assert (two.low, two.high) == (0.5, 0.7)
    one = bootstrap_interval([[0.5]])                # no interval from one value
    assert one.estimate == 0.5 and one.method == "none" and not one.defined
    assert math.isnan(one.low) and math.isnan(one.high)
    same = bootstrap_interval([[0.3, 0.3, 0.3, 0.3]])  # BCa undefined: every resample equal
    assert (same.low, same.high, same.method) == (0.3, 0.3, "percentile")
    empty = bootstrap_interval([[math.nan]])
    assert math.isnan(empty.estimate) and empty.method == "none" and empty.sizes == (0,)
    apart = improvement_interval([3, 4, 5], [0, 1, 2])  # complete separation: degenerate
    assert (apart.estimate, apart.low, apart.high, apart.method) == (1.0, 1.0, 1.0,
                                                                     "percentile")
    mixed = improvement_interval([1, 2, 3], [0, 2, 5])
    assert mixed.estimate == 0.5 and mixed.contains(0.5) and mixed.method == "BCa"
    assert improvement_interval([1, 2, 3], [0, 2, 5]) == mixed


def finals(strategy, values, hall_of_fame=None):
    """Searches of ``strategy`` whose final best fitness are ``values`` (seeds 0, 1, ..)."""
    return [curve(strategy, seed, [1, 2], [v / 2, v], trainings=2, evaluations=2,
                  seconds=60.0, hall_of_fame=list(hall_of_fame or []))
            for seed, v in enumerate(values)]


def test_the_improvement_table_has_every_ordered_pair_mirrored():
    report = summarise(finals("evo", [1, 2, 3]) + finals("random", [0, 2, 5]))
    rows = records(report.tables()["improvement"])
    assert [(r["strategy"], r["versus"], r["probability"], r["n"], r["m"]) for r in rows] == [
        ("evo", "random", 0.5, 3, 3), ("random", "evo", 0.5, 3, 3)]
    ab, ba = rows
    assert ab["ci_low"] == pytest.approx(1 - ba["ci_high"])
    assert ab["ci_high"] == pytest.approx(1 - ba["ci_low"])
    assert ab["ci_low"] <= 0.5 <= ab["ci_high"] and ab["ci_method"] == "BCa"
    strategies = records(report.tables()["strategies"])
    assert [(r["strategy"], r["best_mean"]) for r in strategies] == [("evo", 2.0),
                                                                     ("random", pytest.approx(7 / 3))]
    for r in strategies:
        assert r["ci_low"] <= r["best_mean"] <= r["ci_high"] and r["ci_method"] == "BCa"
    (verdict,) = verdicts(report)
    assert verdict.startswith("the 95% CIs of the mean best fitness of evo [")
    assert "overlap: no separation at this budget" in verdict
    assert "P(evo beats random) = 0.50, 95% CI [" in verdict
    assert verdict.endswith(": within noise (the CI contains 0.5).")
    assert verdict in markdown(report)


def test_separated_strategies_are_called_apart():
    report = summarise(finals("evo", [0.80, 0.82, 0.81, 0.83]) +
                       finals("random", [0.50, 0.52, 0.49, 0.51]))
    (verdict,) = verdicts(report)
    assert "the 95% CI of evo's mean best fitness [0.8" in verdict
    assert "lies above random's [0.4" in verdict and "evo is ahead at this budget" in verdict
    assert "P(evo beats random) = 1.00, 95% CI [1.00, 1.00]" in verdict
    assert verdict.endswith("evo's searches beat random's more often than not (every "
                            "resample agrees: each of the 4×4 pairs of seeds went the same "
                            "way; with few seeds that is weak evidence).")
    assert records(report.tables()["improvement"])[1]["probability"] == 0.0


def test_a_strategy_with_one_seed_gets_no_interval_and_a_note():
    report = summarise(finals("evo", [0.7]) + finals("random", [0.5, 0.6, 0.4]))
    evo = report.strategies["evo"]
    assert evo.best_mean == 0.7 and evo.best_ci == {
        "estimate": 0.7, "ci_low": None, "ci_high": None, "ci_method": "none"}
    assert "evo: best fitness from 1 seed: no 95% CI (a bootstrap needs at least 2 seeds)" \
        in report.notes
    row = records(report.tables()["strategies"])[0]
    assert (row["ci_low"], row["ci_high"], row["ci_method"]) == (None, None, "none")
    improvement = records(report.tables()["improvement"])
    assert [(r["probability"], r["ci_low"], r["ci_method"], r["n"], r["m"])
            for r in improvement] == [(1.0, None, "none", 1, 3), (0.0, None, "none", 3, 1)]
    (verdict,) = verdicts(report)
    assert verdict == ("evo vs random: too few seeds for a 95% CI of the mean best fitness "
                       "(evo has 1 scored seed): no conclusion at this budget; P(evo beats random) "
                       "= 1.00 (no CI: too few seeds).")
    text = markdown(report)
    assert "| evo | 1 | 0.7000 |  |  | none | 0.0000 |" in text
    assert "- evo: best fitness from 1 seed: no 95% CI" in text


def test_a_single_strategy_has_nothing_to_compare():
    report = summarise(finals("evo", [0.7, 0.8]))
    assert report.tables()["improvement"].empty
    assert verdicts(report) == ["only one strategy (evo): nothing to compare"]
    assert "### Probability of improvement" not in markdown(report)
    assert "evo: best fitness from 2 seeds: percentile CI (BCa needs 3)" in report.notes[-1]


def reference_sets(adam, powersign=None):
    out = []
    for seed, score in enumerate(adam):
        scores = {"adam": ReferenceScore("adam", "adam", score, "ok")}
        if powersign is not None:
            scores["powersign"] = ReferenceScore("powersign", "x", powersign[seed], "ok")
        out.append(ReferenceSet("p", seed, "k", scores))
    return out


def test_compute_to_reach_adam_by_hand_on_fractional_compute():
    nan = math.nan
    steps = [0.5, 1.25, 2.0, 3.5]
    runs = [curve("evo", 0, steps, [nan, 0.40, 0.40, 0.70]),      # adam 0.40: at 1.25
            curve("evo", 1, steps, [0.30, 0.45, 0.60, 0.60]),     # adam 0.60: at 2.0 (=)
            curve("evo", 2, steps, [0.50, 0.60, 0.70, 0.75]),     # adam 0.50: at 0.5
            curve("random", 0, steps, [0.10, 0.20, 0.30, 0.35]),  # never: censored
            curve("random", 1, steps, [0.55, 0.58, 0.60, 0.61]),  # at 2.0
            curve("random", 2, steps, [0.40, 0.45, 0.45, 0.45])]  # never: censored
    report = summarise(runs, reference_sets([0.40, 0.60, 0.50], [0.70, 0.90, 0.70]))
    evo, random = report.strategies["evo"], report.strategies["random"]
    assert [c.compute_to_reach(a) for c, a in zip(runs, [0.40, 0.60, 0.50] * 2)] == [
        1.25, 2.0, 0.5, None, 2.0, None]
    assert evo.reach["adam"]["per_seed"] == [1.25, 2.0, 0.5]
    assert evo.reach["adam"]["mean"] == pytest.approx(3.75 / 3)
    assert (evo.reach["adam"]["reached"], evo.reach["adam"]["runs"]) == (3, 3)
    low, high = evo.reach["adam"]["ci_low"], evo.reach["adam"]["ci_high"]
    assert 0.5 <= low <= 3.75 / 3 <= high <= 2.0
    assert random.reach["adam"] == {"mean": 2.0, "ci_low": None, "ci_high": None,
                                    "ci_method": "none", "reached": 1, "runs": 3,
                                    "per_seed": [None, 2.0, None]}
    assert evo.reach["powersign"]["per_seed"] == [3.5, None, 2.0]
    assert random.reach["powersign"]["per_seed"] == [None, None, None]
    rows = records(report.tables()["reach"])
    assert [(r["strategy"], r["reference"], r["trainings_mean"], r["reached"], r["runs"],
             r["note"]) for r in rows] == [
        ("evo", "adam", pytest.approx(1.25), 3, 3, "reached 3/3"),
        ("evo", "powersign", 2.75, 2, 3, "reached 2/3; 1 censored (never got there within "
                                        "the budget, not in the mean); percentile CI (BCa "
                                        "needs 3)"),
        ("random", "adam", 2.0, 1, 3, "reached 1/3; 2 censored (never got there within the "
                                      "budget, not in the mean); 1 search: no CI"),
        ("random", "powersign", None, 0, 3, "reached 0/3: none got there within the budget")]
    assert "evo reached adam in 3/3 searches, random in 1/3; too few got there for 95% CIs " \
           "of the compute it took." in verdicts(report)
    text = markdown(report)
    assert "| evo | powersign | 2.8 | 2.0 | 3.5 | percentile | 2 | 3 | reached 2/3; 1 " \
           "censored" in text
    assert "| random | powersign |  |  |  | none | 0 | 3 | reached 0/3" in text


def test_top_rules_show_the_standard_error_and_seeds_where_the_search_logged_them():
    powersign = resolve("powersign").canonical
    new = [{"rule": powersign, "fitness": 0.8, "fitness_se": 0.01, "seeds": 3},
           {"rule": "g", "fitness": 0.5, "fitness_se": None, "seeds": 1}]
    old = [{"rule": "adam", "fitness": 0.6}]             # a run from before: fitness only
    runs = finals("evo", [0.8], new) + finals("random", [0.6], old)
    report = summarise(runs)
    rows = records(report.tables()["top_rules"])
    assert [(r["strategy"], r["rule"], r["fitness"], r["fitness_se"], r["seeds"])
            for r in rows] == [("evo", powersign, 0.8, 0.01, 3.0), ("evo", "g", 0.5, None, 1.0),
                               ("random", "adam", 0.6, None, None)]
    text = markdown(report)
    assert "| strategy | fitness (mean) | ± SE | scored on (seeds) | rule |" in text
    assert f"| evo | 0.8000 | ± 0.0100 | 3 | `{powersign}` |" in text
    assert "| evo | 0.5000 |  | 1 | `g` |" in text
    assert "| random | 0.6000 |  |  | `adam` |" in text


def test_the_new_tables_round_trip_through_csv_and_json(tmp_path):
    full = summarise(finals("evo", [0.7]) + finals("random", [0.5, 0.6, 0.4],
                                                   [{"rule": "g", "fitness": 0.6}]),
                     reference_sets([0.55, 0.55, 0.55]))
    alone = summarise(finals("random", [0.5, 0.6]))        # no pairs, no references
    for i, report in enumerate((full, alone)):
        for name, frame in report.tables().items():
            paths = write_table(frame, tmp_path / f"{name}{i}", **SHOWN[name])
            assert json.loads(paths["json"].read_text()) == records(frame)
            missing = frame.replace({"": math.nan})      # "" and None: empty in CSV
            pd.testing.assert_frame_equal(pd.read_csv(paths["csv"]),
                                          missing.where(missing.notna(), math.nan),
                                          check_dtype=False)
        json.dumps(report.as_dict(), default=str)     # the whole report is plain data
    assert alone.tables()["improvement"].empty and alone.tables()["reach"].empty


def test_curves_read_fractional_compute_from_the_evaluations_table(monkeypatch):
    import evo_nos.experiments.curves as module

    rows = [{"index": 0, "status": "ok", "fitness": 0.3, "step": 40, "compute": 0.4,
             "elapsed": 1.0},
            {"index": 1, "status": "invalid", "fitness": None, "step": 40, "compute": 0.4,
             "elapsed": 1.5},
            {"index": 2, "status": "ok", "fitness": 0.6, "step": 140, "compute": 1.4,
             "elapsed": 3.0}]
    monkeypatch.setattr(module, "load_table", lambda run_id, name, uri=None: list(rows))
    monkeypatch.setattr(module, "load_hall_of_fame", lambda run_id, uri=None: [])

    class Run:
        run_id, name, status, start_time = "r" * 32, "evo seed 0", "FINISHED", 0.0
        params = {"seed": "0", "preset": "p", "budget": "2", "strategy": "evo"}
        tags = {"strategy": "evo"}
        metrics: dict = {}

    c = module.load_curve(Run())
    assert c.steps == [0.4, 0.4, 1.4] and c.trainings == 1.4 and c.invalid == 1
    assert c.best == [0.3, 0.3, 0.6] and c.compute_to_reach(0.5) == 1.4
