"""The held-out tasks: generated data, the one training loop, the protocol, user tasks."""
import textwrap

import pytest
import torch
import torch.nn.functional as F

from evo_nos.fitness import heldout
from evo_nos.fitness.baselines import TORCH_ADAM, TORCH_SGDM
from evo_nos.fitness.heldout import (BUILTIN, HeldOutTask, builtin_task, load_heldout_task,
                                     majority_sequences, optimizer_factory, score_optimizer,
                                     split3, teacher_table)
from evo_nos.fitness.data import TensorData
from evo_nos.fitness.protocol import Run, TaskSetup
from evo_nos.fitness.data import DeviceData
from evo_nos.fitness.models import SequenceLSTM, SmallResNet, TabularMLP, seeded
from evo_nos.fitness.protocol import fit
from evo_nos.optim.optimizer import RuleOptimizer
from evo_nos.optim.schedules import schedule_factor
from user_task_source import BUILD

CPU = torch.device("cpu")


def tiny_table_task(**changes) -> HeldOutTask:
    """A tabular task small enough for a fraction of a second per optimizer."""
    def build(seed, device):
        x, y = teacher_table(600, n_features=6, n_informative=3, n_classes=2, seed=seed)
        data = TensorData(*split3(x, y, 400, 100), device)
        return TaskSetup(data, model=lambda s: seeded(s, lambda: TabularMLP(6, 2, 16, 1),
                                                      device))
    settings = dict(lrs=(1e-3, 1e-2), sweep_epochs=2, batch_size=40, seeds=(0, 1))
    settings.update(changes)
    return HeldOutTask("tiny", "mlp", build, **settings)


# -- generated data ------------------------------------------------------------------------------
def test_majority_sequences_are_seeded_and_labelled_by_the_vote_count():
    x, y = majority_sequences(300, length=15, vocab=9, n_classes=4, seed=3)
    assert x.shape == (300, 15) and x.dtype == torch.int64 and y.shape == (300,)
    assert int(x.min()) >= 0 and int(x.max()) <= 8
    again = majority_sequences(300, length=15, vocab=9, n_classes=4, seed=3)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    other = majority_sequences(300, length=15, vocab=9, n_classes=4, seed=4)
    assert not torch.equal(x, other[0])
    counts = F.one_hot(x, 9)[:, :, :4].sum(dim=1)
    top2 = counts.topk(2, dim=1).values
    assert bool((top2[:, 0] > top2[:, 1]).all())            # never a tied count
    assert torch.equal(y, counts.argmax(dim=1))               # the label is the majority
    assert sorted(torch.bincount(y, minlength=4).tolist())[0] > 300 / 4 / 2  # no class starved
    with pytest.raises(ValueError, match="vocab > n_classes"):
        majority_sequences(10, vocab=4, n_classes=4)


def test_teacher_table_is_seeded_with_raw_scales_and_noise_columns():
    x, y = teacher_table(2000, n_features=10, n_informative=4, n_classes=3, seed=5)
    assert x.shape == (2000, 10) and x.dtype == torch.float32 and y.shape == (2000,)
    again = teacher_table(2000, n_features=10, n_informative=4, n_classes=3, seed=5)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    assert not torch.equal(x, teacher_table(2000, n_features=10, n_informative=4,
                                            n_classes=3, seed=6)[0])
    std = x.std(dim=0)
    assert float(std.max() / std.min()) > 5                   # columns on their own scales
    shares = torch.bincount(y, minlength=3).float() / 2000
    assert float(shares.min()) > 0.15                         # about balanced classes


def test_tensor_data_batches_in_a_seeded_order_and_keeps_the_splits_apart():
    x = torch.arange(50).float().view(-1, 1)
    y = torch.arange(50)
    data = TensorData(*split3(x, y, 30, 10), CPU)
    assert (data.n_train, data.n_val, data.n_test, data.steps_per_epoch(8)) == (30, 10, 10, 3)
    first = [b[1].tolist() for b in data.epoch(8, torch.Generator().manual_seed(1))]
    second = [b[1].tolist() for b in data.epoch(8, torch.Generator().manual_seed(1))]
    assert first == second and [len(b) for b in first] == [8, 8, 8]     # full batches
    assert len({i for b in first for i in b}) == 24 and max(max(b) for b in first) < 30
    assert [b[1].tolist() for b in data.eval_batches(4, "test")] == [
        [40, 41, 42, 43], [44, 45, 46, 47], [48, 49]]
    with pytest.raises(ValueError, match="exceeds"):
        data.steps_per_epoch(31)


# -- the loop and the optimizers -------------------------------------------------------------
def test_rule_adam_takes_the_steps_of_torch_adam():
    task = tiny_table_task()
    setup = task.build(0, CPU)
    nets = []
    for name in ("adam", TORCH_ADAM):
        net = setup.model(0)
        steps, reason = fit(net, optimizer_factory(name), 1e-2, setup.data, total_steps=30,
                            batch_size=40, seed=0)
        assert (steps, reason) == (30, "")
        nets.append(net)
    gap = max(float((a - b).detach().abs().max()) for a, b in zip(nets[0].parameters(),
                                                         nets[1].parameters()))
    assert gap < 1e-5
    rule, torch_adam = (score_optimizer(task, setup, o) for o in ("adam", TORCH_ADAM))
    assert (rule.best_lr, rule.lr_scores, rule.test) == (
        torch_adam.best_lr, torch_adam.lr_scores, torch_adam.test)
    assert isinstance(optimizer_factory("adam")(nets[0].parameters(), 0.1, 5), RuleOptimizer)
    sgdm = optimizer_factory(TORCH_SGDM)(nets[0].parameters(), 0.1, 5)
    assert isinstance(sgdm, torch.optim.SGD) and sgdm.defaults["momentum"] == 0.9


def test_the_lr_is_chosen_on_the_mean_validation_score_over_seeds(monkeypatch):
    vals = {(0.01, 0): 0.6, (0.01, 1): 0.2, (0.1, 0): 0.3, (0.1, 1): 0.5,   # means .4, .4
            (1.0, 0): 0.9, (1.0, 1): 0.0}                                   # .45 (one died)
    calls = []

    def fake(task, setup, make, lr, seed, epochs, *, test):
        calls.append((lr, seed, epochs, test))
        if epochs == task.sweep_epochs:
            return Run(lr, seed, vals[lr, seed], vals[lr, seed] == 0.0, 10,
                       test=0.7 if test else None)
        return Run(lr, seed, 0.5 + seed / 10, False, 20, test=0.4 + seed / 10)

    def fake_trainer(task, setup, make):
        return lambda children, epochs, test: [fake(task, setup, make, c.lr, c.seed, epochs,
                                                    test=test) for c in children]

    monkeypatch.setattr(heldout, "lone_trainer", fake_trainer)
    task = tiny_table_task(lrs=(0.01, 0.1, 1.0), final_epochs=5)
    score = score_optimizer(task, None, "adam")
    assert score.lr_scores == pytest.approx({0.01: 0.4, 0.1: 0.4, 1.0: 0.45})
    assert (score.best_lr, score.val, score.test, score.steps) == (1.0, (0.5, 0.6), (0.4, 0.5),
                                                                   100)
    assert calls[-2:] == [(1.0, 0, 5, True), (1.0, 1, 5, True)]
    vals[1.0, 0] = 0.8                                          # mean .4: a three-way tie
    calls.clear()
    score = score_optimizer(task.replace(final_epochs=None), None, "adam")
    assert score.best_lr == 0.01 and score.test == (0.7, 0.7)   # the smaller lr; sweep runs
    assert calls == [(lr, s, 2, True) for lr in (0.01, 0.1, 1.0) for s in (0, 1)]


def test_a_diverging_rule_scores_zero_on_every_seed():
    task = tiny_table_task(lrs=(1.0,))
    score = score_optimizer(task, task.build(0, CPU), "exp(exp(exp(exp(g2))))")
    assert (score.status, score.best_lr, score.test, score.val) == (
        "diverged", None, (0.0, 0.0), (0.0, 0.0))
    assert "diverged" in score.reason


# -- the built-in tasks ------------------------------------------------------------------------
def test_the_builtin_tasks_are_three_model_families_with_a_test_split():
    tasks = [builtin_task(name, "quick") for name in BUILTIN]
    assert [(t.name, t.family) for t in tasks] == [
        ("images", "conv"), ("sequence", "recurrent"), ("tabular", "mlp")]
    kinds = (SmallResNet, SequenceLSTM, TabularMLP)
    for task, kind in zip(tasks, kinds):
        assert len(task.seeds) >= 2 and len(task.lrs) >= 3
        setup = task.build(task.data_seed, CPU)
        assert setup.data.n_test > 0 and setup.data.n_val > 0
        net = setup.model(0)
        assert isinstance(net, kind)
        x, y = next(iter(setup.data.eval_batches(8, "test")))
        classes = net.classifier.out_features
        assert net(x).shape == (len(y), classes) and 0 <= int(y.min()) <= int(y.max()) < classes
        same = [torch.equal(a, b) for a, b in zip(net.parameters(), setup.model(0).parameters())]
        assert all(same) and not all(torch.equal(a, b) for a, b in zip(
            net.parameters(), setup.model(1).parameters()))
    images = tasks[0]
    assert isinstance(images.build(images.data_seed, CPU).data, DeviceData)
    assert (images.lrs, images.final_epochs) == ((1e-3, 1e-2, 1e-1), 2)
    with pytest.raises(ValueError, match="unknown size"):
        builtin_task("tabular", "huge")


# -- tasks of your own -------------------------------------------------------------------------
USER_TASKS = BUILD + textwrap.dedent('''
    def make_task(size="cpu"):
        return HeldOutTask(f"xor-{size}", "mlp", build, lrs=(0.01, 0.1), batch_size=50)

    def no_args():
        return make_task("fixed")

    TASK = make_task("constant")
    NOT_A_TASK = 42
''')


def test_a_task_of_your_own_loads_by_module_path_or_file(tmp_path, monkeypatch):
    (tmp_path / "my_heldout_tasks.py").write_text(USER_TASKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    task = load_heldout_task("my_heldout_tasks:make_task", "quick")
    assert isinstance(task, HeldOutTask) and task.name == "xor-quick"
    assert load_heldout_task("my_heldout_tasks:no_args", "quick").name == "xor-fixed"
    assert load_heldout_task("my_heldout_tasks:TASK").name == "xor-constant"
    by_file = load_heldout_task(f"{tmp_path / 'my_heldout_tasks.py'}:make_task", "gpu")
    assert by_file.name == "xor-gpu"
    score = score_optimizer(task, task.build(0, CPU), TORCH_ADAM)
    assert score.status == "ok" and len(score.test) == 2 and score.best_lr in (0.01, 0.1)


def test_a_bad_task_spec_says_what_is_wrong(tmp_path, monkeypatch):
    (tmp_path / "my_heldout_tasks2.py").write_text(USER_TASKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"cannot import module 'no_such_pkg_zz\.tasks'"
                                         r".*No module named 'no_such_pkg_zz'.*MODULE:NAME"):
        load_heldout_task("no_such_pkg_zz.tasks:make_task")
    with pytest.raises(ValueError, match="module 'my_heldout_tasks2' has no 'missing'"):
        load_heldout_task("my_heldout_tasks2:missing")
    with pytest.raises(ValueError, match="is int, not a HeldOutTask"):
        load_heldout_task("my_heldout_tasks2:NOT_A_TASK")
    with pytest.raises(ValueError, match=r"unknown task 'imagez'.*\['images', 'sequence', "
                                         r"'tabular'\].*MODULE:NAME"):
        load_heldout_task("imagez")
    with pytest.raises(ValueError, match="no file"):
        load_heldout_task(f"{tmp_path / 'absent.py'}:make_task")
    with pytest.raises(ValueError, match="seeds must be distinct"):
        tiny_table_task(seeds=(1, 1))


@pytest.mark.parametrize("name", ["adam", TORCH_ADAM, TORCH_SGDM, "torch-adamw",
                                  "torch-nesterov", "lion"])
def test_every_optimizer_runs_at_the_scheduled_lr(name):
    """The task's schedule reaches every optimizer, rule or baseline, the same way: the
    lr of step t is the base lr times schedule_factor(t)."""
    task = tiny_table_task()
    setup = task.build(0, CPU)
    made, seen = [], []

    def recording(params, lr, total_steps):
        made.append(optimizer_factory(name)(params, lr, total_steps))
        return made[0]

    def loss(outputs, y):             # computed before each step: the lr that step uses
        seen.append(made[0].param_groups[0]["lr"])
        return F.cross_entropy(outputs, y)

    steps, reason = fit(setup.model(0), recording, 0.02, setup.data, total_steps=12,
                        batch_size=40, seed=0, schedule="cosine", warmup=2, loss=loss)
    assert (steps, reason) == (12, "")
    assert seen == [0.02 * schedule_factor("cosine", t, 12, 2) for t in range(12)]


def test_the_baselines_people_pick_are_their_usual_settings():
    params = [torch.nn.Parameter(torch.zeros(3))]
    adamw = optimizer_factory("torch-adamw")(params, 1e-3, 10)
    nesterov = optimizer_factory("torch-nesterov")(params, 1e-2, 10)
    lion = optimizer_factory("lion")(params, 1e-4, 10)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["weight_decay"] == 0.01
    assert nesterov.defaults["nesterov"] and nesterov.defaults["momentum"] == 0.9
    assert type(lion).__name__ == "Lion" and lion.defaults["betas"] == (0.9, 0.99)
    assert lion.defaults["weight_decay"] == 0.1
    # Lion's step: w -= lr * (sign(c) + wd * w), c = beta1 m + (1 - beta1) g, from m = 0
    params[0].grad = torch.tensor([0.5, -2.0, 0.0])
    params[0].data = torch.tensor([1.0, 1.0, 1.0])
    lion.step()
    assert torch.allclose(params[0].data, torch.tensor([1.0 - 1e-4 * (1 + 0.1),
                                                        1.0 - 1e-4 * (-1 + 0.1),
                                                        1.0 - 1e-4 * 0.1]))
