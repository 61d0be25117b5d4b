"""MLflow tracking of a search, against a temporary SQLite store."""
import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from evo_nos.fitness.standin import StandInBackend
from evo_nos.operators.space import SearchSpace
from evo_nos.optim.optimizer import RuleOptimizer
from evo_nos.search import Search
from evo_nos.strategies import make_strategy
from evo_nos.tracking import PARENT_TAG, Tracker, default_artifact_location, default_tracking_uri

from mlflow_store import fresh_store

TARGET = "mul(exp(mul(sign_g, sign_m)), g)"
BUDGET = 15


def load_table(client, run_id, name, tmp_path):
    """A table artifact as {column: [values]} (MlflowClient.load_table queries the
    global tracking URI, not the client's, so read the file log_table wrote)."""
    path = Path(client.download_artifacts(run_id, name, str(tmp_path)))
    data = json.loads(path.read_text())
    return {c: [row[i] for row in data["data"]] for i, c in enumerate(data["columns"])}


@pytest.fixture
def store(tmp_path):
    return fresh_store(tmp_path / "store")


def search(tracker, budget=BUDGET, backend=None, checkpoint_dir=None, seed=0):
    strategy = make_strategy("evo", SearchSpace(), seed, population=6, tournament=2)
    return Search(strategy, backend or StandInBackend(TARGET), budget=budget, batch_size=2,
                  tracker=tracker, progress=False, checkpoint_dir=checkpoint_dir,
                  run_name="smoke", config={"seed": seed, "preset": "standin:powersign"})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished smoke search, shared by the tests that read what it logged."""
    uri = fresh_store(tmp_path_factory.mktemp("finished"))
    tracker = Tracker(experiment="smoke", tracking_uri=uri)
    result = search(tracker).run()
    client = MlflowClient(tracking_uri=uri)
    return result, client, client.get_run(result.run_id), tracker


# -- where runs go ----------------------------------------------------------------------------
def test_tracking_uri_is_the_environment_else_mlflows_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////somewhere/else.db")
    assert default_tracking_uri() == "sqlite:////somewhere/else.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"


def test_artifacts_go_beside_the_sqlite_file():
    assert default_artifact_location("sqlite:////data/runs/mlflow.db") == \
        "file:///data/runs/mlartifacts"
    assert default_artifact_location("http://mlflow.example:5000") is None


def test_experiment_is_created_with_an_explicit_artifact_location(store):
    tracker = Tracker(experiment="exp-a", tracking_uri=store)
    experiment = MlflowClient(tracking_uri=store).get_experiment(tracker.experiment_id)
    folder = Path(store[len("sqlite:///"):]).parent
    assert experiment.name == "exp-a"
    assert experiment.artifact_location == (folder / "mlartifacts").as_uri()
    assert Tracker(experiment="exp-a", tracking_uri=store).experiment_id == \
        tracker.experiment_id
    assert tracker.ui_command == f"mlflow ui --backend-store-uri {store}"


# -- the smoke search ---------------------------------------------------------------------------
def test_parent_run_has_params_and_tags(finished):
    result, _, run, _ = finished
    params, tags = run.data.params, run.data.tags
    assert params["strategy"] == "evo" and tags["budget"] == str(BUDGET)
    assert "budget" not in params                      # a tag: a resume may grow it
    assert params["seed"] == "0" and params["preset"] == "standin:powersign"
    assert params["strategy.population"] == "6" and params["space.max_binary"] == "4"
    assert params["target"] == TARGET                       # the backend's description
    assert tags["strategy"] == "evo" and tags["preset"] == "standin:powersign"
    assert tags["best_rule"] == result.best.rule and tags["stop_reason"] == "finished"
    assert run.info.status == "FINISHED" and run.info.run_name == "smoke"


def test_metrics_are_stepped_by_child_trainings_up_to_the_budget(finished):
    result, client, run, _ = finished
    best = client.get_metric_history(run.info.run_id, "best_fitness")
    steps = [m.step for m in best]
    assert steps == sorted(steps) and steps[-1] == BUDGET == result.trainings
    values = [m.value for m in sorted(best, key=lambda m: (m.step, m.timestamp))]
    assert values == sorted(values) and values[-1] == pytest.approx(result.best.fitness)
    fitness = client.get_metric_history(run.info.run_id, "candidate_fitness")
    assert len(fitness) == result.evaluations
    assert sorted(m.step for m in fitness) == sorted(r["step"] for r in result.history)
    for key in ("cache_hits", "invalid", "candidates_per_min", "evaluations"):
        assert client.get_metric_history(run.info.run_id, key)[-1].step == BUDGET


def test_hall_of_fame_artifact_names_the_best_rule(finished, tmp_path):
    result, client, run, _ = finished
    names = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"hall_of_fame.json", "hall_of_fame.md", "pareto_front.json", "evaluations.json",
            "best_fitness.png", "best_optimizer"} <= names
    table = load_table(client, run.info.run_id, "hall_of_fame.json", tmp_path)
    assert table["rule"][0] == result.best.rule
    assert table["rank"] == list(range(1, len(result.hall_of_fame) + 1))
    assert {"math", "latex", "fitness", "best_lr", "complexity", "status"} <= set(table)
    assert json.loads(run.data.tags["mlflow.loggedArtifacts"])[0] == {
        "path": "hall_of_fame.json", "type": "table"}
    markdown = Path(client.download_artifacts(run.info.run_id, "hall_of_fame.md")).read_text()
    assert f"`{result.best.rule}`" in markdown
    # the description: the best rule in its readable form (no note on the protocol: the
    # stand-in backend has no task), then the same tables
    named = f" ({table['name'][0]})" if table["name"][0] else ""
    assert run.data.tags["mlflow.note.content"] == (
        f"**Best rule:** `{table['readable'][0]}`{named}, fitness {table['fitness'][0]:.4f}; "
        f"scored as `{result.best.rule}`.\n\n{markdown}")


def test_exported_optimizer_artifact_runs(finished, tmp_path):
    result, client, run, _ = finished
    folder = Path(client.download_artifacts(run.info.run_id, "best_optimizer", str(tmp_path)))
    (source,) = folder.glob("*.py")
    spec = json.loads(source.with_suffix(".json").read_text())
    assert spec["rule"] == result.best.rule
    namespace: dict = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)
    exported_class = namespace[spec["class_name"]]
    w1 = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    w2 = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    exported = exported_class([w1], lr=0.1, total_steps=10)
    reference = RuleOptimizer([w2], result.best.rule, lr=0.1, total_steps=10)
    for opt, w in ((exported, w1), (reference, w2)):
        torch.manual_seed(0)
        for _ in range(3):
            opt.zero_grad()
            (w * torch.tensor([0.5, 1.0, -1.5])).sum().backward()
            opt.step()
    assert torch.equal(w1, w2) and not torch.equal(w1, torch.tensor([1.0, -2.0, 3.0]))


def test_plot_of_best_fitness_is_a_png(finished, tmp_path):
    _, client, run, _ = finished
    path = Path(client.download_artifacts(run.info.run_id, "best_fitness.png", str(tmp_path)))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hall_of_fame_members_are_nested_child_runs(finished):
    result, client, run, tracker = finished
    children = client.search_runs([tracker.experiment_id],
                                  filter_string=f"tags.`{PARENT_TAG}` = '{run.info.run_id}'")
    assert len(children) == len(result.hall_of_fame)
    by_rank = {int(c.data.tags["rank"]): c for c in children}
    first = by_rank[1]
    assert first.data.params["rule"] == result.best.rule
    assert first.data.metrics["fitness"] == pytest.approx(result.best.fitness)
    assert first.data.metrics["score_lr_1"] == pytest.approx(result.best.lr_scores[1.0])


# -- interrupt and resume --------------------------------------------------------------------------
class InterruptingBackend(StandInBackend):
    def __init__(self, target, on_call):
        super().__init__(target)
        self.calls, self.on_call = 0, on_call

    def evaluate(self, rules):
        self.calls += 1
        if self.calls == self.on_call:
            raise KeyboardInterrupt
        return super().evaluate(rules)


def test_interrupted_run_is_killed_and_resume_reopens_the_same_run(store, tmp_path):
    tracker = Tracker(experiment="resume", tracking_uri=store)
    interrupted = search(tracker, backend=InterruptingBackend(TARGET, 4),
                         checkpoint_dir=tmp_path).run()
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(interrupted.run_id)
    assert run.info.status == "KILLED" and run.data.tags["stop_reason"] == "interrupted"
    assert "hall_of_fame.json" in {f.path for f in client.list_artifacts(run.info.run_id)}

    strategy = make_strategy("evo", SearchSpace(), 0, population=6, tournament=2)
    resumed = Search.resume(tmp_path, strategy, StandInBackend(TARGET),
                            tracker=Tracker(experiment="resume", tracking_uri=store),
                            progress=False).run()
    assert resumed.run_id == interrupted.run_id and resumed.trainings == BUDGET
    run = client.get_run(resumed.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["stop_reason"] == "finished"
    runs = client.search_runs([run.info.experiment_id],
                              filter_string=f"tags.`{PARENT_TAG}` IS NULL")
    assert [r.info.run_id for r in runs] == [resumed.run_id]
    # the refreshed table replaced the one logged at the interrupt (no appended rows)
    table = load_table(client, run.info.run_id, "hall_of_fame.json", tmp_path / "t")
    assert len(table["rule"]) == len(resumed.hall_of_fame)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "best_fitness")]
    assert steps[-1] == BUDGET
