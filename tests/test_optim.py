"""RuleOptimizer: torch parity, TensorFlow PowerSign/AddSign semantics, torch.optim contract."""
import copy
import io
import math

import pytest
import torch

from evo_nos.core.known import KNOWN
from evo_nos.core.primitives import RuleSettings
from evo_nos.optim.optimizer import RuleOptimizer
from evo_nos.optim.standalone import default_foreach
from evo_nos.core.rules import RuleSyntaxError
from evo_nos.optim.schedules import LinearCosineDecay, NoisyLinearCosineDecay
from tiny_problem import batch, small_net

E = math.e


# ---- training on the small network of tiny_problem ---------------------------------------

def train(model, opt, steps=20, scheduler=None):
    x, y = batch()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return [p.detach().clone() for p in model.parameters()]


def assert_same_params(a, b, atol=1e-6):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


VARIANTS = [dict(), dict(weight_decay=0.01), dict(maximize=True)]


# ---- parity with torch.optim ------------------------------------------------------------

@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("kwargs", VARIANTS, ids=["plain", "weight_decay", "maximize"])
def test_sgd_rule_follows_torch_sgd(foreach, kwargs):
    ref_model, model = small_net(), small_net()
    ref = train(ref_model, torch.optim.SGD(ref_model.parameters(), lr=0.1, **kwargs))
    got = train(model, RuleOptimizer(model.parameters(), "sgd", lr=0.1, foreach=foreach, **kwargs))
    assert_same_params(got, ref)
    assert not torch.equal(got[0], small_net()[0].weight)     # it did move


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("kwargs", VARIANTS, ids=["plain", "weight_decay", "maximize"])
def test_adam_rule_follows_torch_adam(foreach, kwargs):
    ref_model, model = small_net(), small_net()
    ref = train(ref_model, torch.optim.Adam(ref_model.parameters(), lr=0.01, eps=1e-8, **kwargs))
    got = train(model, RuleOptimizer(model.parameters(), "adam", lr=0.01, foreach=foreach,
                                     **kwargs))
    assert_same_params(got, ref)


def test_adam_rule_with_other_betas_follows_torch_adam():
    ref_model, model = small_net(), small_net()
    ref = train(ref_model, torch.optim.Adam(ref_model.parameters(), lr=0.01, betas=(0.8, 0.99)))
    settings = RuleSettings(beta1=0.8, beta2=0.99)
    got = train(model, RuleOptimizer(model.parameters(), "adam", lr=0.01, settings=settings))
    assert_same_params(got, ref)


# ---- TensorFlow PowerSign / AddSign, by hand --------------------------------------------
#
# A 4-element parameter, 6 steps, beta1 = 0.9, m starts at 0 and is updated first:
# m_k = 0.9 m_{k-1} + 0.1 g_k.  s_k = sign(g_k)·sign(m_k), sign(0) = 0.

GRADS = [
    [1.0, -2.0, 0.0, 0.5],
    [1.0, 0.5, 0.0, -1.0],
    [0.0, 3.0, 2.0, 0.25],
    [-1.0, 1.0, -1.0, 1.0],
    [-1.0, 1.0, -1.0, 1.0],
    [2.0, -0.5, 0.0, 1.0],
]
MS = [
    [0.1, -0.2, 0.0, 0.05],
    [0.19, -0.13, 0.0, -0.055],                 # e3: m turns negative
    [0.171, 0.183, 0.2, -0.0245],               # e1: m turns positive
    [0.0539, 0.2647, 0.08, 0.07795],
    [-0.05149, 0.33823, -0.028, 0.170155],      # e0, e2: m turn negative
    [0.153659, 0.254407, -0.0252, 0.2531395],
]
SIGNS = [
    [1, 1, 0, 1],       # first step: s = +1 wherever g != 0
    [1, -1, 0, 1],      # e1: g > 0, m < 0 disagree; e3: both negative agree
    [0, 1, 1, -1],      # e0: g = 0 with m != 0
    [-1, 1, -1, 1],
    [1, 1, 1, 1],
    [1, -1, 0, 1],
]
C1 = 0.5 * (1 + math.sqrt(0.5))      # 0.5(1 + cos(π/4))
C3 = 0.5 * (1 - math.sqrt(0.5))      # 0.5(1 + cos(3π/4))
T = 4
# decay at t - 1 for steps 1..6 (t = 0..5), t clamped to T = 4
DECAYS = {
    "": [1, 1, 1, 1, 1, 1],
    "-ld": [1, 0.75, 0.5, 0.25, 0, 0],
    "-cd": [1, C1, 0.5, C3, 0, 0],
    "-rd": [1, C1, 0.5, C3, 1, 1],          # restart: back to 1 at t >= T
}
LR = 0.1


def _scale(family, decay, s):
    if family == "powersign":
        return math.exp(decay * s)
    if family == "addsign":
        return 1 + decay * s
    if family == "powersign2":
        return 2.0 ** s
    return 2 + s        # addsign2


CASES = [(f + d, f, d) for f in ("powersign", "addsign") for d in DECAYS]
CASES += [("powersign2", "powersign2", ""), ("addsign2", "addsign2", "")]


@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name,family,decay", CASES, ids=[c[0] for c in CASES])
def test_sign_rules_follow_tensorflow(name, family, decay, foreach, bias_correction):
    w = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64))
    opt = RuleOptimizer([w], name, lr=LR, total_steps=T, foreach=foreach,
                        settings=RuleSettings(bias_correction=bias_correction))
    for k in range(6):
        before = w.detach().clone()
        w.grad = torch.tensor(GRADS[k], dtype=torch.float64)
        opt.step()
        expected = [LR * _scale(family, DECAYS[decay][k], s) * g
                    for s, g in zip(SIGNS[k], GRADS[k])]
        torch.testing.assert_close(before - w.detach(), torch.tensor(expected, dtype=torch.float64),
                                   rtol=1e-12, atol=1e-15, msg=f"step {k + 1}")
        torch.testing.assert_close(opt.state[w]["m"], torch.tensor(MS[k], dtype=torch.float64),
                                   rtol=0, atol=1e-12)   # stored m is never bias corrected
        assert opt.state[w]["step"] == k + 1


def test_first_steps_are_e_times_g_and_two_times_g():
    g = torch.tensor([3.0, -1.0, 0.0])
    for name, factor in (("powersign", E), ("addsign", 2.0)):
        w = torch.nn.Parameter(torch.zeros(3))
        opt = RuleOptimizer([w], name, lr=1.0)
        w.grad = g.clone()
        opt.step()
        torch.testing.assert_close(w.detach(), -factor * g)


def test_bias_correction_on_and_off():
    # momentum rule: direction = m̂; after one step m = 0.1 g
    g = torch.tensor([1.0, -2.0])
    out = {}
    for on in (True, False):
        w = torch.nn.Parameter(torch.zeros(2))
        opt = RuleOptimizer([w], "momentum", lr=1.0, settings=RuleSettings(bias_correction=on))
        w.grad = g.clone()
        opt.step()
        out[on] = w.detach().clone()
        w.grad = g.clone()
        opt.step()        # m = 0.19 g; corrected by 1 - 0.81 = 0.19
        out[on, 2] = w.detach().clone()
    torch.testing.assert_close(out[True], -g)                  # m̂ = 0.1 g / (1 - 0.9) = g
    torch.testing.assert_close(out[False], -0.1 * g)
    torch.testing.assert_close(out[True, 2], -2 * g)
    torch.testing.assert_close(out[False, 2], -(0.1 + 0.19) * g)


# ---- state ------------------------------------------------------------------------------

@pytest.mark.parametrize("rule,keys", [
    ("sgd", {"step"}),
    ("powersign", {"step", "m"}),
    ("adam", {"step", "m", "v"}),
    ("rmsprop", {"step", "v"}),
    ("add(r, w3)", {"step", "r"}),
    ("powersign-ld", {"step", "m"}),
])
def test_state_is_lazy_and_holds_only_what_the_rule_reads(rule, keys):
    a = torch.nn.Parameter(torch.ones(3))
    unused = torch.nn.Parameter(torch.ones(2))
    opt = RuleOptimizer([a, unused], rule, lr=0.1, total_steps=10)
    assert len(opt.state) == 0
    a.grad = torch.ones(3)
    opt.step()
    assert set(opt.state[a]) == keys
    assert unused not in opt.state            # no gradient, no state, not moved
    assert torch.equal(unused.detach(), torch.ones(2))


def test_state_dict_mid_training_continues_identically():
    rule = "add(mul(adam, exp(mul(ld, sign_m))), mul(w3, r))"      # m, v, r, w and a decay
    model = small_net()
    opt = RuleOptimizer(model.parameters(), rule, lr=0.01, total_steps=10, weight_decay=0.01)
    train(model, opt, steps=5)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)

    clone = small_net(seed=99)
    clone_opt = RuleOptimizer(clone.parameters(), rule, lr=0.5, total_steps=10)
    buffer.seek(0)
    saved = torch.load(buffer)
    clone.load_state_dict(saved["model"])
    clone_opt.load_state_dict(saved["opt"])
    assert clone_opt.param_groups[0]["lr"] == 0.01 and clone_opt.param_groups[0]["weight_decay"]

    a, b = train(model, opt, steps=5), train(clone, clone_opt, steps=5)
    assert_same_params(a, b, atol=0)
    assert opt.state_dict()["state"][0]["step"] == 10


def test_setstate_fills_flags_missing_from_old_state():
    w = torch.nn.Parameter(torch.ones(2))
    opt = RuleOptimizer([w], "sgd", lr=0.1)
    state = opt.__getstate__()
    for key in ("maximize", "foreach", "weight_decay", "total_steps"):
        del state["param_groups"][0][key]
    opt.__setstate__(state)
    assert opt.param_groups[0]["maximize"] is False and opt.param_groups[0]["foreach"] is None


# ---- hyper-parameters -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=-0.1), "Invalid learning rate"),
    (dict(lr=float("nan")), "Invalid learning rate"),
    (dict(lr="0.1"), "Invalid learning rate"),
    (dict(weight_decay=-1.0), "Invalid weight_decay"),
    (dict(total_steps=0), "Invalid total_steps"),
    (dict(total_steps=2.5), "Invalid total_steps"),
])
def test_bad_hyper_parameters_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RuleOptimizer([torch.nn.Parameter(torch.ones(1))], "sgd", **kwargs)


def test_a_tensor_learning_rate_works():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = RuleOptimizer([w], "sgd", lr=torch.tensor(0.5))
    w.grad = torch.tensor([1.0])
    opt.step()
    assert w.item() == 0.5


def test_decay_rule_without_total_steps_says_what_to_pass():
    with pytest.raises(ValueError, match=r"decay operand.*pass total_steps="):
        RuleOptimizer([torch.nn.Parameter(torch.ones(1))], "powersign-cd", lr=0.1)


def test_a_param_group_without_total_steps_fails_at_step():
    a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    opt = RuleOptimizer([a], "addsign-rd", lr=0.1, total_steps=5)
    opt.add_param_group({"params": [b], "total_steps": None})
    b.grad = torch.ones(1)
    with pytest.raises(ValueError, match="total_steps is missing"):
        opt.step()


def test_bad_rule_is_a_value_error_naming_the_token():
    with pytest.raises(RuleSyntaxError, match="unknown token 'foo'"):
        RuleOptimizer([torch.nn.Parameter(torch.ones(1))], "mul(foo, g)")


def test_rule_accepts_names_strings_and_rules():
    p = [torch.nn.Parameter(torch.ones(1))]
    assert RuleOptimizer(p, "powersign").rule == KNOWN["powersign"]
    assert RuleOptimizer(p, "mul(exp(mul(sign_g, sign_m)), g)").rule == KNOWN["powersign"]
    assert RuleOptimizer(p, KNOWN["powersign"]).rule == KNOWN["powersign"]
    assert "exp(sign(g)·sign(m̂))·g" in repr(RuleOptimizer(p, "powersign"))


# ---- the torch.optim contract -----------------------------------------------------------

@pytest.mark.parametrize("foreach", [False, True])
def test_param_groups_with_different_learning_rates(foreach):
    a = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    b = torch.nn.Parameter(torch.tensor([3.0]))
    opt = RuleOptimizer([{"params": [a]}, {"params": [b], "lr": 0.01}], "sgd", lr=0.1,
                        foreach=foreach)
    a.grad, b.grad = torch.tensor([1.0, -1.0]), torch.tensor([2.0])
    opt.step()
    torch.testing.assert_close(a.detach(), torch.tensor([0.9, 2.1]))
    torch.testing.assert_close(b.detach(), torch.tensor([2.98]))


def test_closure_is_evaluated_with_grad_and_its_loss_returned():
    x, y = batch()
    model, ref_model = small_net(), small_net()
    opt = RuleOptimizer(model.parameters(), "adam", lr=0.01)
    ref_opt = RuleOptimizer(ref_model.parameters(), "adam", lr=0.01)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(3):
        loss = opt.step(closure)
        ref_opt.zero_grad()
        ref_loss = torch.nn.functional.cross_entropy(ref_model(x), y)
        ref_loss.backward()
        ref_opt.step()
        assert loss.item() == ref_loss.item()
    assert_same_params(list(model.parameters()), list(ref_model.parameters()), atol=0)


@pytest.mark.parametrize("foreach", [False, True])
def test_maximize_ascends(foreach):
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    opt = RuleOptimizer([w], "sgd", lr=0.5, maximize=True, foreach=foreach)
    w.grad = torch.tensor([1.0, -2.0])
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([1.5, 0.0]))


def test_works_with_torch_step_lr():
    ref_model, model = small_net(), small_net()
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.1)
    opt = RuleOptimizer(model.parameters(), "sgd", lr=0.1)
    ref = train(ref_model, ref_opt, scheduler=torch.optim.lr_scheduler.StepLR(ref_opt, 5, 0.5))
    sched = torch.optim.lr_scheduler.StepLR(opt, 5, 0.5)
    got = train(model, opt, scheduler=sched)
    assert_same_params(got, ref)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 4)


@pytest.mark.parametrize("schedule", [LinearCosineDecay, NoisyLinearCosineDecay])
def test_works_with_the_nos_schedules(schedule):
    w = torch.nn.Parameter(torch.zeros(2))
    opt = RuleOptimizer([w], "sgd", lr=0.1)
    kwargs = {"seed": 3} if schedule is NoisyLinearCosineDecay else {}
    sched = schedule(opt, 10, **kwargs)
    for t in range(12):
        before = w.detach().clone()
        w.grad = torch.tensor([1.0, -2.0])
        opt.step()
        lr = 0.1 * sched.factor(t)
        torch.testing.assert_close(before - w.detach(), lr * torch.tensor([1.0, -2.0]))
        sched.step()


RULES_FOR_PATHS = [n for n, r in KNOWN.items() if "rng" not in r.needs] + [
    "add(r, w3)", "div(g, sqrt(v))", "1", "pow(2, neg(sign_m))"]


@pytest.mark.parametrize("rule", RULES_FOR_PATHS)
def test_foreach_and_per_tensor_paths_agree(rule):
    runs = []
    for foreach in (False, True):
        model = small_net()
        opt = RuleOptimizer(model.parameters(), rule, lr=0.01, total_steps=8, foreach=foreach,
                            weight_decay=0.001)
        runs.append(train(model, opt, steps=10))
    assert_same_params(runs[0], runs[1], atol=1e-6)


@pytest.mark.parametrize("rule", ["adam", "powersign-cd", "add(m, w3)", "mul(2, r)", "neg(v)"])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_foreach_handles_large_and_small_tensors_alike(rule, bias_correction):
    # a tensor larger than the concatenation bound gets its own direction call
    gen = torch.Generator().manual_seed(0)
    shapes = [(257, 256), (4, 3), (7,), (2, 2, 2)]
    init = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(4)]
    runs = []
    for foreach in (False, True):
        ps = [torch.nn.Parameter(t.clone()) for t in init]
        opt = RuleOptimizer(ps, rule, lr=0.01, total_steps=4, foreach=foreach,
                            settings=RuleSettings(bias_correction=bias_correction))
        for step in grads:
            for p, g in zip(ps, step):
                p.grad = g.clone()
            opt.step()
        runs.append([p.detach() for p in ps])
    assert_same_params(runs[0], runs[1], atol=1e-7)


def _shares_flat_buffer(opt, a, b, name):
    """Whether a's and b's state entry ``name`` are views of one flat buffer (the
    multi-tensor path's batches of small tensors)."""
    return (opt.state[a][name].untyped_storage().data_ptr()
            == opt.state[b][name].untyped_storage().data_ptr())


def test_default_foreach_on_plain_cpu_tensors_only():
    # foreach=None: the multi-tensor path for plain tensors on the CPU (and CUDA, XPU),
    # the per-tensor path for tensor subclasses and other devices
    class Tagged(torch.Tensor):
        pass

    cpu = [torch.nn.Parameter(torch.zeros(3)), torch.zeros(2)]
    assert default_foreach(cpu)
    assert not default_foreach(cpu + [torch.zeros(2).as_subclass(Tagged)])
    assert not default_foreach(cpu + [torch.zeros(2, device="meta")])


@pytest.mark.parametrize("rule", ["adam", "powersign-cd", "add(r, w3)", "sgd"])
@pytest.mark.parametrize("capturable", [False, True])
def test_the_default_is_the_multi_tensor_path_on_the_cpu(rule, capturable):
    # foreach=None on the CPU: the very numbers of foreach=True, those of the per-tensor
    # path to 1e-6; an explicit foreach=False is honoured (no flat buffers)
    runs = {}
    for foreach in (None, True, False):
        model = small_net()
        opt = RuleOptimizer(model.parameters(), rule, lr=0.01, total_steps=8, foreach=foreach,
                            weight_decay=0.001, capturable=capturable)
        assert opt.param_groups[0]["foreach"] is foreach
        runs[foreach] = train(model, opt, steps=10)
        first, last = model[0].bias, model[2].bias        # small: batched together
        averages = [name for name in opt.state[first] if name != "step"]
        if averages and not capturable:          # (a capturable step updates each alone)
            assert _shares_flat_buffer(opt, first, last, averages[0]) == (
                foreach is not False)
    assert_same_params(runs[None], runs[True], atol=0)
    assert_same_params(runs[None], runs[False], atol=1e-6)


@pytest.mark.parametrize("rule, check", [
    ("drop5(g)", "drop"), ("add(eps, g)", "eps")])
def test_foreach_and_per_tensor_paths_agree_in_distribution_for_random_rules(rule, check):
    # drop(g, 0.5): each path zeroes about half of 20000 entries, rescales the rest by 2;
    # eps: each path adds Gaussian noise of std noise_std = 0.1 (other draws: see
    # RuleOptimizerBase)
    moves = []
    for foreach in (False, True, None):
        torch.manual_seed(0)
        ps = [torch.nn.Parameter(torch.zeros(10_000)) for _ in range(2)] + [
            torch.nn.Parameter(torch.zeros(50)) for _ in range(4)]
        opt = RuleOptimizer(ps, rule, lr=1.0, foreach=foreach)
        for p in ps:
            p.grad = torch.ones_like(p) if check == "drop" else torch.zeros_like(p)
        opt.step()
        moved = torch.cat([p.detach() for p in ps])
        n = moved.numel()
        if check == "drop":
            assert set(moved.unique().tolist()) == {-2.0, 0.0}
            assert abs((moved == 0).float().mean().item() - 0.5) < 5 * 0.5 / math.sqrt(n)
        else:
            assert abs(moved.mean().item()) < 5 * 0.1 / math.sqrt(n)
            assert abs(moved.std().item() - 0.1) < 5 * 0.1 / math.sqrt(2 * n)
        moves.append(moved)
    assert torch.equal(moves[1], moves[2])          # the default: foreach=True's draws


def test_foreach_batches_parameters_by_step():
    # b joins after a's first step: the two are at different steps, decays differ
    a = torch.nn.Parameter(torch.zeros(1))
    b = torch.nn.Parameter(torch.zeros(1))
    opt = RuleOptimizer([a, b], "mul(ld, g)", lr=1.0, total_steps=4, foreach=True)
    a.grad = torch.ones(1)
    opt.step()                        # a at t = 0: ld = 1
    b.grad = torch.ones(1)
    opt.step()                        # a at t = 1: ld = 0.75; b at t = 0: ld = 1
    torch.testing.assert_close(a.detach(), torch.tensor([-1.75]))
    torch.testing.assert_close(b.detach(), torch.tensor([-1.0]))


def test_weight_operand_reads_the_current_weights():
    w = torch.nn.Parameter(torch.tensor([2.0, -4.0]))
    opt = RuleOptimizer([w], "w1", lr=1.0)
    w.grad = torch.zeros(2)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([1.8, -3.6]))


def test_copied_and_pickled_optimizers_keep_their_rule():
    # torch pickles only defaults/state/param_groups; the rule must survive too
    model = small_net()
    opt = RuleOptimizer(model.parameters(), "powersign-ld", lr=0.1, total_steps=10,
                        settings=RuleSettings(beta1=0.5))
    train(model, opt, steps=2)
    twin = copy.deepcopy({"model": model, "opt": opt})     # one memo: shared parameters
    assert twin["opt"].rule == opt.rule and twin["opt"].settings == opt.settings
    buffer = io.BytesIO()
    torch.save(opt, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded.rule == opt.rule and loaded.settings.beta1 == 0.5
    a = train(model, opt, steps=3)
    b = train(twin["model"], twin["opt"], steps=3)
    assert_same_params(a, b, atol=0)
