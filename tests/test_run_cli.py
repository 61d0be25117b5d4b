"""``python -m evo_nos.run``: options, output and --resume (Ctrl+C and kill -9 are in
test_reliability.py)."""
import json

import pytest
from mlflow.tracking import MlflowClient

from evo_nos.cli import run as cli
from evo_nos.fitness.tasks import default_preset
from evo_nos.search.defaults import DEFAULT_BUDGETS
from evo_nos.search import load_checkpoint
from evo_nos.tracking import load_hall_of_fame

from mlflow_store import fresh_store

STANDIN = "standin:mul(exp(mul(sign_g, sign_m)), g)"


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = fresh_store(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def run_main(tmp_path, *args):
    return cli.main(["--fitness", STANDIN, "--quiet", "--out", str(tmp_path / "runs"),
                     *args])


def parent_runs(uri):
    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments,
                              filter_string="tags.`mlflow.parentRunId` IS NULL",
                              order_by=["attributes.start_time ASC"])


def test_search_prints_the_hall_of_fame_and_how_to_open_mlflow(tmp_path, store, capsys):
    assert run_main(tmp_path, "--budget", "8", "--seed", "3", "--population", "4",
                    "--tournament", "2") == 0
    out = capsys.readouterr().out
    assert "evo search finished: 8.0 child trainings of compute (8 runs, 0 re-scorings)" in out
    assert "#   fitness" in out and f"mlflow ui --backend-store-uri {store}" in out
    (run,) = parent_runs(store)
    assert run.data.params["strategy.population"] == "4" and run.data.params["seed"] == "3"
    assert run.data.tags["best_rule"] in out
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("evo-seed3-")
    assert json.loads((folder / "run.json").read_text())["run_id"] == run.info.run_id


def test_random_strategy_and_generic_settings(tmp_path, store, capsys):
    assert run_main(tmp_path, "--strategy", "random", "--budget", "5",
                    "--experiment", "other") == 0
    (run,) = parent_runs(store)
    assert run.data.tags["strategy"] == "random" and run.data.tags["budget"] == "5"
    with pytest.raises(SystemExit, match="'random' has no setting.*population"):
        run_main(tmp_path, "--strategy", "random", "--budget", "5", "--set", "population=3")


def test_space_options_bound_the_rules(tmp_path, store):
    assert run_main(tmp_path, "--budget", "6", "--max-binary", "1", "--operands",
                    "g,m,sign_g,sign_m", "--unaries", "id,exp") == 0
    state = load_checkpoint(next((tmp_path / "runs").iterdir()))
    assert state["config"]["space_args"]["max_binary"] == 1
    for record in state["history"]:
        assert record["rule"].count("(") <= 3


def test_the_root_option_reaches_the_space_every_strategy_searches(tmp_path, store):
    assert run_main(tmp_path, "--strategy", "random", "--budget", "4", "--root", "slot") == 0
    state = load_checkpoint(next((tmp_path / "runs").iterdir()))
    assert state["config"]["space_args"] == {"root": "slot"}
    (run,) = parent_runs(store)
    assert run.data.params["space.root"] == "slot"


def test_offline_the_first_command_says_what_to_do_in_one_line(tmp_path, store, monkeypatch):
    import urllib.error

    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs):
            raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    monkeypatch.setenv("EVO_NOS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as stop:
        cli.main(["--preset", "cpu", "--budget", "1", "--quiet", "--out", str(tmp_path / "r")])
    message = str(stop.value.code)
    assert message.startswith("error: could not download CIFAR-10") and "\n" not in message
    assert "--data imagefolder:DIR" in message


def test_unknown_resume_target_is_named(tmp_path, store):
    with pytest.raises(SystemExit, match="no searches to resume"):
        run_main(tmp_path, "--resume", "last")


def test_default_preset_is_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert default_preset() == "cpu"
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert default_preset() == "nos"
    assert DEFAULT_BUDGETS["cpu"] <= 60


def test_smoke_search_rescores_its_top_rules_and_logs_seeds_and_se(tmp_path, store):
    assert cli.main(["--preset", "smoke", "--quiet", "--out", str(tmp_path / "runs"),
                     "--budget", "6", "--funnel-top", "2", "--funnel-seeds", "2",
                     "--final-top", "1", "--final-seeds", "3", "--hurdle", "0.5",
                     "--strategy", "random"]) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    state = load_checkpoint(folder)
    assert state["config"]["funnel"] == {"funnel_top": 2, "funnel_seeds": 2, "final_top": 1,
                                         "final_seeds": 3}
    assert state["config"]["hurdle"] == 0.5
    kinds = [r["kind"] for r in state["history"]]
    assert "rescore" in kinds and kinds.count("final") == 1
    (run,) = parent_runs(store)
    assert run.data.params["funnel_seeds"] == "2" and run.data.params["hurdle"] == "0.5"
    rows = load_hall_of_fame(run.info.run_id, store)
    assert rows[0]["seeds"] == 3 and rows[0]["fitness_se"] is not None
    assert all(r["seeds"] >= 1 for r in rows)


def test_a_bad_funnel_or_hurdle_is_refused_by_name(tmp_path, store, capsys):
    with pytest.raises(SystemExit, match=r"--hurdle expects a quantile in \(0, 1\)"):
        cli.main(["--preset", "smoke", "--quiet", "--out", str(tmp_path / "r"),
                  "--hurdle", "2"])
    with pytest.raises(SystemExit, match="--funnel-seeds expects an integer >= 0"):
        cli.main(["--preset", "smoke", "--quiet", "--out", str(tmp_path / "r"),
                  "--funnel-seeds", "-1"])


def test_rule_settings_from_set_are_searched_logged_and_exported(tmp_path, store):
    assert cli.main(["--preset", "smoke", "--quiet", "--out", str(tmp_path / "runs"),
                     "--budget", "3", "--strategy", "random", "--funnel-seeds", "0",
                     "--set", "bias_correction=false", "--set", "beta1=0.8"]) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    assert load_checkpoint(folder)["config"]["rule_settings"] == {"bias_correction": False,
                                                                   "beta1": 0.8}
    (run,) = parent_runs(store)
    assert run.data.params["rule.bias_correction"] == "False"
    assert run.data.params["rule.beta1"] == "0.8"
    client = MlflowClient(store)
    (spec,) = [f.path for f in client.list_artifacts(run.info.run_id, "best_optimizer")
               if f.path.endswith(".json")]
    exported = json.loads(open(client.download_artifacts(run.info.run_id, spec,
                                                         str(tmp_path))).read())
    assert exported["settings"]["bias_correction"] is False
    assert exported["settings"]["beta1"] == 0.8


def test_a_bad_rule_setting_is_refused_by_name(tmp_path, store):
    with pytest.raises(SystemExit, match="beta1 must be in"):
        cli.main(["--preset", "smoke", "--quiet", "--out", str(tmp_path / "r"),
                  "--set", "beta1=1.5"])


def test_set_schedule_trains_every_child_on_it_and_logs_it(tmp_path, store):
    """--set schedule=cosine: the task's schedule (an MLflow param and in the checkpoint),
    and other scores than the same search at a constant rate (same seed, same rules)."""
    def search(*extra):
        out = tmp_path / ("runs" + "".join(extra))
        assert cli.main(["--preset", "smoke", "--strategy", "random", "--budget", "2",
                         "--quiet", "--out", str(out), "--funnel-top", "0", *extra]) == 0
        (folder,) = out.iterdir()
        return load_checkpoint(folder)
    constant = search()
    cosine = search("--set", "schedule=cosine", "--set", "warmup=3")
    assert cosine["config"]["task_settings"] == {"schedule": "cosine", "warmup": 3}
    runs = parent_runs(store)
    assert [r.data.params.get("task.schedule") for r in runs] == [None, "cosine"]
    assert runs[1].data.params["task.warmup"] == "3"
    rules = [[e["rule"] for e in state["history"]] for state in (constant, cosine)]
    assert rules[0] == rules[1]
    scores = [[e["lr_scores"] for e in state["history"]] for state in (constant, cosine)]
    assert scores[0] != scores[1]
    with pytest.raises(SystemExit, match="schedule must be one of"):
        run_main(tmp_path, "--budget", "2", "--set", "schedule=step")
