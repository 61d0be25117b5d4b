"""Export: standalone source (torch + stdlib only), JSON spec, CLI, and trajectories that
match RuleOptimizer, also in a fresh interpreter where evo_nos cannot be imported."""
import ast
import copy
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest
import torch

from evo_nos.optim import standalone
from evo_nos.cli.export import main
from evo_nos.optim.export import (default_class_name, export, export_source, export_spec,
                                 update_line)
from evo_nos.optim.kernels import direction_source
from evo_nos.core.known import KNOWN, resolve
from evo_nos.core.primitives import RuleSettings
from evo_nos.optim.optimizer import RuleOptimizer
from evo_nos.core.rules import Rule


def load(path, class_name):
    """Import an exported file under a fresh module name and return its class."""
    name = f"exported_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, getattr(module, class_name)


def exported_class(rule, tmp_path, **kwargs):
    py, _ = export(rule, tmp_path / f"opt_{uuid.uuid4().hex[:8]}.py", **kwargs)
    spec = json.loads(py.with_suffix(".json").read_text())
    return load(py, spec["class_name"])[1]


def initial_params():
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen),
            torch.randn(2, 1, 3, generator=gen)]


def gradient_steps(n=12):
    gen = torch.Generator().manual_seed(4)
    out = []
    for k in range(n):
        grads = [torch.randn(p.shape, generator=gen) for p in initial_params()]
        if k == 3:
            grads[1][0] = 0.0                # an exact zero gradient entry
        out.append(grads)
    return out


def trajectory(make_opt, steps):
    params = [torch.nn.Parameter(t.clone()) for t in initial_params()]
    opt = make_opt(params)
    torch.manual_seed(0)                      # for rules with noise or drop
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    return [p.detach().clone() for p in params]


# name, rule, settings, constructor kwargs
CASES = [
    ("powersign_ld", "powersign-ld", None, dict(lr=0.05, total_steps=8)),
    ("adam_wd_max", "adam", None, dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("addsign_rd_foreach", "addsign-rd", None, dict(lr=0.05, total_steps=5, foreach=True)),
    ("nos4_drop", "nos-4", None, dict(lr=0.01)),
    ("noise", "add(g, mul(eps_t, clip3(r)))", None, dict(lr=0.01)),
    ("custom_settings", "mul(adam, exp(mul(sign_g, sign_m)))",
     RuleSettings(beta1=0.5, beta2=0.9, bias_correction=False, adam_eps=1e-3), dict(lr=0.01)),
]


# ---- class names ------------------------------------------------------------------------

@pytest.mark.parametrize("rule,name", [
    ("powersign", "PowerSign"), ("addsign-ld", "AddSignLd"), ("powersign2", "PowerSign2"),
    ("nos-4", "Nos4"), ("sgd", "SGD"), ("signsgd", "SignSGD"), ("rmsprop", "RMSProp"),
    ("mul(g, m)", "EvoNosRule"), (KNOWN["addsign-cd"], "AddSignCd"),
])
def test_default_class_name(rule, name):
    assert default_class_name(rule) == name


@pytest.mark.parametrize("bad", ["2Fast", "my-opt", "class", "RuleOptimizerBase", "torch",
                                 "drop"])
def test_bad_class_names_are_refused(bad):
    with pytest.raises(ValueError, match="class name"):
        export_source("powersign", class_name=bad)


# ---- the source ---------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["powersign", "nos-14", "addsign-rd", "add(eps, w4)"])
def test_source_imports_only_torch_and_the_standard_library(rule):
    tree = ast.parse(export_source(rule))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module.split(".")[0])
    assert "torch" in modules
    assert modules - {"torch"} <= set(sys.stdlib_module_names), modules


def test_source_is_the_standalone_module_plus_the_generated_direction():
    rule = KNOWN["powersign-cd"]
    source = export_source(rule)
    text = inspect.getsource(standalone)
    body = text[text.index('"""', 3) + 3:].strip("\n")     # minus the docstring
    assert body in source
    assert direction_source(rule, RuleSettings(), name="_rule_direction") in source
    # the exported class adds no update code of its own: step comes from RuleOptimizerBase
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PowerSignCd")
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assert methods == {"__init__", "__repr__"}
    assert [b.id for b in cls.bases] == ["RuleOptimizerBase"]


def test_class_docstring_shows_math_latex_and_canonical_string(tmp_path):
    cls = exported_class("powersign", tmp_path)
    doc = cls.__doc__
    assert doc.startswith("PowerSign: exp(sign(g)·sign(m̂))·g")
    assert "w <- w - lr * exp(sign(g)·sign(m̂))·g" in doc
    assert KNOWN["powersign"].latex in doc
    assert "mul(exp(mul(sign_g, sign_m)), g)" in doc
    assert cls.rule == "mul(exp(mul(sign_g, sign_m)), g)"


@pytest.mark.parametrize("rule,betas", [
    ("addsign-ld", (0.9,)), ("adam", (0.9, 0.999)), ("add(rmsprop, r)", (0.999, 0.999)),
    ("sgd", None), ("signsgd", None),
])
def test_constructor_is_rule_optimizers_minus_rule_and_settings_plus_its_betas(
        rule, betas, tmp_path):
    cls = exported_class(rule, tmp_path)
    ours = inspect.signature(RuleOptimizer.__init__)
    expected = [(p.name, p.kind, p.default) for name, p in ours.parameters.items()
                if name not in ("rule", "settings")]
    if betas is not None:        # keyword-only, first after lr: one beta per average read
        expected.insert(3, ("betas", inspect.Parameter.KEYWORD_ONLY, betas))
    got = list(inspect.signature(cls.__init__).parameters.values())
    assert [(p.name, p.kind, p.default) for p in got] == expected


def test_betas_set_the_averages_the_rule_reads_as_rule_optimizer_settings_do(tmp_path):
    adam = exported_class("adam", tmp_path)
    w = torch.nn.Parameter(torch.ones(2))
    assert adam([w], lr=0.1, betas=(0.8, 0.99)).param_groups[0]["betas"] == (0.8, 0.99, 0.999)
    assert adam([w]).param_groups[0]["betas"] == (0.9, 0.999, 0.999)
    steps = gradient_steps()
    settings = RuleSettings(beta1=0.8, beta2=0.99)
    ours = trajectory(lambda ps: RuleOptimizer(ps, "adam", lr=0.01, settings=settings), steps)
    theirs = trajectory(lambda ps: adam(ps, lr=0.01, betas=(0.8, 0.99)), steps)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    # a rule reading v and r takes (beta2, beta3); PowerSign, reading m, takes (beta1,)
    vr = exported_class("add(rmsprop, r)", tmp_path)
    assert vr([w], betas=(0.5, 0.6)).param_groups[0]["betas"] == (0.9, 0.5, 0.6)
    powersign = exported_class("powersign", tmp_path)
    assert powersign([w], betas=[0.7]).param_groups[0]["betas"] == (0.7, 0.999, 0.999)


@pytest.mark.parametrize("betas", [(0.9,), (0.9, 0.999, 0.999), (0.9, 1.0), (-0.1, 0.9), 0.9,
                                   ("a", 0.9)])
def test_betas_of_the_wrong_form_are_refused_naming_the_right_one(betas, tmp_path):
    adam = exported_class("adam", tmp_path)
    with pytest.raises(ValueError) as info:
        adam([torch.nn.Parameter(torch.ones(1))], betas=betas)
    assert str(info.value) == (f"Invalid betas: {betas!r} (must be (beta1, beta2), each in "
                               "[0, 1): the decays of this rule's running averages m, v)")
    powersign = exported_class("powersign", tmp_path)
    with pytest.raises(ValueError) as info:
        powersign([torch.nn.Parameter(torch.ones(1))], betas=(0.9, 0.999))
    assert str(info.value) == ("Invalid betas: (0.9, 0.999) (must be (beta1,), each in "
                               "[0, 1): the decays of this rule's running averages m)")


def test_a_rule_reading_no_average_takes_no_betas(tmp_path):
    sgd = exported_class("sgd", tmp_path)
    with pytest.raises(TypeError, match="betas"):
        sgd([torch.nn.Parameter(torch.ones(1))], lr=0.1, betas=(0.9, 0.999))
    assert "betas:" not in sgd.__doc__
    assert "Param groups also hold betas, (beta1, beta2, beta3), which this rule does not " \
           "read." in sgd.__doc__


def test_docstring_names_the_betas_of_the_averages_the_rule_reads(tmp_path):
    cls = exported_class("adam", tmp_path, settings={"beta2": 0.99})
    doc = inspect.cleandoc(cls.__doc__).splitlines()
    start = doc.index("    betas: (beta1, beta2), default (0.9, 0.99): the decays of the "
                      "running averages")
    assert doc[start + 1:start + 4] == ["        this rule reads, each in [0, 1):",
                                        "        m̂: running average of g (beta1).",
                                        "        v̂: running average of g² (beta2)."]
    assert "    lr: learning rate (default 0.001)." in doc
    assert "Constants: adam_eps=1e-08, bias_correction=True." in doc
    assert doc[-4:-2] == [
        "Param groups hold all three betas, (beta1, beta2, beta3), of which this rule reads",
        "beta1, beta2. OneCycleLR(cycle_momentum=True) cycles beta1, as for torch's Adam."]
    doc = inspect.cleandoc(exported_class("powersign", tmp_path).__doc__).splitlines()
    assert "    betas: (beta1,), default (0.9,): the decays of the running averages" in doc


def test_module_exports_only_the_class(tmp_path):
    py, _ = export("powersign", tmp_path / "ps.py")
    module, cls = load(py, "PowerSign")
    assert module.__all__ == ["PowerSign"]
    assert issubclass(cls, torch.optim.Optimizer)


def test_exported_decay_rule_asks_for_total_steps(tmp_path):
    cls = exported_class("powersign-rd", tmp_path)
    with pytest.raises(ValueError, match="total_steps"):
        cls([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        cls([torch.nn.Parameter(torch.ones(1))], lr=-1.0, total_steps=3)


def test_exported_state_is_lazy_and_minimal(tmp_path):
    cls = exported_class("powersign", tmp_path)
    w = torch.nn.Parameter(torch.ones(3))
    opt = cls([w], lr=0.1)
    assert len(opt.state) == 0
    w.grad = torch.ones(3)
    opt.step()
    assert set(opt.state[w]) == {"step", "m"}


# ---- trajectories -------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_exported_optimizer_follows_rule_optimizer(case, tmp_path):
    _, rule, settings, kwargs = case
    cls = exported_class(rule, tmp_path, settings=settings)
    steps = gradient_steps()
    ours = trajectory(lambda ps: RuleOptimizer(ps, rule, settings=settings, **kwargs), steps)
    theirs = trajectory(lambda ps: cls(ps, **kwargs), steps)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    assert not torch.equal(ours[0], initial_params()[0])


def test_settings_are_baked_in(tmp_path):
    # bias correction off: the momentum rule's first step is 0.1·g instead of g
    cls = exported_class("momentum", tmp_path, settings={"bias_correction": False})
    w = torch.nn.Parameter(torch.zeros(2))
    opt = cls([w], lr=1.0)
    w.grad = torch.tensor([1.0, -2.0])
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([-0.1, 0.2]))


def test_state_dict_moves_between_rule_optimizer_and_export(tmp_path):
    rule = "add(mul(adam, exp(mul(ld, sign_m))), mul(w3, r))"
    cls = exported_class(rule, tmp_path)
    steps = gradient_steps()
    params = [torch.nn.Parameter(t.clone()) for t in initial_params()]
    opt = RuleOptimizer(params, rule, lr=0.01, total_steps=10)
    for grads in steps[:6]:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    twin_opt = cls(twin, lr=0.5, total_steps=3)
    # deep copy, as through a checkpoint file: torch's load_state_dict keeps the tensors
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    for grads in steps[6:]:
        for ps, o in ((params, opt), (twin, twin_opt)):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            o.step()
    for a, b in zip(params, twin):
        assert torch.equal(a, b)


FRESH = textwrap.dedent("""
    import importlib.util, sys
    site, inputs, out = sys.argv[1:4]
    try:
        import evo_nos
        evo_nos_importable = True
    except ImportError:
        evo_nos_importable = False
    sys.path.append(site)                    # torch only: no .pth files are processed (-S)
    import torch
    torch.set_num_threads(1)
    data = torch.load(inputs)
    results = {}
    for case in data["cases"]:
        spec = importlib.util.spec_from_file_location(case["module"], case["path"])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cls = getattr(module, case["class_name"])
        params = [torch.nn.Parameter(t.clone()) for t in data["init"]]
        opt = cls(params, **case["kwargs"])
        torch.manual_seed(0)
        for grads in data["grads"]:
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
        results[case["module"]] = [p.detach() for p in params]
    try:
        import evo_nos
        evo_nos_importable = True
    except ImportError:
        pass
    torch.save({"evo_nos_importable": evo_nos_importable, "results": results,
                "modules": sorted(m for m in sys.modules if m.startswith("evo_nos"))}, out)
""")


def test_export_runs_in_a_fresh_interpreter_without_evo_nos(tmp_path):
    cases = []
    for module, rule, settings, kwargs in CASES:
        py, js = export(rule, tmp_path / f"{module}.py", settings=settings)
        cases.append(dict(module=module, path=str(py), kwargs=kwargs,
                          class_name=json.loads(js.read_text())["class_name"]))
    # one file through the command line, with a chosen class name
    cli_py = tmp_path / "cli_opt.py"
    subprocess.run([sys.executable, "-m", "evo_nos.export", "--rule", "powersign", "--out",
                    str(cli_py), "--name", "MyPowerSign"], check=True, capture_output=True)
    cases.append(dict(module="cli_opt", path=str(cli_py), kwargs=dict(lr=0.1),
                      class_name="MyPowerSign"))

    steps = gradient_steps()
    torch.save({"cases": cases, "init": initial_params(), "grads": steps}, tmp_path / "in.pt")
    site = os.path.dirname(os.path.dirname(torch.__file__))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", FRESH, site, str(tmp_path / "in.pt"),
         str(tmp_path / "out.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = torch.load(tmp_path / "out.pt")
    assert out["evo_nos_importable"] is False and out["modules"] == []

    by_module = {m: (rule, settings, kwargs) for m, rule, settings, kwargs in CASES}
    by_module["cli_opt"] = ("powersign", None, dict(lr=0.1))
    for module, (rule, settings, kwargs) in by_module.items():
        ours = trajectory(lambda ps: RuleOptimizer(ps, rule, settings=settings, **kwargs), steps)
        for a, b in zip(ours, out["results"][module]):
            assert torch.equal(a, b), module


# ---- spec and files -------------------------------------------------------------------------

def test_spec_describes_the_rule():
    spec = export_spec("powersign-ld")
    assert spec["rule"] == "mul(exp(mul(ld, mul(sign_g, sign_m))), g)"
    assert spec["known_name"] == "powersign-ld" and spec["class_name"] == "PowerSignLd"
    assert spec["math"] == "exp(ld·sign(g)·sign(m̂))·g"
    assert spec["latex"] == KNOWN["powersign-ld"].latex
    assert spec["state"] == ["step", "m"]
    assert spec["requires_total_steps"] is True
    assert spec["constants"] == {"beta1": 0.9, "bias_correction": True}
    assert spec["settings"] == RuleSettings().as_dict()
    assert spec["defaults"] == {"lr": 1e-3, "betas": [0.9], "total_steps": None,
                                "weight_decay": 0.0, "maximize": False, "foreach": None,
                                "capturable": False}
    assert spec["search"] is None                      # no search found it
    assert spec["evo_nos_version"]
    json.dumps(spec)                                   # JSON-able as is


def test_spec_constants_are_the_settings_the_rule_reads():
    spec = export_spec("nos-6", settings=RuleSettings(delta=1e-6))
    assert spec["constants"] == {"beta1": 0.9, "bias_correction": True, "delta": 1e-6,
                                 "drop_rescale": True}
    assert export_spec("add(eps, rd)")["constants"] == {"noise_std": 0.1, "rd_periods": 1.0}
    assert export_spec("sgd")["constants"] == {}
    assert export_spec("adam")["state"] == ["step", "m", "v"]
    assert export_spec("adam", settings={"beta1": 0.5})["defaults"]["betas"] == [0.5, 0.999]
    assert "betas" not in export_spec("sgd")["defaults"]


def test_export_writes_source_and_json_beside_it(tmp_path):
    py, js = export("addsign", tmp_path / "sub" / "AddSign.py", class_name="MyAddSign")
    assert py == tmp_path / "sub" / "AddSign.py" and js == tmp_path / "sub" / "AddSign.json"
    assert py.read_text(encoding="utf-8") == export_source("addsign", class_name="MyAddSign")
    spec = json.loads(js.read_text(encoding="utf-8"))
    assert spec["class_name"] == "MyAddSign" and spec["source_file"] == "AddSign.py"
    assert sorted(p.name for p in py.parent.iterdir()) == ["AddSign.json", "AddSign.py"]


def test_export_refuses_a_non_python_path(tmp_path):
    with pytest.raises(ValueError, match=r"\.py"):
        export("sgd", tmp_path / "opt.txt")


def test_exports_are_deterministic():
    assert export_source("nos-7") == export_source(Rule.parse(str(KNOWN["nos-7"])))


# ---- command line -----------------------------------------------------------------------------

def test_cli_writes_both_files(tmp_path, capsys):
    out = tmp_path / "ps.py"
    assert main(["--rule", "powersign-cd", "--out", str(out), "--set", "bias_correction=false",
                 "--set", "beta1=0.8"]) == 0
    spec = json.loads(out.with_suffix(".json").read_text())
    assert spec["class_name"] == "PowerSignCd"
    assert spec["settings"]["bias_correction"] is False and spec["settings"]["beta1"] == 0.8
    assert "exp(cd·sign(g)·sign(m̂))·g" in capsys.readouterr().out


def test_cli_without_out_writes_the_class_file_in_the_current_folder(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--rule", "adam"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "wrote class Adam to Adam.py (spec: Adam.json)",
        "  w <- w - lr * Adam",
        "  use: opt = Adam(model.parameters())  # lr=0.001 by default"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Adam.json", "Adam.py"]
    assert (tmp_path / "Adam.py").read_text(encoding="utf-8") == export_source("adam")
    assert main(["--rule", "powersign-ld", "--name", "Mine"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "wrote class Mine to Mine.py (spec: Mine.json)"
    assert (tmp_path / "Mine.py").is_file()


def test_cli_without_out_refuses_a_folder_of_the_class_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "PowerSign.py").mkdir()
    with pytest.raises(SystemExit) as info:
        main(["--rule", "powersign"])
    assert info.value.code == 2
    assert capsys.readouterr().err == \
        "error: 'PowerSign.py' is a folder, not a .py file (see --help)\n"


@pytest.mark.parametrize("argv,message", [
    (["--rule", "mul(foo, g)"], "unknown token 'foo'"),
    (["--rule", "powersine"], "neither a known rule name"),
    ([], "--rule is required"),
    (["--rule", "sgd", "--set", "beta9=1"], "unknown setting 'beta9'"),
    (["--rule", "sgd", "--set", "beta1=high"], "beta1 expects a number"),
    (["--rule", "sgd", "--set", "beta1=1.5"], "beta1 must be in"),
    (["--rule", "sgd", "--name", "bad-name"], "not a valid Python identifier"),
])
def test_cli_errors_name_the_problem(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv + ["--out", str(tmp_path / "x.py")])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.py").exists()


@pytest.mark.parametrize("name", list(KNOWN))
def test_every_known_rule_exports_and_steps(name):
    namespace = {"__name__": f"exported_{name.replace('-', '_')}"}
    exec(compile(export_source(name), f"<export {name}>", "exec"), namespace)  # noqa: S102
    cls = namespace[default_class_name(name)]
    w = torch.nn.Parameter(torch.ones(3))
    opt = cls([w], lr=0.1, total_steps=5)
    w.grad = torch.tensor([1.0, -1.0, 0.5])
    opt.step()
    assert torch.isfinite(w).all() and opt.state[w]["step"] == 1


def test_the_update_line_brackets_a_sum_or_a_difference():
    assert update_line(resolve("powersign")) == "w <- w - lr * exp(sign(g)·sign(m̂))·g"
    assert update_line(resolve("sub(r, g)")) == "w <- w - lr * (γ̂ − g)"
    assert update_line(resolve("add(g, m)")) == "w <- w - lr * (g + m̂)"
