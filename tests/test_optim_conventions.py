"""torch.optim conventions, on exported optimizer classes (issue 12): state dicts across
instances, param groups, lr schedulers, maximize, weight decay, closures, zero_grad,
pickling, repr; the capturable step and torch.compile; the multi-tensor path's slices and
flat buffers against the per-tensor path."""
import copy
import importlib.util
import io
import pickle
import sys

import pytest
import torch

from evo_nos.optim.export import export
from tiny_problem import batch as data, small_net as net

RULES = {"sgd": "ExpSGD", "adam": "ExpAdam", "powersign-cd": "ExpPowerSignCd",
         "add(mul(eps_t, 1), g)": "ExpNoisy"}


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    """The exported classes, each imported as a module registered in sys.modules (so
    pickle can find it by name, as it would a file on the path)."""
    folder = tmp_path_factory.mktemp("exported")
    out = {}
    for rule, name in RULES.items():
        module_name = f"conventions_{name.lower()}"
        py, _ = export(rule, folder / f"{module_name}.py", class_name=name)
        spec = importlib.util.spec_from_file_location(module_name, py)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        out[rule] = getattr(module, name)
    yield out
    for name in RULES.values():
        sys.modules.pop(f"conventions_{name.lower()}", None)


def loss_of(model):
    x, y = data()
    return torch.nn.functional.cross_entropy(model(x), y)


def train(model, opt, steps, scheduler=None):
    for _ in range(steps):
        opt.zero_grad()
        loss_of(model).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return [p.detach().clone() for p in model.parameters()]


def assert_params(a, b, atol):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


def one_step(opt_params, grads):
    for p, g in zip(opt_params, grads):
        p.grad = torch.tensor(g)


# ---- exact values ------------------------------------------------------------------------

@pytest.mark.parametrize("foreach", [False, True])
def test_sgd_rule_gives_the_exact_weights(classes, foreach):
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0, -3.0]))
    opt = classes["sgd"]([w], lr=0.5, foreach=foreach)
    w.grad = torch.tensor([1.0, -2.0, 0.5])
    opt.step()
    assert torch.equal(w.detach(), torch.tensor([0.5, 3.0, -3.25]))
    # lr 0.1 is not binary: the result is exactly torch's SGD step, w + (-0.1) g
    v = torch.nn.Parameter(torch.tensor([1.0, 0.3]))
    ref = torch.nn.Parameter(torch.tensor([1.0, 0.3]))
    opt, ref_opt = classes["sgd"]([v], lr=0.1, foreach=foreach), torch.optim.SGD([ref], lr=0.1)
    v.grad, ref.grad = torch.tensor([1.0, 0.7]), torch.tensor([1.0, 0.7])
    opt.step()
    ref_opt.step()
    assert torch.equal(v.detach(), ref.detach()) and v[0].item() == torch.tensor(0.9).item()


@pytest.mark.parametrize("foreach", [False, True])
def test_maximize_and_weight_decay_exactly(classes, foreach):
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    opt = classes["sgd"]([w], lr=0.5, maximize=True, foreach=foreach)
    w.grad = torch.tensor([1.0, -2.0])
    opt.step()
    assert torch.equal(w.detach(), torch.tensor([1.5, 0.0]))
    # g + weight_decay * w = 1 + 0.5 * 2 = 2; w = 2 - 0.5 * 2 = 1
    w = torch.nn.Parameter(torch.tensor([2.0, -4.0]))
    opt = classes["sgd"]([w], lr=0.5, weight_decay=0.5, foreach=foreach)
    w.grad = torch.tensor([1.0, 0.0])
    opt.step()
    assert torch.equal(w.detach(), torch.tensor([1.0, -3.0]))


@pytest.mark.parametrize("kwargs", [dict(maximize=True), dict(weight_decay=0.01)])
def test_adam_rule_maximize_and_weight_decay_follow_torch_adam(classes, kwargs):
    ref_model, model = net(), net()
    ref = train(ref_model, torch.optim.Adam(ref_model.parameters(), lr=0.01, **kwargs), 8)
    got = train(model, classes["adam"](model.parameters(), lr=0.01, foreach=True, **kwargs), 8)
    assert_params(got, ref, atol=1e-6)


# ---- param groups -------------------------------------------------------------------------

@pytest.mark.parametrize("foreach", [False, True])
def test_param_groups_with_their_own_lr(classes, foreach):
    a = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    b = torch.nn.Parameter(torch.tensor([3.0]))
    opt = classes["sgd"]([{"params": [a]}, {"params": [b], "lr": 0.25}], lr=0.5,
                         foreach=foreach)
    a.grad, b.grad = torch.tensor([1.0, -1.0]), torch.tensor([2.0])
    opt.step()
    assert torch.equal(a.detach(), torch.tensor([0.5, 2.5]))
    assert torch.equal(b.detach(), torch.tensor([2.5]))
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.25]


def test_add_param_group_fills_defaults_and_checks_betas(classes):
    a = torch.nn.Parameter(torch.tensor([1.0]))
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = classes["sgd"]([a], lr=0.5, weight_decay=0.0)
    opt.add_param_group({"params": [b], "lr": 0.125})
    group = opt.param_groups[1]
    assert group["lr"] == 0.125 and group["maximize"] is False and group["capturable"] is False
    assert group["betas"] == opt.param_groups[0]["betas"]
    a.grad, b.grad = torch.tensor([1.0]), torch.tensor([1.0])
    opt.step()
    assert a.item() == 0.5 and b.item() == 0.875
    with pytest.raises(ValueError, match=r"Invalid betas.*\(beta1, beta2, beta3\)"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))], "betas": (0.9, 0.99)})
    with pytest.raises(ValueError, match="Invalid betas"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))],
                             "betas": (0.9, 1.0, 0.9)})


def test_a_group_with_its_own_betas(classes):
    # the adam rule with betas (0.8, 0.99) in one group is torch's Adam with those betas
    ref_model, model = net(), net()
    first, last = list(model[0].parameters()), list(model[2].parameters())
    opt = classes["adam"]([{"params": first, "betas": (0.8, 0.99, 0.999)}, {"params": last}],
                          lr=0.01)
    ref_first, ref_last = list(ref_model[0].parameters()), list(ref_model[2].parameters())
    ref = torch.optim.Adam([{"params": ref_first, "betas": (0.8, 0.99)}, {"params": ref_last}],
                           lr=0.01)
    assert_params(train(model, opt, 6), train(ref_model, ref, 6), atol=1e-6)


# ---- state dicts and pickles --------------------------------------------------------------

@pytest.mark.parametrize("rule", ["adam", "powersign-cd"])
@pytest.mark.parametrize("kwargs", [dict(foreach=False), dict(foreach=True),
                                    dict(capturable=True)],
                         ids=["per-tensor", "foreach", "capturable"])
def test_state_dict_round_trip_across_instances(classes, rule, kwargs):
    cls = classes[rule]
    model = net()
    opt = cls(model.parameters(), lr=0.01, total_steps=10, weight_decay=0.01, **kwargs)
    train(model, opt, 4)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)

    twin = net(seed=7)
    twin_opt = cls(twin.parameters(), lr=0.5, total_steps=10, **kwargs)
    twin.load_state_dict(saved["model"])
    twin_opt.load_state_dict(saved["opt"])
    assert twin_opt.param_groups[0]["lr"] == 0.01
    assert twin_opt.param_groups[0]["weight_decay"] == 0.01
    assert_params(train(model, opt, 4), train(twin, twin_opt, 4), atol=0)
    step = twin_opt.state[next(twin.parameters())]["step"]
    if kwargs.get("capturable"):
        assert torch.is_tensor(step) and step.dtype == torch.float32 and step.item() == 8
    else:
        assert step == 8 and isinstance(step, int)


def test_a_group_switched_to_capturable_converts_its_steps(classes):
    # load_state_dict brings the saved groups' flags along (as for torch's Adam); a group
    # switched afterwards converts its int steps to tensors, and back
    model, twin = net(), net()
    opt = classes["adam"](model.parameters(), lr=0.01)
    twin_opt = classes["adam"](twin.parameters(), lr=0.01, capturable=True)
    train(model, opt, 3)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))   # state_dict() gives references
    twin.load_state_dict(model.state_dict())
    assert twin_opt.param_groups[0]["capturable"] is False
    twin_opt.param_groups[0]["capturable"] = True
    assert_params(train(model, opt, 3), train(twin, twin_opt, 3), atol=1e-6)
    assert twin_opt.state[twin[0].weight]["step"].item() == 6
    twin_opt.param_groups[0]["capturable"] = False
    train(twin, twin_opt, 1)
    assert twin_opt.state[twin[0].weight]["step"] == 7


@pytest.mark.parametrize("foreach", [False, True])
def test_pickled_optimizer_continues_identically(classes, foreach):
    model = net()
    opt = classes["powersign-cd"](model.parameters(), lr=0.01, total_steps=10,
                                  foreach=foreach)
    train(model, opt, 3)
    twin = pickle.loads(pickle.dumps({"model": model, "opt": opt}))   # one memo: shared params
    assert type(twin["opt"]) is type(opt)
    assert twin["opt"].param_groups[0]["total_steps"] == 10
    assert_params(train(model, opt, 3), train(twin["model"], twin["opt"], 3), atol=0)


def test_repr_names_the_class_the_rule_and_the_settings(classes):
    opt = classes["adam"](net().parameters(), lr=0.1)
    text = repr(opt)
    assert text.startswith("ExpAdam(Adam)\n")
    assert "ExpAdam (" in text and "lr: 0.1" in text and "capturable: False" in text
    assert "betas: (0.9, 0.999, 0.999)" in text


# ---- closure, zero_grad -------------------------------------------------------------------

def test_closure_runs_with_grad_and_returns_its_loss(classes):
    model, ref_model = net(), net()
    opt = classes["adam"](model.parameters(), lr=0.01)
    ref_opt = classes["adam"](ref_model.parameters(), lr=0.01)

    def closure():
        opt.zero_grad()
        loss = loss_of(model)
        loss.backward()
        return loss

    for _ in range(3):
        with torch.no_grad():      # the optimizer enables grad for the closure itself
            loss = opt.step(closure)
        assert loss.grad_fn is not None
        ref_opt.zero_grad()
        ref_loss = loss_of(ref_model)
        ref_loss.backward()
        ref_opt.step()
        assert loss.item() == ref_loss.item()
    assert_params(list(model.parameters()), list(ref_model.parameters()), atol=0)


@pytest.mark.parametrize("foreach", [False, True])
def test_zero_grad_to_none_and_to_zero(classes, foreach):
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = classes["adam"]([w], lr=0.5, foreach=foreach)
    w.grad = torch.tensor([1.0, 1.0])
    opt.step()
    after_one = w.detach().clone()
    opt.zero_grad(set_to_none=True)
    assert w.grad is None
    opt.step()                                     # no gradient: no step, no state change
    assert torch.equal(w.detach(), after_one) and opt.state[w]["step"] == 1
    w.grad = torch.tensor([1.0, 1.0])
    opt.zero_grad(set_to_none=False)
    assert torch.equal(w.grad, torch.zeros(2))
    sgd_w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    sgd = classes["sgd"]([sgd_w], lr=0.5, foreach=foreach)
    sgd_w.grad = torch.ones(2)
    sgd.zero_grad(set_to_none=False)
    sgd.step()                                     # a zero gradient: sgd leaves w exactly
    assert torch.equal(sgd_w.detach(), torch.tensor([1.0, -1.0]))


# ---- lr schedulers ------------------------------------------------------------------------

@pytest.mark.parametrize("foreach", [False, True])
def test_step_lr_matches_torch_sgd_exactly(classes, foreach):
    ref_model, model = net(), net()
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.1, foreach=foreach)
    opt = classes["sgd"](model.parameters(), lr=0.1, foreach=foreach)
    ref = train(ref_model, ref_opt, 12, torch.optim.lr_scheduler.StepLR(ref_opt, 4, 0.5))
    got = train(model, opt, 12, torch.optim.lr_scheduler.StepLR(opt, 4, 0.5))
    assert_params(got, ref, atol=0)
    assert opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"] == 0.1 * 0.5 ** 3


@pytest.mark.parametrize("cycle_momentum", [False, True])
def test_one_cycle_lr_matches_torch_adam(classes, cycle_momentum):
    # with cycle_momentum=True OneCycleLR cycles betas[0], beta1, as it does torch Adam's
    ref_model, model = net(), net()
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=0.01)
    opt = classes["adam"](model.parameters(), lr=0.01, foreach=True)
    kwargs = dict(max_lr=0.05, total_steps=10, cycle_momentum=cycle_momentum)
    ref_sched = torch.optim.lr_scheduler.OneCycleLR(ref_opt, **kwargs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, **kwargs)
    lrs, betas = [], []
    for _ in range(9):
        for o, m in ((ref_opt, ref_model), (opt, model)):
            o.zero_grad()
            loss_of(m).backward()
            o.step()
        ref_sched.step()
        sched.step()
        assert opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"]
        assert opt.param_groups[0]["betas"][:2] == ref_opt.param_groups[0]["betas"]
        lrs.append(opt.param_groups[0]["lr"])
        betas.append(opt.param_groups[0]["betas"][0])
    assert len(set(lrs)) == 9                       # the schedule did move lr
    assert (len(set(betas)) > 1) == cycle_momentum  # and beta1 only when asked
    assert_params(list(model.parameters()), list(ref_model.parameters()), atol=1e-6)


# ---- capturable step and torch.compile -----------------------------------------------------

@pytest.mark.parametrize("rule", ["adam", "powersign-cd"])
@pytest.mark.parametrize("foreach", [False, True])
def test_capturable_step_is_a_device_tensor_and_matches_int_steps(classes, rule, foreach):
    runs = []
    for capturable in (False, True):
        model = net()
        opt = classes[rule](model.parameters(), lr=0.01, total_steps=6, foreach=foreach,
                            capturable=capturable)
        runs.append(train(model, opt, 8))      # past total_steps: the decays clamp t
        step = opt.state[next(model.parameters())]["step"]
        if capturable:
            assert torch.is_tensor(step) and step.dim() == 0 and step.dtype == torch.float32
            assert step.device == next(model.parameters()).device and step.item() == 8
    assert_params(runs[0], runs[1], atol=1e-6)


def test_capturable_annealed_noise_reads_the_tensor_step(classes):
    # eps_t scales its noise by (1 + t)^(-anneal_power / 2): same draws, same scale
    runs = []
    for capturable in (False, True):
        torch.manual_seed(5)
        w = torch.nn.Parameter(torch.zeros(6))
        opt = classes["add(mul(eps_t, 1), g)"]([w], lr=1.0, capturable=capturable)
        for _ in range(3):
            w.grad = torch.zeros(6)
            opt.step()
        runs.append(w.detach().clone())
    torch.testing.assert_close(runs[0], runs[1], atol=1e-6, rtol=0)
    assert runs[0].abs().sum() > 0


def _compile_works():
    """Whether torch.compile runs at all here (inductor needs a working C++ compiler)."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
    except Exception as exc:   # noqa: BLE001 -- any failure here is the environment's
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


@pytest.mark.parametrize("foreach", [False, True])
def test_torch_compile_of_an_exported_capturable_step(classes, foreach):
    problem = _compile_works()
    if problem is not None:
        pytest.skip(f"torch.compile does not work in this environment ({problem})")
    runs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        opt = classes["powersign-cd"](model.parameters(), lr=0.01, total_steps=3,
                                      foreach=foreach, capturable=True)
        # fullgraph: the whole step is one graph, with no break and no host sync
        step = torch.compile(opt.step, fullgraph=True) if compiled else opt.step
        trajectory = []
        for _ in range(3):
            opt.zero_grad()
            loss_of(model).backward()
            step()
            trajectory.append([p.detach().clone() for p in model.parameters()])
        runs.append(trajectory)
        assert opt.state[model.weight]["step"].item() == 3
    for eager, compiled in zip(*runs):
        assert_params(compiled, eager, atol=1e-6)
    assert not torch.equal(runs[0][0][0], runs[0][2][0])      # it did move


# ---- the multi-tensor path: slices, flat buffers --------------------------------------------

def _shaped_params(shapes, channels_last=()):
    gen = torch.Generator().manual_seed(0)
    params = []
    for i, shape in enumerate(shapes):
        t = torch.randn(shape, generator=gen)
        if i in channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        params.append(torch.nn.Parameter(t))
    return params


@pytest.mark.parametrize("rule", ["adam", "powersign-cd"])
def test_foreach_slices_and_flat_buffers_agree_with_the_per_tensor_path(classes, rule):
    # a tensor above the CPU slice size (2 slices), a large channels_last one (whole), a
    # mid-size one (alone), small ones (concatenated); a gradient missing at one step
    # changes the batch, and a replaced state tensor must be honoured
    shapes = [(300, 500), (64, 64, 6, 6), (40, 200), (3, 4), (7,), (2, 2, 2), (5,)]
    gen = torch.Generator().manual_seed(1)
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(5)]
    runs = []
    for foreach in (False, True):
        ps = _shaped_params(shapes, channels_last=(1,))
        opt = classes[rule](ps, lr=0.01, total_steps=5, foreach=foreach, weight_decay=0.01)
        for k, step in enumerate(grads):
            for i, (p, g) in enumerate(zip(ps, step)):
                p.grad = None if (k == 2 and i == 4) else g.clone()
            if k == 3:
                opt.state[ps[3]]["m"] = torch.full((3, 4), 0.5)
            opt.step()
        runs.append([p.detach() for p in ps])
        assert opt.state[ps[4]]["step"] == 4 and opt.state[ps[3]]["step"] == 5
    assert_params(runs[0], runs[1], atol=1e-7)


@pytest.mark.parametrize("rule", ["adam", "powersign-cd", "sgd"])
@pytest.mark.parametrize("capturable", [False, True])
def test_the_exported_default_is_the_multi_tensor_path_on_the_cpu(classes, rule, capturable):
    # an exported class at its defaults (foreach=None) on the CPU: foreach=True's very
    # numbers, the per-tensor path's to 1e-6, on slices, alone and batched tensors
    shapes = [(300, 500), (40, 200), (3, 4), (7,), (2, 2, 2)]
    gen = torch.Generator().manual_seed(2)
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(6)]
    runs = {}
    for foreach in (None, True, False):
        ps = _shaped_params(shapes)
        opt = classes[rule](ps, lr=0.01, total_steps=6, weight_decay=0.01, foreach=foreach,
                            capturable=capturable)
        for step in grads:
            for p, g in zip(ps, step):
                p.grad = g.clone()
            opt.step()
        runs[foreach] = [p.detach() for p in ps]
    assert_params(runs[None], runs[True], atol=0)
    assert_params(runs[None], runs[False], atol=1e-6)


def test_the_exported_docstring_states_the_default(classes):
    doc = classes["adam"].__doc__
    assert "None (the" in doc and "CPU, CUDA or XPU" in doc
    assert "draws random numbers" in classes["add(mul(eps_t, 1), g)"].__doc__
    assert "draws random numbers" not in doc
