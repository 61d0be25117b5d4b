"""A proxy of more than one task: the pointer task, the normalized aggregate, a search."""
import pytest
import torch

from evo_nos.fitness import proxies
from evo_nos.fitness.backend import FitnessBackend
from evo_nos.fitness.protocol import protocol_steps
from evo_nos.fitness.tasks import load_task
from evo_nos.operators.space import SearchSpace
from evo_nos.search import Search
from evo_nos.strategies import make_strategy


@pytest.fixture
def small(monkeypatch):
    """The pointer task at a tenth of its size, and fresh per-process caches."""
    monkeypatch.setitem(proxies.POINTER, "n_train", 200)
    monkeypatch.setitem(proxies.POINTER, "n_val", 100)
    monkeypatch.setitem(proxies.POINTER, "lrs", (1e-3, 1e-2))
    monkeypatch.setattr(proxies, "_SETUPS", {})
    monkeypatch.setattr(proxies, "_REFERENCES", {})
    return load_task("smoke", n_train=200, n_val=100, lrs=[1e-3, 1e-2], final_epochs=1,
                     proxies=["pointer"], schedule="cosine")


def test_pointer_labels_are_the_content_the_pointer_names():
    x, y = proxies.pointer_sequences(50, length=10, n_classes=4, seed=3)
    assert x.shape == (50, 10) and bool((x[:, 0] >= 5).all()) and bool((x[:, 1:] < 4).all())
    pointer = x[:, 0] - 4
    assert torch.equal(y, x[torch.arange(50), pointer])
    assert torch.equal(x, proxies.pointer_sequences(50, length=10, n_classes=4, seed=3)[0])


def test_multi_task_fitness_is_the_mean_of_each_task_over_adams(small):
    backend = FitnessBackend(small, seed=0)
    (proxy,) = proxies.proxy_tasks(small)
    assert proxy.schedule == "cosine"                      # the task's own schedule
    pointer_steps = protocol_steps(proxy, 200 // proxy.batch_size)
    assert backend.steps_per_training == protocol_steps(small, 2) + pointer_steps
    evaluations = backend.evaluate(["adam", "sgd", "exp(exp(exp(exp(g2))))"])
    refs = proxies._REFERENCES[next(iter(proxies._REFERENCES))]
    for evaluation in evaluations[:2]:
        raw = evaluation.task_fitness
        assert list(raw) == ["smoke", "pointer"]
        assert evaluation.fitness == pytest.approx((raw["smoke"] / refs[0]
                                                    + raw["pointer"] / refs[1]) / 2, abs=1e-12)
        assert evaluation.steps == backend.steps_per_training      # every task charged
    assert evaluations[2].status != "ok" and evaluations[2].task_fitness == {}


def test_a_multi_task_search_runs_end_to_end(small, tmp_path):
    strategy = make_strategy("random", SearchSpace(), 0)
    result = Search(strategy, FitnessBackend(small, seed=0), budget=3, progress=False,
                    checkpoint_dir=tmp_path / "search", funnel_top=0).run()
    assert result.compute <= 3.0 + 1e-9 and result.evaluations >= 1
    scored = [e for e in result.history if e["status"] == "ok"]
    assert scored and all(set(e["task_fitness"]) == {"smoke", "pointer"} for e in scored)
    assert set(result.best.task_fitness) == {"smoke", "pointer"}


def test_unknown_proxies_and_proxies_on_another_model_are_refused():
    with pytest.raises(ValueError, match="unknown proxy task.*'maze'.*pointer"):
        FitnessBackend(load_task("smoke", proxies=["maze"]))
    with pytest.raises(ValueError, match="proxies go with the child ConvNet"):
        load_task("quick", group="transfer", proxies=["pointer"])
