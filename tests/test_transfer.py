"""The transfer check: search winners, references and torch's optimizers on held-out tasks."""
import json
import textwrap

import pytest
import torch
from PIL import Image

from evo_nos.cli.option_types import split_list
from evo_nos.cli.transfer import main
from evo_nos.experiments.transfer import (Candidate, TransferRow, baseline_candidates,
                                          load_suite, load_transfer_task, markdown, mean_se,
                                          run_suite, scores_frame, summary_frame, table_text,
                                          transfer_presets)
from evo_nos.fitness import protocol
from evo_nos.fitness.backend import FitnessBackend
from evo_nos.fitness.data import load_images
from evo_nos.fitness.heldout import HeldOutTask
from evo_nos.fitness.protocol import Score
from evo_nos.fitness.models import SmallResNet, make_child, make_resnet
from evo_nos.fitness.tasks import (PAPER_LRS, LATER_KEYS, TASK_KEYS, TRANSFER_KEYS, Task,
                                   load_task, presets_dir)
from evo_nos.fitness.train import score_rule, task_data
from evo_nos.fitness.standin import StandInBackend
from evo_nos.operators.space import SearchSpace
from evo_nos.search import Search
from evo_nos.strategies import make_strategy
from evo_nos.tracking import Tracker, find_runs, load_table, metric_history

from mlflow_store import fresh_store
from user_task_source import BUILD

QUICK = load_transfer_task("quick")

# a task of the user's own, as a file: python -m evo_nos.transfer --task FILE.py:make_task
USER_TASK = BUILD + textwrap.dedent('''
    def make_task(size):
        return HeldOutTask("xor", "mlp", build, lrs=(0.01, 0.1), batch_size=50,
                           description=f"xor at size {size}")
''')


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    uri = fresh_store(tmp_path_factory.mktemp("transfer"))
    strategy = make_strategy("evo", SearchSpace(), 0, population=4, tournament=2,
                             seed_rules="powersign,adam")
    result = Search(strategy, StandInBackend("powersign"), budget=6, progress=False,
                    tracker=Tracker(experiment="transfer", tracking_uri=uri),
                    config={"seed": 0, "preset": "standin:powersign"}).run()
    return result, uri


def test_the_suite_runs_rules_and_torch_baselines_and_logs_the_table(searched, capsys,
                                                                     tmp_path):
    result, uri = searched
    user = tmp_path / "my_task.py"
    user.write_text(USER_TASK)
    code = main(["--run", result.run_id, "--top", "2", "--quick", "--references", "sgd",
                 "--baselines", "torch-adam,torch-sgdm",
                 "--tasks", "tabular", "--task", f"{user}:make_task",
                 "--tracking-uri", uri, "--out", str(tmp_path / "out")])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0], lines[1:6]
    assert header.split() == ["optimizer", "search", "tabular", "xor", "mean", "rank"]
    labels = ["evo s0 #1", "evo s0 #2", "sgd", "torch Adam", "torch SGD+momentum"]
    assert sorted(r.split("  ")[0] for r in rows) == sorted(labels)   # 2+ spaces apart
    best = next(r for r in rows if r.startswith("evo s0 #1"))
    assert best.split()[3] == "1.0000"                      # PowerSign's search fitness
    assert len(lines) == 6 + 2                               # + blank, MLflow line
    (run,) = find_runs("transfer", uri, kind="transfer")
    assert run.tags["source_runs"] == result.run_id
    assert run.params["tasks"] == "tabular,xor" and run.params["xor.lrs"] == "[0.01, 0.1]"
    table = load_table(run.run_id, "transfer.json", uri)
    assert [(r["task"], r["label"]) for r in table] == [
        (t, label) for t in ("tabular", "xor") for label in labels]
    assert table[0]["rule"] == result.best.rule and table[3]["rule"] == "torch-adam"
    assert all(0.0 <= r["test_mean"] <= 1.0 and r["status"] == "ok" for r in table)
    assert all(len(json.loads(r["test"])) == 2 for r in table)           # two seeds
    summary = load_table(run.run_id, "transfer_summary.json", uri)
    assert sorted(r["optimizer"] for r in summary) == sorted(labels)
    ranks = {r["optimizer"]: r["mean rank"] for r in summary}
    assert metric_history(run.run_id, "mean_rank.torch_Adam", uri)[-1][1] == pytest.approx(
        ranks["torch Adam"])
    adam = next(r for r in table if r["task"] == "xor" and r["label"] == "torch Adam")
    assert metric_history(run.run_id, "test.xor.torch_Adam", uri)[-1][1] == pytest.approx(
        adam["test_mean"])
    written = json.loads((tmp_path / "out" / "transfer.json").read_text())
    assert [t["name"] for t in written["tasks"]] == ["tabular", "xor"]
    assert written["preset"] == "quick" and len(written["rows"]) == 10
    text = (tmp_path / "out" / "transfer.md").read_text()
    assert "| evo s0 #1 |" in text and "**xor** (mlp): xor at size quick" in text


def test_a_bad_task_module_is_a_clear_error(capsys):
    code = main(["--quick", "--no-log", "--task", "no_such_pkg_qq.tasks:make_task"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot import module 'no_such_pkg_qq.tasks'" in err and "MODULE:NAME" in err
    assert main(["--quick", "--no-log", "--tasks", "vision"]) == 2
    assert "unknown task 'vision'" in capsys.readouterr().err


def test_repeated_candidates_are_dropped_and_shared_labels_told_apart():
    from evo_nos.experiments.transfer import distinct

    got = distinct([Candidate("adam", "adam", "given"), Candidate("adam", "adam", "reference"),
                    Candidate("mine", "sgd", "given"), Candidate("mine", "sign_g", "given"),
                    Candidate("mine", "g", "given")])
    assert [(c.label, c.rule, c.source) for c in got] == [
        ("adam", "adam", "given"), ("mine", "sgd", "given"), ("mine (2)", "sign_g", "given")]


def test_rule_lists_keep_the_commas_inside_rules():
    assert split_list("adam, mul(sign_g, g),powersign") == ["adam", "mul(sign_g, g)",
                                                             "powersign"]
    assert split_list(" ") == []
    assert [c.rule for c in baseline_candidates()] == ["torch-adam", "torch-adamw", "torch-sgdm",
                                                       "torch-nesterov", "lion"]
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_candidates(["torch-lbfgs"])


# -- the tables: mean ± SE over seeds, ranks per task, mean rank ------------------------------
def fabricated(label, task, tests):
    mean, se = mean_se(tests)
    return TransferRow(label, label, label, "given", None, task, "mlp", 0.01,
                       list(range(len(tests))), list(tests), list(tests), mean, se, "ok")


def test_scores_are_mean_and_standard_error_and_ranked_per_task():
    rows = [fabricated("x", "A", [0.25, 0.75]), fabricated("y", "A", [0.5, 0.5]),
            fabricated("z", "A", [0.125, 0.375]),
            fabricated("x", "B", [0.875]), fabricated("y", "B", [0.75]),
            fabricated("z", "B", [1.0])]
    assert mean_se([0.25, 0.75]) == (0.5, 0.25)             # sd 0.3536 / sqrt(2)
    assert mean_se([0.125, 0.375]) == (0.25, 0.125) and mean_se([0.9]) == (0.9, None)
    assert mean_se([1.0, 2.0, 6.0]) == pytest.approx((3.0, (7.0 / 3) ** 0.5))
    scores = scores_frame(rows)
    assert scores["rank"].tolist() == [1.5, 1.5, 3.0, 2.0, 3.0, 1.0]   # ties share 1 and 2
    summary = summary_frame(rows)
    assert summary["optimizer"].tolist() == ["x", "z", "y"]           # best mean rank first
    assert summary["mean rank"].tolist() == [1.75, 2.0, 2.25]
    assert summary[["A", "A se", "A rank", "B", "B rank"]].values.tolist() == [
        [0.5, 0.25, 1.5, 0.875, 2.0], [0.25, 0.125, 3.0, 1.0, 1.0], [0.5, 0.0, 1.5, 0.75, 3.0]]
    assert summary["B se"].isna().all()                               # one seed: no SE
    text = table_text(rows).splitlines()
    assert text[0].split() == ["optimizer", "search", "A", "B", "mean", "rank"]
    assert text[1].split() == ["x", "0.5000", "±", "0.2500", "(1.5)", "0.8750", "(2)", "1.75"]
    report = markdown(rows, [], [])
    assert "| x |  | 0.5000 ± 0.2500 | 1.5 | 0.8750 | 2 | 1.75 | `x` |" in report
    assert "| A | y | 0.01 | 0.5000 | 0.5000 | 0.0000 | 0.5000, 0.5000 | 1.5 | ok |" in report


def test_the_same_optimizer_from_two_sources_is_trained_once_per_task(monkeypatch):
    calls = []

    def fake(task, setup, optimizer):
        calls.append((task.name, optimizer))
        return Score(optimizer, "ok", 0.1, {0.1: 0.5}, (0, 1), (0.5, 0.5), (0.25, 0.75), 10,
                     0.0, task=task.name)

    monkeypatch.setattr("evo_nos.experiments.transfer.score_optimizer", fake)
    tasks = [HeldOutTask(name, "mlp", lambda seed, device: None) for name in ("a", "b")]
    rows = run_suite([Candidate("evo #1", "adam", "run1", 0.9),
                      Candidate("adam", "adam", "reference"),
                      Candidate("torch Adam", "torch-adam", "baseline"),
                      Candidate("adam", "adam", "given")], tasks,    # a repeat: dropped
                     device="cpu", echo=lambda *_: None)
    assert len(rows) == 6
    assert calls == [("a", "adam"), ("a", "torch-adam"), ("b", "adam"), ("b", "torch-adam")]
    assert [(r.task, r.label, r.source, r.search_fitness, r.test_mean, r.test_se)
            for r in rows[:3]] == [("a", "evo #1", "run1", 0.9, 0.5, 0.25),
                                   ("a", "adam", "reference", None, 0.5, 0.25),
                                   ("a", "torch Adam", "baseline", None, 0.5, 0.25)]
    assert rows[2].math.startswith("torch.optim.Adam")


# -- the suite ------------------------------------------------------------------------------
def test_the_quick_suite_is_three_model_families_with_seeds_and_lr_grids():
    suite = load_suite("quick")
    assert [(t.name, t.family) for t in suite] == [
        ("images", "conv"), ("sequence", "recurrent"), ("tabular", "mlp")]
    assert all(len(t.seeds) >= 2 and len(t.lrs) >= 3 for t in suite)
    images = suite[0]
    assert (images.lrs, images.sweep_epochs, images.final_epochs, images.batch_size) == (
        QUICK.lrs, QUICK.sweep_epochs, QUICK.final_epochs, QUICK.batch_size)
    assert images.settings["data"] == "synthetic" and images.data_seed == QUICK.data_seed
    more = load_suite("quick", ["tabular"], seeds=4, final_epochs=3, threads=2)
    assert [(t.seeds, t.final_epochs, t.threads) for t in more] == [((0, 1, 2, 3), 3, 2)]
    assert load_suite("cpu", ["images"], data="imagefolder:/x")[0].settings["data"] == \
        "imagefolder:/x"
    with pytest.raises(ValueError, match="share a name"):
        load_suite("quick", ["tabular", "tabular"])
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        load_suite("quick", ["tabular"], seeds=0)


def test_the_resnet_task_trains_through_the_suite_loop(monkeypatch, tmp_path):
    settings = tmp_path / "tiny.toml"
    settings.write_text('model = "resnet"\nwidth = 8\nn_train = 200\nn_val = 100\n'
                        'n_test = 100\nimage_size = 16\nlrs = [0.01, 0.1]\nfinal_epochs = 2\n'
                        'batch_size = 100\nthreads = 1\n')
    (task,) = load_suite(str(settings), ["images"])
    assert (task.name, task.seeds, task.final_epochs) == ("images", (0, 1), 2)
    trained, fit = [], protocol.fit

    def spy(model, make_optimizer, lr, data, **kw):
        trained.append((type(model), lr, kw["seed"], kw["total_steps"]))
        return fit(model, make_optimizer, lr, data, **kw)

    monkeypatch.setattr(protocol, "fit", spy)
    (row,) = run_suite([Candidate("adam", "adam", "reference")], [task], device="cpu",
                       echo=lambda *_: None)
    best = row.best_lr
    assert trained == [(SmallResNet, lr, s, 2) for lr in (0.01, 0.1) for s in (0, 1)] + [
        (SmallResNet, best, s, 4) for s in (0, 1)]
    assert row.status == "ok" and row.seeds == [0, 1] and len(row.test) == 2
    assert all(0.0 <= x <= 1.0 for x in row.test) and row.family == "conv"


def test_test_images_come_from_the_test_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("EVO_NOS_CACHE", str(tmp_path / "cache"))   # decoded-image caches
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


def test_child_tasks_are_scored_and_described_as_before():
    task = load_task("smoke")
    assert (task.model, task.n_test, Task().model, Task().n_test) == ("child", 0, "child", 0)
    assert set(task.described()) == (set(TASK_KEYS) - set(TRANSFER_KEYS) - {"pack"}
                                     - set(LATER_KEYS))
    assert set(QUICK.described()) == set(TASK_KEYS) - {"pack"} - set(LATER_KEYS)
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
