"""The packed trainer: K children in one pass give each child the training it has alone.

On the CPU the packed arithmetic is the single-child arithmetic, so these tests assert
equality (``torch.equal`` on weights, ``==`` on Evaluations), not closeness.
"""
import dataclasses

import pytest
import torch

from evo_nos.core.known import resolve
from evo_nos.core.primitives import RuleSettings
from evo_nos.core.threads import torch_threads
from evo_nos.fitness import packed
from evo_nos.fitness.backend import FitnessBackend, candidate_seed, train_candidates
from evo_nos.fitness.workers import chunked
from evo_nos.fitness.models import make_child
from evo_nos.fitness.packed import Child, PackedChild, auto_pack, score_rules, train_pack
from evo_nos.fitness.tasks import load_task
from evo_nos.fitness.protocol import fit
from evo_nos.fitness.train import new_model, rule_factory, run_steps, score_rule, task_data

RULES = ["adam", "powersign", "addsign", "sgd", "mul(drop3(g), sign_m)", "add(g, eps_t)"]


@pytest.fixture(scope="module")
def task():
    return load_task("smoke")


@pytest.fixture(scope="module")
def data(task):
    return task_data(task)


def alone(child, data, task, epochs):
    """(trained lone network, steps, reason) of a child trained by the one-at-a-time loop."""
    model = new_model(task, data, child.seed)
    with torch_threads(task.threads):
        steps, reason = fit(model, rule_factory(child.optimizer), child.lr, data,
                            total_steps=run_steps(task, data, epochs),
                            batch_size=task.batch_size, seed=child.seed,
                            check_every=task.check_every)
    return model, steps, reason


def without_seconds(evaluation):
    out = evaluation.to_dict()
    del out["seconds"]
    return out


@pytest.mark.parametrize("size", [1, 2, 5])
def test_packed_weights_equal_the_lone_trainings(task, data, size):
    children = [Child(resolve(rule), lr, seed) for rule, seed in
                zip(["adam", "mul(drop3(g), sign_m)", "powersign"], [3, 4, 5])
                for lr in (1e-3, 1e-2)][:size]
    result, model = train_pack(children, data, task, epochs=0.5)
    assert model.k == size and result.steps == [5] * size
    for k, child in enumerate(children):
        lone, steps, reason = alone(child, data, task, 0.5)
        assert (steps, reason) == (5, "")
        for mine, theirs in zip(model.child_views(k), lone.parameters()):
            assert torch.equal(mine, theirs)
        unpacked = model.unpack(k, make_child(0, image_size=data.image_size))
        for name, value in unpacked.state_dict().items():
            if value.is_floating_point():
                assert torch.equal(value, lone.state_dict()[name]), name


@pytest.mark.parametrize("size", [1, 2, 5, "auto"])
def test_packed_protocol_gives_the_one_at_a_time_evaluations(task, data, size):
    jobs = [(rule, 100 + i) for i, rule in enumerate(RULES)]
    packed_task = task.replace(pack=size)
    assert auto_pack(packed_task, data) == (len(task.lrs) if size == "auto" else size)
    got = score_rules(jobs, data, packed_task)
    want = [score_rule(rule, data, task, seed=seed) for rule, seed in jobs]
    assert [without_seconds(e) for e in got] == [without_seconds(e) for e in want]
    assert all(e.status == "ok" and e.fitness > 0.2 for e in got)


def test_a_diverging_child_is_masked_and_the_others_train_on(task, data):
    children = [Child(resolve("adam"), 1e-2, 7), Child(resolve("exp(div(sign_g, sqrt(g)))"),
                                                      1.0, 8), Child(resolve("sgd"), 1e-1, 9)]
    result, model = train_pack(children, data, task, epochs=1)
    lone = [alone(c, data, task, 1) for c in children]
    assert lone[1][2].startswith("loss became non-finite at step ")
    assert result.reasons == ["", lone[1][2], ""]
    assert result.steps == [steps for _, steps, _ in lone]
    assert result.accuracy[1] == 0.0
    for k in (0, 2):
        assert result.accuracy[k] > 0.2
        for mine, theirs in zip(model.child_views(k), lone[k][0].parameters()):
            assert torch.equal(mine, theirs)


def test_steps_charged_to_a_diverged_child_follow_check_every(data):
    task = load_task("smoke", check_every=4)
    child = Child(resolve("exp(div(sign_g, sqrt(g)))"), 1.0, 8)
    result, _ = train_pack([child, Child(resolve("adam"), 1e-2, 7)], data, task, epochs=1)
    _, steps, reason = alone(child, data, task, 1)
    assert steps % 4 == 0
    assert (result.steps[0], result.reasons[0]) == (steps, reason)


def test_a_pack_that_raises_is_retrained_child_by_child(task, data, monkeypatch):
    real = packed.train_pack

    def fussy(children, *args, **kwargs):
        if any(c.lr == 1e-2 for c in children):
            raise RuntimeError("this rule does something torch refuses")
        return real(children, *args, **kwargs)

    monkeypatch.setattr(packed, "train_pack", fussy)
    got = score_rules([("adam", 1)], data, task.replace(pack=3))
    assert got[0].lr_scores[1e-2] == 0.0
    assert got[0].status == "ok" and got[0].best_lr != 1e-2
    monkeypatch.setattr(packed, "train_pack", real)
    alone_scores = score_rule("adam", data, task, seed=1).lr_scores
    assert {lr: s for lr, s in got[0].lr_scores.items() if lr != 1e-2} == \
        {lr: s for lr, s in alone_scores.items() if lr != 1e-2}


def test_every_lr_failing_names_the_error(task, data, monkeypatch):
    def broken(children, *args, **kwargs):
        raise ValueError("no such thing")

    monkeypatch.setattr(packed, "train_pack", broken)
    [evaluation] = score_rules([("adam", 1)], data, task)
    assert evaluation.status == "diverged" and evaluation.fitness == 0.0
    assert evaluation.reason == ("every learning rate diverged: training failed: "
                                 "ValueError: no such thing")


def test_hurdled_candidates_skip_their_final_run(task, data):
    got = score_rules([("adam", 1), ("sgd", 2)], data, task, hurdle=0.9)
    want = [score_rule(r, data, task, seed=s, hurdle=0.9) for r, s in [("adam", 1), ("sgd", 2)]]
    assert [without_seconds(e) for e in got] == [without_seconds(e) for e in want]
    assert "hurdled" in {e.status for e in got}


def test_chunks_split_a_batch_evenly_in_order():
    assert chunked(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert chunked([1, 2], 4) == [[1], [2]]
    assert chunked([], 2) == []


def test_backend_trains_packed_with_the_same_scores_as_alone(task, data):
    backend = FitnessBackend(task.replace(pack=4), seed=3)
    got = backend.evaluate(["adam", "sgd", "powersign"])
    for evaluation in got:
        seed = candidate_seed(backend.seed, evaluation.fingerprint)
        want = score_rule(evaluation.rule, data, task, seed=seed)
        assert without_seconds(dataclasses.replace(want, fingerprint=evaluation.fingerprint,
                                                   seed_fitness=[want.fitness])) == \
            without_seconds(evaluation)


def test_resnet_tasks_train_one_protocol_at_a_time():
    task = load_task("quick", group="transfer", n_train=200, n_val=100, n_test=0,
                     lrs=[1e-2], final_epochs=0.5, sweep_epochs=0.5)
    data = task_data(task)
    [got] = train_candidates([("sgd", 5)], task, "cpu")
    want = score_rule("sgd", data, task, seed=5).to_dict()
    del got["seconds"], want["seconds"]
    assert got == want


def test_pack_setting_is_checked_and_left_out_of_the_description():
    assert "pack" not in load_task("smoke").described()
    assert load_task("smoke", pack=8).described()["pack"] == 8
    for bad in (0, -1, "many", True, 2.5):
        with pytest.raises(ValueError, match='pack must be "auto" or a count >= 1'):
            load_task("smoke", pack=bad)


def test_packed_network_matches_lone_networks_output(data):
    nets = [make_child(s, image_size=data.image_size) for s in (1, 2, 3)]
    model = PackedChild(nets)
    x, _ = next(iter(data.validation(50)))
    with torch.no_grad():
        out = model([x] * 3)
        for k, net in enumerate(nets):
            assert torch.equal(out[k], net(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_packed_on_cuda_matches_lone_trainings_within_tolerance(task):
    """On CUDA the batched kernels reorder floating-point sums: after 5 steps every
    weight is within 1e-4 (relative to the tensor's largest entry) of the lone run's."""
    data = task_data(task, "cuda")
    children = [Child(resolve(rule), 1e-2, s) for s, rule in enumerate(["adam", "powersign",
                                                                         "sgd"])]
    _, model = train_pack(children, data, task, epochs=0.5)
    for k, child in enumerate(children):
        lone, _, _ = alone(child, data, task, 0.5)
        for mine, theirs in zip(model.child_views(k), lone.parameters()):
            assert (mine - theirs).abs().max() <= 1e-4 * theirs.abs().max()


def test_loop_pack_gradients_accumulate_into_the_packed_tensors(task, data):
    children = [Child(resolve("sgd"), 1e-2, s) for s in (1, 2)]
    _, pack = train_pack(children, data, task, epochs=0.2)
    for k, net in enumerate(pack.nets):
        for i, p in enumerate(net.parameters()):
            packed = pack.params[i].view(2, *pack.child_shapes[i])[k]
            grad = pack.grads[i].view(2, *pack.child_shapes[i])[k]
            assert p.data_ptr() == packed.data_ptr() and p.grad.data_ptr() == grad.data_ptr()
            assert torch.equal(p.grad, grad) and grad.abs().sum() > 0


def test_grouped_layout_matches_lone_trainings_within_tolerance(task, data):
    """The GPU form, checked on the CPU: not bit-exact (the grouped convolution's weight
    gradient sums in another order), but after 5 steps every weight is within 1e-4 of
    the lone run's, relative to the tensor's largest entry."""
    children = [Child(resolve(rule), 1e-2, s) for s, rule in
                enumerate(["adam", "powersign", "sgd"])]
    result, pack = train_pack(children, data, task, epochs=0.5, layout="grouped",
                              exact=False)
    assert result.steps == [5, 5, 5] and result.reasons == ["", "", ""]
    for k, child in enumerate(children):
        lone, _, _ = alone(child, data, task, 0.5)
        for mine, theirs in zip(pack.child_views(k), lone.parameters()):
            assert (mine - theirs).abs().max() <= 1e-4 * theirs.abs().max()


def test_rule_settings_reach_every_training_and_the_fitness_key(task, data):
    """bias_correction=false: the backend trains with it (the scores are those of
    score_rule with the same settings, and differ from the default ones), logs it as
    rule.bias_correction and refuses a cache scored without it."""
    settings = RuleSettings(bias_correction=False)
    backend = FitnessBackend(task, seed=3, settings={"bias_correction": False})
    [got] = backend.evaluate(["adam"])
    seed = candidate_seed(backend.seed, got.fingerprint)
    want = score_rule("adam", data, task, seed=seed, settings=settings)
    assert (got.fitness, got.lr_scores) == (want.fitness, want.lr_scores)
    assert got.lr_scores != score_rule("adam", data, task, seed=seed).lr_scores
    assert backend.describe()["rule.bias_correction"] is False
    assert "rule.beta1" not in backend.describe()
    plain = FitnessBackend(task, seed=3)
    with pytest.raises(ValueError, match="rule settings"):
        plain.load_state_dict(backend.state_dict())


@pytest.mark.parametrize("schedule,warmup", [("cosine", 0), ("linear", 3)])
def test_a_scheduled_protocol_packed_is_the_lone_protocol(task, data, schedule, warmup):
    """Every child, packed or alone, runs at the scheduled lr (LambdaLR alone, the same
    factor in the packed update): equal Evaluations, and not those of a constant lr."""
    scheduled = task.replace(schedule=schedule, warmup=warmup)
    jobs = [("adam", 3), ("mul(drop3(g), sign_m)", 4), ("addsign-ld", 5)]
    got = score_rules(jobs, data, scheduled)
    want = [score_rule(rule, data, scheduled, seed=seed) for rule, seed in jobs]
    assert [without_seconds(e) for e in got] == [without_seconds(e) for e in want]
    constant = [score_rule(rule, data, task, seed=seed) for rule, seed in jobs]
    assert all(a.lr_scores != b.lr_scores for a, b in zip(got, constant))
