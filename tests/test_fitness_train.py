"""Tasks/presets, the child network, and one training run of the protocol."""
import math
import pickle

import pytest
import torch

from evo_nos.fitness.data import DeviceData, load_images
from evo_nos.fitness.models import ChildNet, make_child
from evo_nos.fitness.tasks import PAPER_LRS, TASK_KEYS, Task, load_task, presets, presets_dir
from evo_nos.fitness.train import run_steps, score_rule, train_run


# -- tasks ---------------------------------------------------------------------------------
def test_presets_are_found_beside_the_package():
    assert {"smoke", "cpu", "nos"} <= set(presets())
    assert (presets_dir() / "smoke.toml").is_file()


def test_nos_preset_is_the_papers_protocol():
    task = load_task("nos")
    assert task.lrs == PAPER_LRS == (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    assert (task.sweep_epochs, task.final_epochs) == (1, 5)
    assert (task.n_train, task.n_val, task.batch_size) == (45_000, 5_000, 100)
    assert task.data == "cifar10" and task.width == 32


def test_cpu_preset_keeps_the_lr_grid_on_a_cifar_subset():
    task = load_task("cpu")
    assert task.lrs == PAPER_LRS and task.data == "cifar10"
    assert task.n_train + task.n_val <= 5_000


def test_overrides_apply_and_none_means_unchanged():
    task = load_task("smoke", data="imagefolder:/somewhere", final_epochs=3, n_val=None)
    assert task.data == "imagefolder:/somewhere" and task.final_epochs == 3
    assert task.n_val == load_task("smoke").n_val
    assert task.name == "smoke"


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ValueError, match="unknown key.*'epochs'.*valid keys.*final_epochs"):
        load_task("smoke", epochs=3)


def test_unknown_preset_lists_the_presets():
    listed = r"unknown preset 'fastest'.*\['cpu', 'fast', 'fast-cosine', 'mix', 'nos', 'smoke'"
    with pytest.raises(ValueError, match=listed):
        load_task("fastest")


def test_a_toml_file_path_loads_and_unknown_keys_in_it_are_refused(tmp_path):
    good = tmp_path / "mine.toml"
    good.write_text('data = "synthetic"\nn_train = 300\nn_val = 100\nlrs = [0.1, 1]\n')
    task = load_task(str(good))
    assert (task.name, task.n_train, task.lrs) == ("mine", 300, (0.1, 1.0))
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rates = [0.1]\n")
    with pytest.raises(ValueError, match="learning_rates"):
        load_task(str(bad))


def test_task_is_plain_data():
    task = load_task("smoke")
    assert pickle.loads(pickle.dumps(task)) == task
    assert set(task.as_dict()) == set(TASK_KEYS)
    assert task.as_dict()["lrs"] == list(task.lrs)


def test_task_rejects_nonsense_values():
    with pytest.raises(ValueError, match="lrs"):
        Task(lrs=())
    with pytest.raises(ValueError, match="batch_size"):
        Task(n_train=50, batch_size=100)


# -- child network -------------------------------------------------------------------------
def test_child_net_shapes_and_parameter_count():
    net = ChildNet(image_size=32)
    out = net(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 10)
    # conv 3*32*9 + BN 2*32 + conv 32*32*9 + BN 2*32 + linear 2048*10 + 10
    assert sum(p.numel() for p in net.parameters()) == 864 + 64 + 9216 + 64 + 20480 + 10
    gap = ChildNet(image_size=32, head="gap")
    assert sum(p.numel() for p in gap.parameters()) == 864 + 64 + 9216 + 64 + 320 + 10


def test_child_init_depends_only_on_the_seed_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = make_child(7), make_child(7), make_child(8)
    assert torch.equal(torch.get_rng_state(), before)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    assert a.features[0].weight.is_contiguous(memory_format=torch.channels_last)


# -- training --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke():
    task = load_task("smoke")
    splits = load_images(task.data, n_train=task.n_train, n_val=task.n_val,
                         image_size=task.image_size)
    return task, DeviceData(splits, "cpu")


def test_run_steps_counts_full_batches_per_epoch(smoke):
    task, data = smoke
    assert data.steps_per_epoch(task.batch_size) == task.n_train // task.batch_size == 10
    assert run_steps(task, data, 2) == 20
    assert run_steps(task, data, 0.5) == 5


def test_sgd_run_learns_and_takes_the_planned_steps(smoke):
    task, data = smoke
    result = train_run("sgd", 0.1, data, task, seed=0, epochs=2)
    assert not result.diverged and result.steps == 20
    assert result.val > 0.5  # 10 classes: chance is 0.1


def test_overflowing_rule_stops_at_once_and_scores_zero(smoke):
    task, data = smoke
    result = train_run("exp(div(sign_g, sqrt(g)))", 1e-5, data, task, seed=0, epochs=2)
    assert result.diverged and result.val == 0.0
    assert result.steps < 5  # stopped at once, not after the 20 planned steps
    assert "non-finite" in result.reason


def test_score_rule_sweeps_every_lr_then_trains_the_best(smoke):
    task, data = smoke
    task = task.replace(lrs=(1e-4, 0.1))
    ev = score_rule("sgd", data, task, seed=0)
    assert ev.status == "ok" and ev.trainings == 1
    assert list(ev.lr_scores) == [1e-4, 0.1]
    assert ev.best_lr == max(ev.lr_scores, key=ev.lr_scores.get) == 0.1
    assert ev.steps == 2 * 10 + 2 * 10     # two 1-epoch sweep runs + a 2-epoch final run
    assert ev.fitness > 0.5 and ev.seconds > 0


def test_only_some_lrs_diverging_is_ok_with_zero_for_those(smoke):
    task, data = smoke
    task = task.replace(lrs=(0.1, 1e6))
    ev = score_rule("sgd", data, task, seed=0)
    assert ev.status == "ok"
    assert ev.lr_scores[1e6] == 0.0 and ev.best_lr == 0.1


def test_every_lr_diverging_is_status_diverged(smoke):
    task, data = smoke
    ev = score_rule("exp(div(sign_g, sqrt(g)))", data, task, seed=0)
    assert ev.status == "diverged" and ev.fitness == 0.0 and ev.best_lr is None
    assert set(ev.lr_scores.values()) == {0.0} and ev.trainings == 1
    assert math.isfinite(ev.seconds)
