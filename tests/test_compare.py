"""The head-to-head: reference scores, campaigns (run, interrupt, continue), the report."""
import json
import math
from pathlib import Path

import pytest

from evo_nos.cli.campaign import wants_campaign
from evo_nos.cli.compare import main
from evo_nos.experiments.campaign import CampaignPlan, run_campaign
from evo_nos.experiments.compare import (MixedRunsError, SearchCurve, check_comparable, compare,
                             summarise)
from evo_nos.fitness.standin import StandInBackend
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
    assert "trainings to beat adam" in text and "trainings to beat powersign" in text
    assert "## References" in text and "`mul(exp(mul(sign_g, sign_m)), g)`" in text
    data = json.loads((out / "comparison.json").read_text())
    assert sorted(data["strategies"]) == sorted(STRATEGIES)
    assert data["preset"] == FITNESS and data["budget"] == BUDGET
    assert sorted(r["run_id"] for r in data["runs"]) == sorted(result.run_ids)
    assert report.run_id == data["compare_run_id"]


def test_report_is_logged_as_its_own_mlflow_run(campaign):
    _, result, uri, _ = campaign
    (run,) = find_runs("h2h", uri, kind="compare")
    assert run.run_id == result.report.run_id
    assert run.tags["preset"] == FITNESS and run.params["budget"] == str(BUDGET)
    assert {"best_vs_trainings.png", "best_vs_time.png", "comparison.md", "comparison.json",
            "comparison_table.json"} <= set(list_artifacts(run.run_id, uri))
    table = load_table(run.run_id, "comparison_table.json", uri)
    assert sorted(row["strategy"] for row in table) == sorted(STRATEGIES)
    evo = result.report.strategies["evo"]
    assert run.metrics["best_fitness_mean.evo"] == pytest.approx(evo.best_mean)
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
    assert s.beat["adam"] == {"mean": 2.5, "reached": 2, "runs": 2, "per_seed": [2, 3]}
    assert s.beat["powersign"] == {"mean": 4.0, "reached": 1, "runs": 2, "per_seed": [4, None]}
    assert s.cache_hit_rate == pytest.approx(2 / 12)
    assert s.invalid_rate == pytest.approx(2 / 12)
    assert s.candidates_per_min == pytest.approx((8 / 2 + 4 / 0.5) / 2)


def test_best_so_far_is_a_step_function_of_trainings_and_time():
    c = curve("evo", 0, [0, 1, 1, 3], [math.nan, 0.2, 0.4, 0.9])
    got = c.best_at([0, 1, 2, 3, 10])
    assert math.isnan(got[0]) and list(got[1:]) == [0.4, 0.4, 0.9, 0.9]
    assert list(c.best_at([15.0, 30.0], axis="time")) == [0.4, 0.9]
    assert c.trainings_to_beat(0.3) == 1 and c.trainings_to_beat(0.9) is None


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


@pytest.mark.slow
def test_a_tiny_campaign_on_the_smoke_preset_trains_end_to_end(tmp_path):
    """The real backend (smoke preset: synthetic images, child trainings): two
    strategies, seeds 0 and 1, 2 trainings each, two references, the report."""
    uri = fresh_store(tmp_path / "store")
    the_plan = CampaignPlan(strategies=("evo", "random"), seeds=(0, 1), preset="smoke",
                            budget=2, references=("adam", "powersign"), tracking_uri=uri,
                            experiment="smoke", out=tmp_path / "runs", progress=False,
                            strategy_args={"population": 4, "tournament": 2})
    result = run_campaign(the_plan, echo=quiet)
    assert result.status == "finished"
    assert [s.trainings for s in result.searches] == [2, 2, 2, 2]
    for refs in result.references:
        assert 0.1 < refs.fitness("adam") <= 1.0 and refs.scored == ["adam", "powersign"]
    report = result.report
    assert sorted(report.strategies) == ["evo", "random"] and report.preset == "smoke"
    assert all(Path(report.files[k]).is_file() for k in ("best_vs_trainings", "best_vs_time",
                                                         "markdown", "json"))
    assert sorted(report.references) == ["adam", "powersign"]
