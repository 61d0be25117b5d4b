"""What a person sees in the MLflow UI, checked through the MlflowClient: the experiment
opens in the model-training view, searches have their own descriptive names, a search's
headline metric is its best, the hall of fame lists #1 first with readable math and a
note on what fitness is, and the compare run adds no charts to the experiment."""
import re
import time

import pytest
from mlflow.tracking import MlflowClient

from evo_nos.experiments.compare import compare
from evo_nos.fitness.backend import FitnessBackend
from evo_nos.fitness.tasks import load_task
from evo_nos.operators.space import SearchSpace
from evo_nos.search import Search, seed_everything
from evo_nos.strategies import make_strategy
from evo_nos.tracking import (NOTE_TAG, PARENT_TAG, Tracker, default_run_name, find_runs,
                              load_hall_of_fame, protocol_note)

from mlflow_store import fresh_store

EXPERIMENT = "screens"
# the smoke preset made tiny; its epochs are neither the preset's nor the paper's
TASK = load_task("smoke", n_train=200, n_val=100, image_size=8, lrs=[0.01, 0.1],
                 sweep_epochs=1, final_epochs=3)
SEED = 0
LATEX = re.compile(r"\\[A-Za-z]|\$")    # a LaTeX command (\hat, \frac ...) or math delimiter


def one_search(uri):
    """A search as ``python -m evo_nos.run --preset smoke --seed 0`` makes it (no
    ``--run-name``: the RNG is seeded before the run is named)."""
    seed_everything(SEED)
    strategy = make_strategy("evo", SearchSpace(), SEED, population=4, tournament=2)
    backend = FitnessBackend(TASK, seed=SEED, device="cpu")
    return Search(strategy, backend, budget=6, batch_size=2, hall_of_fame_size=4,
                  tracker=Tracker(experiment=EXPERIMENT, tracking_uri=uri), progress=False,
                  funnel_seeds=2, config={"seed": SEED, "preset": "smoke"}).run()


@pytest.fixture(scope="module")
def screens(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("screens")
    uri = fresh_store(tmp / "store")
    results = [one_search(uri), one_search(uri)]
    report = compare(EXPERIMENT, uri, out=tmp / "report")
    return uri, MlflowClient(tracking_uri=uri), results, report


def children_in_ui_order(client, run):
    """The hall-of-fame runs of ``run`` as MLflow lists them by default: newest first."""
    return client.search_runs([run.info.experiment_id],
                              filter_string=f"tags.`{PARENT_TAG}` = '{run.info.run_id}'",
                              order_by=["attributes.start_time DESC"])


def test_the_experiment_opens_in_the_model_training_view(screens, tmp_path):
    _, client, _, _ = screens
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # an experiment made before (without the tag) gets it when evo_nos opens it
    other = fresh_store(tmp_path / "store")
    old = MlflowClient(tracking_uri=other)
    old_id = old.create_experiment("made-before")
    assert "mlflow.experimentKind" not in old.get_experiment(old_id).tags
    Tracker(experiment="made-before", tracking_uri=other)
    assert old.get_experiment(old_id).tags["mlflow.experimentKind"] == \
        "custom_model_development"


def test_the_printed_link_opens_the_model_training_view(screens):
    uri, client, results, _ = screens
    tracker = Tracker(experiment=EXPERIMENT, tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    run_id = results[0].run_id
    # MLflow 3.17's UI takes the view from this query (its experiment-kind tag aside)
    assert tracker.ui_url(run_id) == (f"http://127.0.0.1:5000/#/experiments/{experiment}/"
                                      f"runs/{run_id}?workflowType=machine_learning")
    assert tracker.ui_url() == (f"http://127.0.0.1:5000/#/experiments/{experiment}"
                                "?workflowType=machine_learning")


def test_searches_with_the_same_seed_have_their_own_descriptive_names(screens):
    _, client, results, _ = screens
    names = [client.get_run(r.run_id).info.run_name for r in results]
    assert names[0] != names[1]
    for name in names:
        assert name.startswith("evo-smoke-seed0-")


def test_default_names_are_strategy_preset_seed_and_time_made_unique(tmp_path, monkeypatch):
    when = time.mktime((2026, 12, 4, 16, 12, 33, 0, 0, -1))
    assert default_run_name({"strategy": "evo", "preset": "smoke"}, {"seed": 0}, when) == \
        "evo-smoke-seed0-20261204-161233"
    assert default_run_name({"strategy": "rl"}, {}, when) == "rl-20261204-161233"
    # two searches started within one second: the second gets a suffix
    stamp = time.localtime(when)
    monkeypatch.setattr(time, "localtime", lambda seconds=None: stamp)
    uri = fresh_store(tmp_path / "store")
    tracker = Tracker(experiment="names", tracking_uri=uri)
    ids = [tracker.start(params={"seed": 0}, tags={"strategy": "evo", "preset": "smoke"})
           for _ in range(3)]
    explicit = tracker.start(run_name="my run", params={"seed": 0}, tags={"strategy": "evo"})
    client = MlflowClient(tracking_uri=uri)
    assert [client.get_run(i).info.run_name for i in ids + [explicit]] == [
        "evo-smoke-seed0-20261204-161233", "evo-smoke-seed0-20261204-161233-2",
        "evo-smoke-seed0-20261204-161233-3", "my run"]


def test_the_headline_metric_is_the_hall_of_fames_best(screens):
    _, client, results, _ = screens
    for result in results:
        metrics = client.get_run(result.run_id).data.metrics
        assert metrics["best_fitness"] == result.best.fitness
        assert "fitness" not in metrics           # every candidate's is candidate_fitness
        scored = [r for r in result.history if r["kind"] == "candidate"
                  and r["fitness"] is not None and r["fitness"] > float("-inf")]
        history = client.get_metric_history(result.run_id, "candidate_fitness")
        assert sorted((m.step, m.value) for m in history) == sorted(
            (r["step"], r["fitness"]) for r in scored)


def test_hall_of_fame_runs_are_listed_best_first(screens):
    _, client, results, _ = screens
    for result in results:
        children = children_in_ui_order(client, client.get_run(result.run_id))
        ranks = [int(c.data.tags["rank"]) for c in children]
        assert ranks == list(range(1, len(result.hall_of_fame) + 1)) and len(ranks) > 1
        starts = [c.info.start_time for c in children]
        assert starts == sorted(set(starts), reverse=True)    # distinct: no ties to break
        assert children[0].info.run_name.startswith("#1 ")


def test_descriptions_are_readable_math_with_the_protocol_note(screens):
    uri, client, results, _ = screens
    for result in results:
        run = client.get_run(result.run_id)
        note = protocol_note(run.data.params)
        assert note == (
            "**Fitness** = validation accuracy after the final run, 3 epochs at the sweep's "
            "best learning rate (mean over the seeds scored); the sweep trains 1 epoch at "
            "each of 2 learning rates (0.01, 0.1): those are the `score_lr_*` scores, so "
            "they are usually below it.")
        rows = load_hall_of_fame(result.run_id, uri)
        description = run.data.tags[NOTE_TAG]
        assert description.startswith(f"**Best rule:** `{rows[0]['readable']}`")
        assert note in description and not LATEX.search(description)
        for child in children_in_ui_order(client, run):
            row = rows[int(child.data.tags["rank"]) - 1]
            text = child.data.tags[NOTE_TAG]
            assert text.startswith(f"**#{row['rank']} of {len(rows)}** in search "
                                   f"`{run.info.run_name}`: `{row['readable']}`")
            assert text.endswith(note) and not LATEX.search(text)


def test_the_protocol_note_takes_the_epochs_from_the_task():
    params = {"task.sweep_epochs": "0.5", "task.final_epochs": "1", "task.lrs": "0.1"}
    assert protocol_note(params) == (
        "**Fitness** = validation accuracy after the final run, 1 epoch at the sweep's best "
        "learning rate (mean over the seeds scored); the sweep trains 0.5 epochs at each of "
        "1 learning rates (0.1): those are the `score_lr_*` scores, so they are usually "
        "below it.")
    assert protocol_note({"target": "g"}) == ""     # a backend without a task: no note


def test_the_compare_run_adds_no_charts_to_the_experiment(screens):
    uri, client, results, report = screens
    (run,) = find_runs(EXPERIMENT, uri, kind="compare")
    assert run.run_id == report.run_id and run.metrics == {}
    # the chart view draws one chart per metric key: only the searches' and their
    # hall-of-fame runs' keys are there
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    keys = {key for r in client.search_runs([experiment]) for key in r.data.metrics}
    searches = {key for r in results for key in client.get_run(r.run_id).data.metrics}
    members = {key for r in results for c in children_in_ui_order(client, client.get_run(
        r.run_id)) for key in c.data.metrics}
    assert keys == searches | members
    assert searches >= {"best_fitness", "candidate_fitness", "compute", "evaluations"}
    assert members == {"fitness", "fitness_se", "seeds", "score_lr_0.01", "score_lr_0.1"}
