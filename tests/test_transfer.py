"""The transfer check: a search's winners and the references on held-out settings."""
import pytest
import torch
from PIL import Image

from evo_nos.fitness import train as fitness_train
from evo_nos.fitness.backend import FitnessBackend
from evo_nos.fitness.data import load_images
from evo_nos.fitness.models import SmallResNet, make_child, make_resnet
from evo_nos.fitness.tasks import (PAPER_LRS, TASK_KEYS, TRANSFER_KEYS, Task, load_task,
                                   presets_dir)
from evo_nos.fitness.train import score_rule, task_data
from evo_nos.fitness.standin import StandInBackend
from evo_nos.operators.space import SearchSpace
from evo_nos.search import Search
from evo_nos.strategies import make_strategy
from evo_nos.tracking import Tracker, find_runs, load_table
from evo_nos.cli.transfer import main
from evo_nos.experiments.transfer import (Candidate, load_transfer_task, run_transfer,
                                          transfer_presets, transfer_rule)

from mlflow_store import fresh_store

QUICK = load_transfer_task("quick")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    uri = fresh_store(tmp_path_factory.mktemp("transfer"))
    strategy = make_strategy("evo", SearchSpace(), 0, population=4, tournament=2,
                             seed_rules="powersign,adam")
    result = Search(strategy, StandInBackend("powersign"), budget=6, progress=False,
                    tracker=Tracker(experiment="transfer", tracking_uri=uri),
                    config={"seed": 0, "preset": "standin:powersign"}).run()
    return result, uri


def test_transfer_prints_a_row_per_rule_and_logs_the_table(searched, capsys, tmp_path):
    result, uri = searched
    code = main(["--run", result.run_id, "--top", "2", "--quick", "--references", "sgd",
                 "--tracking-uri", uri, "--out", str(tmp_path)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0], lines[1:4]
    assert header.split()[:6] == ["rule", "search", "best", "lr", "val", "test"]
    assert [r.split()[:3] for r in rows[:2]] == [["evo", "s0", "#1"], ["evo", "s0", "#2"]]
    assert rows[2].split()[0] == "sgd" and len(lines) == 4 + 2   # + blank, MLflow line
    assert rows[0].split()[3] == "1.0000"                   # PowerSign's search fitness
    (run,) = find_runs("transfer", uri, kind="transfer")
    assert run.tags["source_runs"] == result.run_id
    table = load_table(run.run_id, "transfer.json", uri)
    assert [r["label"] for r in table] == ["evo s0 #1", "evo s0 #2", "sgd"]
    assert table[0]["rule"] == result.best.rule
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and r["status"] == "ok" for r in table)
    assert "| evo s0 #1 |" in (tmp_path / "transfer.md").read_text()


def test_each_rule_gets_its_own_lr_sweep_and_a_test_score(tmp_path):
    data = task_data(QUICK, "cpu")           # QUICK.data: synthetic
    row = transfer_rule(Candidate("adam", "adam", "reference"), data, QUICK)
    assert sorted(row.lr_scores) == sorted(QUICK.lrs)
    assert row.best_lr == max(QUICK.lrs, key=lambda lr: (row.lr_scores[lr], -lr))
    assert row.test_accuracy > 0.2          # 10 classes: well above chance after 2 epochs


def test_a_diverging_rule_scores_zero_without_stopping_the_check():
    settings = QUICK.replace(lrs=(1.0,))
    data = task_data(settings, "cpu")
    row = transfer_rule(Candidate("boom", "exp(exp(exp(exp(g2))))", "given"), data, settings)
    assert (row.status, row.val_accuracy, row.test_accuracy, row.best_lr) == (
        "diverged", 0.0, 0.0, None)


def test_the_same_rule_from_two_sources_is_trained_once(monkeypatch):
    calls = []

    def fake(candidate, data, settings, **_):
        calls.append(candidate.rule)
        from evo_nos.experiments.transfer import TransferRow
        return TransferRow(candidate.label, candidate.rule, "", candidate.source, None, 0.1,
                           0.5, 0.5, "ok")

    monkeypatch.setattr("evo_nos.experiments.transfer.transfer_rule", fake)
    monkeypatch.setattr("evo_nos.experiments.transfer.task_data", lambda *a: None)
    rows = run_transfer([Candidate("evo #1", "adam", "run1", 0.9),
                         Candidate("adam", "adam", "reference")], QUICK,
                        echo=lambda *_: None)
    assert calls == ["adam"]
    assert [(r.label, r.source, r.search_fitness) for r in rows] == [
        ("evo #1", "run1", 0.9), ("adam", "reference", None)]


def test_test_images_come_from_the_test_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("EVO_NOS_DATA", str(tmp_path / "cache"))   # decoded-image caches
    colours = {"train": [(255, 0, 0), (0, 255, 0)], "test": [(0, 0, 255), (255, 255, 0)]}
    for split, (a, b) in colours.items():
        for label, colour in (("cat", a), ("dog", b)):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (8, 8), colour).save(tmp_path / split / label / f"{i}.png")
    splits = load_images(f"imagefolder:{tmp_path}", n_train=2, n_val=1, image_size=8,
                         n_test=4)
    x, y = splits.test_x, splits.test_y
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.uint8
    pixels = {tuple(img[:, 0, 0].tolist()) for img in x}
    assert pixels <= {(0, 0, 255), (255, 255, 0)}
    assert all(tuple(img[:, 0, 0].tolist()) == colours["test"][int(label)]
               for img, label in zip(x, y))


def test_the_transfer_network_is_a_larger_resnet():
    net = make_resnet(0, width=16)
    assert isinstance(net, SmallResNet)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    params = sum(p.numel() for p in net.parameters())
    child = sum(p.numel() for p in make_child(0).parameters())
    assert params > 2 * child
    again = make_resnet(0, width=16)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters()))
    with pytest.raises(ValueError, match="three counts"):
        SmallResNet(blocks=(1, 1))


def test_a_compare_report_names_each_strategys_best_search(tmp_path):
    import json

    from evo_nos.experiments.transfer import winners

    report = {"runs": [
        {"run_id": "a", "strategy": "evo", "best_fitness": 0.5},
        {"run_id": "b", "strategy": "evo", "best_fitness": 0.7},
        {"run_id": "c", "strategy": "random", "best_fitness": 0.6},
        {"run_id": "d", "strategy": "rl", "best_fitness": None}]}
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps(report))
    assert winners(path) == ["b", "c"]
    with pytest.raises(ValueError, match="not a compare report"):
        winners(tmp_path / "missing.json")


# -- the transfer check is the fitness protocol on other tasks --------------------------------
def test_transfer_presets_are_toml_files_read_by_load_task(tmp_path):
    assert transfer_presets() == ["cpu", "gpu", "quick"]
    for name in transfer_presets():
        path = presets_dir() / "transfer" / f"{name}.toml"
        assert path.is_file()
        task = load_transfer_task(name)
        assert isinstance(task, Task) and task.name == name
        assert task == load_task(name, group="transfer") == load_task(str(path))
        assert task.model == "resnet" and task.n_test > 0 and task.data_seed == 1
    assert (QUICK.width, QUICK.blocks, QUICK.n_train, QUICK.n_val, QUICK.n_test,
            QUICK.image_size, QUICK.lrs, QUICK.sweep_epochs, QUICK.final_epochs,
            QUICK.batch_size, QUICK.threads) == (8, (1, 1, 1), 600, 200, 300, 16,
                                                 (1e-3, 1e-2, 1e-1), 1, 2, 100, 1)
    cpu, gpu = load_transfer_task("cpu"), load_transfer_task("gpu")
    assert (cpu.width, cpu.blocks, cpu.n_train, cpu.n_val, cpu.n_test, cpu.lrs,
            cpu.final_epochs, cpu.batch_size, cpu.threads) == (
        16, (1, 1, 1), 5000, 1000, 2000, PAPER_LRS, 10, 100, 0)
    assert (gpu.width, gpu.blocks, gpu.n_train, gpu.n_val, gpu.n_test, gpu.lrs,
            gpu.final_epochs, gpu.batch_size, gpu.threads) == (
        16, (3, 3, 3), 45000, 5000, 10000, PAPER_LRS, 20, 128, 0)
    assert load_transfer_task("quick", final_epochs=5, threads=None).final_epochs == 5
    mine = tmp_path / "mine.toml"
    mine.write_text('model = "resnet"\nn_train = 300\nn_val = 100\nn_test = 50\n')
    assert (load_transfer_task(str(mine)).name, load_transfer_task(str(mine)).n_test) == (
        "mine", 50)
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "resnet"\nn_test = 50\nepochs = 3\n')
    with pytest.raises(ValueError, match="unknown key.*'epochs'.*valid keys"):
        load_transfer_task(str(bad))
    with pytest.raises(ValueError, match=r"unknown preset 'nos'.*\['cpu', 'gpu', 'quick'\]"):
        load_transfer_task("nos")
    with pytest.raises(ValueError, match="n_test"):
        load_transfer_task("quick", n_test=0)
    with pytest.raises(ValueError, match="model"):
        load_transfer_task("quick", model="vit")


def test_the_transfer_check_trains_through_the_fitness_protocol(monkeypatch):
    task = QUICK.replace(lrs=(1e-2, 1e-1), n_train=200, n_val=100, n_test=100)
    runs, fits = [], []
    train_run, fit = fitness_train.train_run, fitness_train.fit

    def spy_run(rule, lr, data, task, **kw):
        runs.append((lr, kw["epochs"], kw.get("test", False)))
        return train_run(rule, lr, data, task, **kw)

    def spy_fit(model, *args, **kw):
        fits.append((type(model), kw["seed"]))
        return fit(model, *args, **kw)

    monkeypatch.setattr(fitness_train, "train_run", spy_run)
    monkeypatch.setattr(fitness_train, "fit", spy_fit)
    rows = run_transfer([Candidate("adam", "adam", "reference"),
                         Candidate("sgd", "sgd", "reference")], task, device="cpu",
                        echo=lambda *_: None)
    best = [r.best_lr for r in rows]
    assert runs == [(1e-2, 1, False), (1e-1, 1, False), (best[0], 2, True),
                    (1e-2, 1, False), (1e-1, 1, False), (best[1], 2, True)]
    assert fits == [(SmallResNet, 0)] * 6               # one seed shared by every rule
    assert all(0.0 <= r.test_accuracy <= 1.0 and r.status == "ok" for r in rows)


def test_child_tasks_are_scored_and_described_as_before():
    task = load_task("smoke")
    assert (task.model, task.n_test, Task().model, Task().n_test) == ("child", 0, "child", 0)
    assert set(task.described()) == set(TASK_KEYS) - set(TRANSFER_KEYS)
    assert set(QUICK.described()) == set(TASK_KEYS)
    assert not any(k.split(".", 1)[1] in TRANSFER_KEYS
                   for k in FitnessBackend(task, device="cpu").describe() if k.startswith("task."))
    # the exact scores of Adam on the smoke preset, recorded before the transfer check
    # moved onto the fitness protocol (python -m evo_nos.evaluate --rule adam --preset smoke)
    ev = FitnessBackend(task, seed=0, device="cpu").evaluate(["adam"])[0]
    assert (ev.fitness, ev.best_lr, ev.steps) == (0.92, 0.01, 80)
    assert ev.lr_scores == {1e-05: 0.042, 0.0001: 0.076, 0.001: 0.498, 0.01: 0.642,
                            0.1: 0.306, 1.0: 0.134}
    data = task_data(task, "cpu")
    assert data.n_test == 0
    ev = score_rule("adam", data, task, seed=0)
    assert (ev.fitness, ev.best_lr) == (0.972, 0.01)
    assert ev.lr_scores == {1e-05: 0.138, 0.0001: 0.162, 0.001: 0.628, 0.01: 0.664,
                            0.1: 0.246, 1.0: 0.2}


def test_a_synthetic_test_split_is_disjoint_from_train_and_validation():
    plain = load_images("synthetic", n_train=100, n_val=50, image_size=8, seed=1)
    with_test = load_images("synthetic", n_train=100, n_val=50, image_size=8, seed=1,
                            n_test=30)
    assert plain.test_x is None and with_test.test_x.shape == (30, 3, 8, 8)
    assert with_test.test_y.shape == (30,)
    seen = {img.numpy().tobytes() for img in torch.cat([with_test.train_x, with_test.val_x])}
    assert not any(img.numpy().tobytes() in seen for img in with_test.test_x)
