"""The transfer check: a search's winners and the references on held-out settings."""
import dataclasses

import pytest
import torch
from PIL import Image

from evo_nos.fitness.models import SmallResNet, make_child, make_resnet
from evo_nos.fitness.standin import StandInBackend
from evo_nos.operators.space import SearchSpace
from evo_nos.search import Search
from evo_nos.strategies import make_strategy
from evo_nos.tracking import Tracker, find_runs, load_table
from evo_nos.cli.transfer import main
from evo_nos.experiments.transfer import (PRESETS, Candidate, _test_split, load_transfer_data,
                              run_transfer, transfer_rule)

from mlflow_store import fresh_store

QUICK = PRESETS["quick"]


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
    data = load_transfer_data(QUICK, "synthetic", "cpu")
    row = transfer_rule(Candidate("adam", "adam", "reference"), data, QUICK)
    assert sorted(row.lr_scores) == sorted(QUICK.lrs)
    assert row.best_lr == max(QUICK.lrs, key=lambda lr: (row.lr_scores[lr], -lr))
    assert row.test_accuracy > 0.2          # 10 classes: well above chance after 2 epochs


def test_a_diverging_rule_scores_zero_without_stopping_the_check():
    settings = dataclasses.replace(QUICK, lrs=(1.0,))
    data = load_transfer_data(settings, "synthetic", "cpu")
    row = transfer_rule(Candidate("boom", "exp(exp(exp(exp(g2))))", "given"), data, settings)
    assert (row.status, row.val_accuracy, row.test_accuracy, row.best_lr) == (
        "diverged", 0.0, 0.0, None)


def test_the_same_rule_from_two_sources_is_trained_once(monkeypatch):
    calls = []

    def fake(candidate, data, settings):
        calls.append(candidate.rule)
        from evo_nos.experiments.transfer import TransferRow
        return TransferRow(candidate.label, candidate.rule, "", candidate.source, None, 0.1,
                           0.5, 0.5, "ok")

    monkeypatch.setattr("evo_nos.experiments.transfer.transfer_rule", fake)
    monkeypatch.setattr("evo_nos.experiments.transfer.load_transfer_data", lambda *a: None)
    rows = run_transfer([Candidate("evo #1", "adam", "run1", 0.9),
                         Candidate("adam", "adam", "reference")], QUICK, "synthetic",
                        echo=lambda *_: None)
    assert calls == ["adam"]
    assert [(r.label, r.source, r.search_fitness) for r in rows] == [
        ("evo #1", "run1", 0.9), ("adam", "reference", None)]


def test_test_images_come_from_the_test_folder(tmp_path):
    colours = {"train": [(255, 0, 0), (0, 255, 0)], "test": [(0, 0, 255), (255, 255, 0)]}
    for split, (a, b) in colours.items():
        for label, colour in (("cat", a), ("dog", b)):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (8, 8), colour).save(tmp_path / split / label / f"{i}.png")
    from evo_nos.fitness.data import parse_data_spec

    x, y = _test_split(parse_data_spec(f"imagefolder:{tmp_path}"), 4, 8, seed=0)
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
