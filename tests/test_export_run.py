"""``python -m evo_nos.export --run RUN_ID [--rank K]``: a search's winners as files."""
import ast
import inspect
import json

import pytest
import torch

from evo_nos.cli.export import main
from evo_nos.fitness.evaluation import Evaluation
from evo_nos.fitness.standin import StandInBackend
from evo_nos.core.known import KNOWN
from evo_nos.operators.space import SearchSpace
from evo_nos.experiments.references import score_references
from evo_nos.search import HallOfFame, Search, SearchResult
from evo_nos.strategies import make_strategy
from evo_nos.tracking import (PARENT_TAG, Tracker, export_origin, find_runs, hall_of_fame_entry,
                              load_artifact_text, load_hall_of_fame)

from mlflow_store import fresh_store

POWERSIGN = KNOWN["powersign"].canonical


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished stand-in search warm-started with PowerSign, its own target: PowerSign
    is certain to top the hall of fame."""
    uri = fresh_store(tmp_path_factory.mktemp("export_run"))
    strategy = make_strategy("evo", SearchSpace(), 0, population=4, tournament=2,
                             seed_rules="powersign,adam")
    result = Search(strategy, StandInBackend("powersign"), budget=8, progress=False,
                    tracker=Tracker(experiment="export", tracking_uri=uri),
                    config={"seed": 0, "preset": "standin:powersign"}).run()
    return result, uri


def exported_class(path):
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    spec = json.loads(path.with_suffix(".json").read_text())
    return namespace[spec["class_name"]], spec


def test_export_by_run_id_writes_the_best_rule_and_it_trains(searched, tmp_path, capsys):
    result, uri = searched
    out = tmp_path / "Best.py"
    assert main(["--run", result.run_id, "--out", str(out), "--tracking-uri", uri]) == 0
    assert "wrote" in capsys.readouterr().out
    cls, spec = exported_class(out)
    assert spec["rule"] == POWERSIGN == result.best.rule
    # a few steps of least squares with the exported class reduce the loss
    torch.manual_seed(0)
    x, w_true = torch.randn(64, 5), torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0])
    y = x @ w_true
    w = torch.nn.Parameter(torch.zeros(5))
    opt = cls([w], lr=0.05)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_rank_k_exports_the_kth_rule_of_the_hall_of_fame(searched, tmp_path):
    result, uri = searched
    rows = load_hall_of_fame(result.run_id, uri)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 2
    out = tmp_path / "Second.py"
    assert main(["--run", result.run_id, "--rank", "2", "--out", str(out),
                 "--tracking-uri", uri]) == 0
    _, spec = exported_class(out)
    assert spec["rule"] == rows[1]["rule"] == result.hall_of_fame.top[1].rule


def test_a_hall_of_fame_child_run_exports_its_rule(searched, tmp_path):
    result, uri = searched
    children = find_runs("export", uri, kind=None, parents_only=False,
                         tags={PARENT_TAG: result.run_id, "rank": "1"})
    out = tmp_path / "Child.py"
    assert main(["--run", children[0].run_id, "--out", str(out), "--tracking-uri", uri]) == 0
    assert exported_class(out)[1]["rule"] == POWERSIGN


@pytest.mark.parametrize("argv, message", [
    (["--rank", "99"], "hall of fame has"),
    (["--rule", "sgd"], "give --rule or --run, not both"),
])
def test_bad_requests_are_refused_with_the_reason(searched, tmp_path, capsys, argv, message):
    result, uri = searched
    with pytest.raises(SystemExit):
        main(["--run", result.run_id, *argv, "--out", str(tmp_path / "x.py"),
              "--tracking-uri", uri])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.py").exists()


def test_unknown_run_and_runs_that_are_no_search_are_refused(searched, tmp_path, capsys):
    _, uri = searched
    with pytest.raises(SystemExit):
        main(["--run", "0" * 32, "--out", str(tmp_path / "x.py"), "--tracking-uri", uri])
    assert f"no MLflow run {'0' * 32!r} in {uri}" in capsys.readouterr().err
    refs = score_references(StandInBackend("powersign"), preset="p", seed=0, names=["sgd"],
                            experiment="export", tracking_uri=uri)
    with pytest.raises(SystemExit):
        main(["--run", refs.run_id, "--out", str(tmp_path / "x.py"), "--tracking-uri", uri])
    assert "is a 'reference' run, not a search" in capsys.readouterr().err


# ---- what an export of a search records: its best lr, fitness ± SE, preset, run ----------

ADAM = KNOWN["adam"].canonical


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A search's end logged by the Tracker, with a hall of fame of known numbers:
    PowerSign first (3 seeds: fitness ± SE, best lr 0.1), Adam second (one seed)."""
    uri = fresh_store(tmp_path_factory.mktemp("export_logged"))
    hof = HallOfFame(5)
    hof.update(Evaluation(POWERSIGN, 0.8125, "ok", best_lr=0.1, lr_scores={0.1: 0.8},
                          trainings=3, seeds=3, fitness_se=0.015625,
                          seed_fitness=[0.8, 0.8125, 0.825]))
    hof.update(Evaluation(ADAM, 0.75, "ok", best_lr=0.01, lr_scores={0.01: 0.75}, trainings=1))
    tracker = Tracker(experiment="export", tracking_uri=uri)
    run_id = tracker.start(params={"preset": "smoke"}, tags={"preset": "smoke"})
    tracker.finish(SearchResult("budget", 4, 2, {}, hof, [], compute=4, budget=4,
                                strategy="evo"))
    return run_id, uri


def test_run_without_out_writes_the_class_file_here_and_says_so(logged, tmp_path, monkeypatch,
                                                                capsys):
    run_id, uri = logged
    monkeypatch.chdir(tmp_path)
    assert main(["--run", run_id, "--tracking-uri", uri]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "wrote class PowerSign to PowerSign.py (spec: PowerSign.json)",
        "  w <- w - lr * exp(sign(g)·sign(m̂))·g",
        f"  Found by evo_nos search run {run_id} (preset 'smoke'), hall-of-fame rank 1: "
        "fitness 0.8125 ± 0.015625 (mean ± SE over 3 seeds); best lr 0.1.",
        "  use: opt = PowerSign(model.parameters())  # lr=0.1 by default"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PowerSign.json", "PowerSign.py"]


def test_the_class_defaults_to_the_runs_best_lr(logged, tmp_path):
    run_id, uri = logged
    rows = load_hall_of_fame(run_id, uri)
    assert [(r["rule"], r["best_lr"]) for r in rows] == [(POWERSIGN, 0.1), (ADAM, 0.01)]
    for rank, row in enumerate(rows, 1):
        out = tmp_path / f"rank{rank}.py"
        assert main(["--run", run_id, "--rank", str(rank), "--out", str(out),
                     "--tracking-uri", uri]) == 0
        cls, spec = exported_class(out)
        assert inspect.signature(cls).parameters["lr"].default == row["best_lr"]
        assert cls([torch.nn.Parameter(torch.ones(1))]).defaults["lr"] == row["best_lr"]
        assert spec["defaults"]["lr"] == row["best_lr"]


def test_docstring_and_spec_record_fitness_se_preset_run_and_rule(logged, tmp_path):
    run_id, uri = logged
    row = load_hall_of_fame(run_id, uri)[0]
    out = tmp_path / "Best.py"
    assert main(["--run", run_id, "--out", str(out), "--tracking-uri", uri]) == 0
    cls, spec = exported_class(out)
    recorded = {"run_id": run_id, "rank": 1, "rule": row["rule"], "preset": "smoke",
                "fitness": row["fitness"], "fitness_se": row["fitness_se"],
                "seeds": row["seeds"], "best_lr": row["best_lr"]}
    assert spec["search"] == recorded == {
        "run_id": run_id, "rank": 1, "rule": POWERSIGN, "preset": "smoke", "fitness": 0.8125,
        "fitness_se": 0.015625, "seeds": 3, "best_lr": 0.1}
    assert spec["rule"] == cls.rule == POWERSIGN
    found = [f"Found by evo_nos search run {run_id} (preset 'smoke'),",
             "hall-of-fame rank 1: fitness 0.8125 ± 0.015625 (mean ± SE over 3 seeds);",
             "best lr 0.1."]
    doc = inspect.cleandoc(cls.__doc__).splitlines()
    at = doc.index(found[0])
    assert doc[at:at + 3] == found
    assert f"Rule (evo_nos canonical string): {POWERSIGN}" in doc
    assert "    lr: learning rate (default 0.1: the lr the search chose for this rule)." in doc
    module_doc = ast.get_docstring(ast.parse(out.read_text(encoding="utf-8"))).splitlines()
    assert module_doc[module_doc.index(found[0]):][:3] == found


def test_an_entry_of_one_seed_records_no_se(logged, tmp_path):
    run_id, uri = logged
    out = tmp_path / "Second.py"
    assert main(["--run", run_id, "--rank", "2", "--out", str(out), "--tracking-uri", uri]) == 0
    cls, spec = exported_class(out)
    assert spec["search"] == {"run_id": run_id, "rank": 2, "rule": ADAM, "preset": "smoke",
                              "fitness": 0.75, "fitness_se": None, "seeds": 1, "best_lr": 0.01}
    assert "hall-of-fame rank 2: fitness 0.75 (1 seed, no SE);" in \
        inspect.cleandoc(cls.__doc__).splitlines()
    # an Adam-like rule: betas=(beta1, beta2), as torch's Adam
    assert inspect.signature(cls).parameters["betas"].default == (0.9, 0.999)


def test_the_searchs_own_best_optimizer_is_what_export_run_writes(logged, tmp_path,
                                                                  monkeypatch):
    run_id, uri = logged
    monkeypatch.chdir(tmp_path)
    assert main(["--run", run_id, "--tracking-uri", uri]) == 0
    assert load_artifact_text(run_id, "best_optimizer/PowerSign.py", uri) == \
        (tmp_path / "PowerSign.py").read_text(encoding="utf-8")
    assert json.loads(load_artifact_text(run_id, "best_optimizer/PowerSign.json", uri)) == \
        json.loads((tmp_path / "PowerSign.json").read_text(encoding="utf-8"))


def test_a_child_run_records_its_search(logged, tmp_path):
    run_id, uri = logged
    child = find_runs("export", uri, kind=None, parents_only=False,
                      tags={PARENT_TAG: run_id, "rank": "2"})[0]
    assert hall_of_fame_entry(child.run_id, tracking_uri=uri) == {
        **load_hall_of_fame(run_id, uri)[1], "run_id": run_id, "preset": "smoke"}
    assert export_origin(child.run_id, tracking_uri=uri) == export_origin(run_id, 2, uri)
    out = tmp_path / "Child.py"
    assert main(["--run", child.run_id, "--out", str(out), "--tracking-uri", uri]) == 0
    assert exported_class(out)[1]["search"]["run_id"] == run_id


def test_the_best_optimizer_records_the_numbers_its_hall_of_fame_json_holds(tmp_path,
                                                                           monkeypatch):
    # numbers with more digits than hall_of_fame.json keeps: the search's own export
    # (made from its hall of fame in memory) records them as export --run reads them
    uri = fresh_store(tmp_path / "store")
    hof = HallOfFame(3)
    hof.update(Evaluation(POWERSIGN, 0.8133333333333334, "ok", best_lr=0.1,
                          lr_scores={0.1: 0.8}, trainings=3, seeds=3,
                          fitness_se=0.008819171036881963, seed_fitness=[0.8, 0.81, 0.83]))
    tracker = Tracker(experiment="digits", tracking_uri=uri)
    run_id = tracker.start(params={"preset": "smoke"})
    tracker.finish(SearchResult("finished", 3, 1, {}, hof, [], budget=3, strategy="evo"))
    monkeypatch.chdir(tmp_path)
    assert main(["--run", run_id, "--tracking-uri", uri]) == 0
    assert load_artifact_text(run_id, "best_optimizer/PowerSign.py", uri) == \
        (tmp_path / "PowerSign.py").read_text(encoding="utf-8")
    spec = json.loads((tmp_path / "PowerSign.json").read_text(encoding="utf-8"))
    assert json.loads(load_artifact_text(run_id, "best_optimizer/PowerSign.json", uri)) == spec
    assert spec["search"]["fitness"] == 0.8133333333 and spec["search"]["preset"] == "smoke"
