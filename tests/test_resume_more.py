"""``--resume RUN --budget N`` grows a search (to the search it would have been with N
from the start), and ``--resume RUN --data SPEC`` re-points it at the same images."""
import shutil

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from evo_nos.cli import run as cli
from evo_nos.search import load_checkpoint

from mlflow_store import fresh_store

SMOKE = ["--preset", "smoke", "--seed", "4", "--quiet"]


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = fresh_store(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("EVO_NOS_CACHE", str(tmp_path / "data-cache"))
    return uri


def folder(out):
    (one,) = out.iterdir()
    return one


def rows(state):
    return [(r["rule"], r["fitness"], r["status"], r["kind"], r["step"], r["seeds"])
            for r in state["history"]]


def top(state):
    return {k: (e[0]["rule"], e[0]["fitness"], e[0]["seeds"])
            for k, e in state["hall_of_fame"]["top"].items()}


def parent(uri):
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                filter_string="tags.`mlflow.parentRunId` IS NULL")
    return client, run


@pytest.mark.slow
def test_a_grown_budget_ends_as_the_search_given_it_from_the_start(tmp_path, store, capsys):
    one_go = tmp_path / "one-go"
    assert cli.main([*SMOKE, "--budget", "8", "--out", str(one_go),
                     "--tracking-uri", fresh_store(tmp_path / "other")]) == 0
    expected = load_checkpoint(folder(one_go))

    out = tmp_path / "runs"
    assert cli.main([*SMOKE, "--budget", "4", "--out", str(out)]) == 0
    first = load_checkpoint(folder(out))
    assert first["status"] == "finished" and first["budget"] == 4
    capsys.readouterr()
    assert cli.main(["--resume", "last", "--budget", "8", "--quiet", "--out", str(out)]) == 0
    assert "(budget grown from 4)" in capsys.readouterr().err
    grown = load_checkpoint(folder(out))

    assert grown["status"] == "finished" and grown["budget"] == 8
    assert rows(grown) == rows(expected)
    assert top(grown) == top(expected)
    assert grown["trainings"] == expected["trainings"]
    client, run = parent(store)                    # the same run, its budget tag grown
    assert run.info.run_id == first["run_id"] == grown["run_id"]
    assert run.info.status == "FINISHED" and run.data.tags["budget"] == "8"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "compute")]
    assert steps == sorted(steps) and steps[-1] == grown["spent"]


def test_a_budget_cannot_shrink_and_the_refusal_is_one_line(tmp_path, store, capsys):
    out = tmp_path / "runs"
    assert cli.main(["--fitness", "standin:powersign", "--budget", "6", "--quiet",
                     "--out", str(out)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        cli.main(["--resume", "last", "--budget", "3", "--quiet", "--out", str(out)])
    assert str(info.value.code) == ("error: --budget 3 is below this search's budget of 6 "
                                    "child trainings: a budget can grow, not shrink")
    assert load_checkpoint(folder(out))["budget"] == 6


def test_a_search_whose_final_stage_ran_cannot_grow(tmp_path, store):
    out = tmp_path / "runs"
    assert cli.main([*SMOKE, "--budget", "3", "--funnel-seeds", "1", "--final-top", "1",
                     "--final-seeds", "2", "--out", str(out)]) == 0
    with pytest.raises(SystemExit, match="final stage has run"):
        cli.main(["--resume", "last", "--budget", "6", "--quiet", "--out", str(out)])


# -- re-pointing the data ---------------------------------------------------------------------
def write_images(root, seed=0, n_per_class=30, size=8):
    rng = np.random.default_rng(seed)
    for label in ("a", "b"):
        (root / "train" / label).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "train" / label / f"{i:03d}.png")


@pytest.fixture
def tiny_preset(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text('data = "synthetic"\nn_train = 40\nn_val = 20\nimage_size = 8\n'
                    'lrs = [0.01, 0.1]\nsweep_epochs = 1\nfinal_epochs = 1\nbatch_size = 20\n'
                    'threads = 1\n')
    return str(path)


def test_resume_re_points_data_that_holds_the_same_images(tmp_path, store, tiny_preset,
                                                          capsys):
    write_images(tmp_path / "here")
    out = tmp_path / "runs"
    common = ["--preset", tiny_preset, "--quiet", "--out", str(out)]
    assert cli.main([*common, "--budget", "2", "--data", f"imagefolder:{tmp_path / 'here'}"]) == 0
    first = load_checkpoint(folder(out))
    assert len(first["config"]["data_fingerprint"]) == 16

    shutil.move(tmp_path / "here", tmp_path / "moved")         # the images, elsewhere
    capsys.readouterr()
    assert cli.main(["--resume", "last", "--budget", "3", "--quiet", "--out", str(out),
                     "--data", f"imagefolder:{tmp_path / 'moved'}"]) == 0
    assert "holds the same images as" in capsys.readouterr().err
    state = load_checkpoint(folder(out))
    assert state["status"] == "finished" and state["budget"] == 3
    assert state["config"]["data"] == f"imagefolder:{tmp_path / 'moved'}"
    assert rows(state)[:len(first["history"])] == rows(first)


def test_resume_refuses_other_images_in_one_line(tmp_path, store, tiny_preset, capsys):
    write_images(tmp_path / "here")
    write_images(tmp_path / "other", seed=1)
    out = tmp_path / "runs"
    assert cli.main(["--preset", tiny_preset, "--quiet", "--out", str(out), "--budget", "2",
                     "--data", f"imagefolder:{tmp_path / 'here'}"]) == 0
    before = load_checkpoint(folder(out))
    with pytest.raises(SystemExit) as info:
        cli.main(["--resume", "last", "--budget", "3", "--quiet", "--out", str(out),
                  "--data", f"imagefolder:{tmp_path / 'other'}"])
    message = str(info.value.code)
    assert message.startswith(f"error: the images of --data imagefolder:{tmp_path / 'other'} "
                              "are not the ones this search trained on")
    assert "\n" not in message
    assert load_checkpoint(folder(out))["history"] == before["history"]
