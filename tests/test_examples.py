"""Every example runs as is (on smoke settings, chosen through its environment variables)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evo_nos.tracking import load_search_runs

from mlflow_store import fresh_store

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, cwd, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EVO_NOS_")}
    environment.update(MPLBACKEND="Agg", **env)
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """examples/search_api.py on the smoke preset, into a fresh store."""
    folder = tmp_path_factory.mktemp("examples")
    uri = fresh_store(folder / "store")
    out = run_example("search_api.py", folder, MLFLOW_TRACKING_URI=uri, EVO_NOS_PRESET="smoke",
                      EVO_NOS_BUDGET="2")
    return out, uri, folder


def test_search_api_example_runs_a_tracked_search(searched):
    out, uri, folder = searched
    assert "finished: 2 child trainings" in out and "best rule:" in out
    (run,) = load_search_runs("evo_nos_examples", uri)
    assert run.params["preset"] == "smoke" and run.tags["budget"] == "2"
    assert run.tags["best_rule"] in out
    assert (folder / "evo_nos_runs" / "example-evo-seed0" / "checkpoint.pkl").is_file()


def test_read_hall_of_fame_example_reads_the_search_back(searched):
    _, uri, folder = searched
    (run,) = load_search_runs("evo_nos_examples", uri)
    out = run_example("read_hall_of_fame.py", folder, MLFLOW_TRACKING_URI=uri,
                      EVO_NOS_EXPERIMENT="evo_nos_examples")
    assert f"hall of fame of {run.run_id}:" in out
    assert f"#1  {float(run.tags['best_fitness']):.4f}" in out
    assert run.tags["best_rule"] in out
    assert "best fitness after child trainings:" in out and "2: " in out


def test_train_with_exported_example_trains_with_a_searched_rule(searched):
    _, uri, folder = searched
    (run,) = load_search_runs("evo_nos_examples", uri)
    out = run_example("train_with_exported.py", folder, MLFLOW_TRACKING_URI=uri,
                      EVO_NOS_RUN=run.run_id, EVO_NOS_EPOCHS="1", EVO_NOS_IMAGES="300")
    assert f"best rule of search {run.run_id}: {run.tags['best_rule']}" in out
    assert "exported found_optimizer.py: class" in out
    assert "epoch 1/1: train loss" in out and "test accuracy" in out


def test_train_with_exported_example_defaults_to_powersign(tmp_path):
    out = run_example("train_with_exported.py", tmp_path, EVO_NOS_EPOCHS="1",
                      EVO_NOS_IMAGES="300")
    assert "class PowerSign, w <- w - lr * exp(sign(g)·sign(m̂))·g" in out
    losses = [float(line.split()[-1]) for line in out.splitlines() if "train loss" in line]
    assert len(losses) == 1 and losses[0] > 0
