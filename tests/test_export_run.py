"""``python -m evo_nos.export --run RUN_ID [--rank K]``: a search's winners as files."""
import json

import pytest
import torch

from evo_nos.cli.export import main
from evo_nos.fitness.standin import StandInBackend
from evo_nos.core.known import KNOWN
from evo_nos.operators.space import SearchSpace
from evo_nos.experiments.references import score_references
from evo_nos.search import Search
from evo_nos.strategies import make_strategy
from evo_nos.tracking import PARENT_TAG, Tracker, find_runs, load_hall_of_fame

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
