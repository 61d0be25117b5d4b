"""Export a rule as a standalone optimizer: one ``.py`` file (torch + stdlib only) and a
JSON spec beside it.

The exported file is assembled from the very code :class:`evo_nos.optim.RuleOptimizer`
runs, never from a second implementation:

1. the text of :mod:`evo_nos.optim.standalone` (``RuleOptimizerBase`` with its ``step``,
   and the helpers the generated code calls), copied verbatim minus its docstring;
2. the rule's direction function from :func:`evo_nos.optim.kernels.direction_source`, the
   same source :func:`evo_nos.optim.kernels.compile_direction` executes;
3. a small subclass that only sets class attributes (the compiled direction, which
   running averages it keeps, the betas, bias correction) and the constructor.

Settings are baked in as constants, so the exported constructor is RuleOptimizer's
minus ``rule`` and ``settings``, plus the rule's own hyper-parameters: ``betas``, one
per running average the rule reads (which ones, the primitive table's ``needs`` says;
an Adam-like rule reading m̂ and v̂ takes ``betas=(beta1, beta2)``; a rule reading none
takes no ``betas``).  A rule found by a search (``origin``, a :class:`SearchOrigin`)
defaults to the search's best lr and records where it comes from (run, preset, rank,
fitness ± SE) in its docstring and spec.

The command line (``python -m evo_nos.export``) is :mod:`evo_nos.cli.export`.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import keyword
import math
import os
import re
import string
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from evo_nos.core import tables
from evo_nos.core.files import write_atomic
from evo_nos.core.known import KNOWN, name_of, resolve
from evo_nos.core.primitives import AVERAGES, BINARY, BY_NAME, PRODUCT, RuleSettings
from evo_nos.core.rules import Rule
from evo_nos.optim import standalone
from evo_nos.optim.kernels import direction_source
from evo_nos.optim.optimizer import average_fields

__all__ = ["export", "export_source", "export_spec", "default_class_name", "SearchOrigin",
           "DEFAULT_LR", "primitives_frame", "primitives_markdown", "known_rules_frame",
           "known_rules_markdown"]

SPEC_FORMAT = "evo_nos.export/1"
_DIRECTION_NAME = "_rule_direction"
# RuleOptimizerBase's constructor: its lr default (an exported class's when no search chose
# one) and its keyword-only arguments, which every exported constructor repeats
_BASE_PARAMETERS = inspect.signature(standalone.RuleOptimizerBase).parameters
DEFAULT_LR = _BASE_PARAMETERS["lr"].default

# The running averages (the primitive table's AVERAGES) and the RuleSettings field that
# is each one's decay, in the order of a param group's betas.
_AVERAGE_BETAS = tuple((name, f"beta{i}") for i, name in enumerate(AVERAGES, 1))

# How the words of known names are capitalised in class names.
_WORDS = {
    "powersign": "PowerSign", "addsign": "AddSign", "signsgd": "SignSGD", "sgd": "SGD",
    "rmsprop": "RMSProp", "adam": "Adam", "momentum": "Momentum", "nos": "Nos",
}


def _evo_nos_version() -> str:
    try:
        return version("evo_nos")
    except PackageNotFoundError:  # running from a source tree
        return "unknown"


def update_line(rule: Rule) -> str:
    """``w <- w - lr * (the rule's math)``: the update an exported optimizer applies, the
    math in parentheses where it is a sum or a difference."""
    additive = rule.kind == BINARY and rule.primitive.prec < PRODUCT     # a sum
    return f"w <- w - lr * {f'({rule.math})' if additive else rule.math}"


def default_class_name(rule: "Rule | str") -> str:
    """``PowerSign`` for ``powersign``, ``AddSignLd`` for ``addsign-ld``, ``Nos4`` for
    ``nos-4``; ``EvoNosRule`` for a rule without a known name."""
    rule = resolve(rule)
    name = name_of(rule)
    if name is None:
        return "EvoNosRule"
    parts = []
    for part in re.split(r"[-_]", name):
        word, digits = re.fullmatch(r"([a-z]*)(\d*)", part).groups()
        parts.append(_WORDS.get(word, word.capitalize()) + digits)
    return "".join(parts)


def _number(value) -> "float | None":
    """A stored number as a float; None for a missing one (None or NaN)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class SearchOrigin:
    """Where an exported rule was found: entry ``rank`` of the hall of fame of the search
    run ``run_id`` (with ``preset``), its ``fitness`` (the mean over ``seeds`` seeds) ±
    ``fitness_se`` (None with one seed) at ``best_lr``, the lr the search chose for it
    (None: none chosen).  :func:`evo_nos.tracking.export_origin` reads one back."""

    run_id: str
    rank: int
    rule: str
    preset: "str | None"
    fitness: "float | None"
    fitness_se: "float | None"
    seeds: "int | None"
    best_lr: "float | None"

    @classmethod
    def from_entry(cls, entry: dict, *, run_id: str, preset: "str | None") -> "SearchOrigin":
        """From a hall-of-fame row (the columns of a search's ``hall_of_fame.json``:
        rank, rule, fitness, fitness_se, seeds, best_lr; missing ones are None)."""
        seeds = _number(entry.get("seeds"))
        return cls(run_id=str(run_id), rank=int(entry.get("rank") or 1),
                   rule=str(entry["rule"]), preset=None if preset is None else str(preset),
                   fitness=_number(entry.get("fitness")),
                   fitness_se=_number(entry.get("fitness_se")),
                   seeds=None if seeds is None else int(seeds),
                   best_lr=_number(entry.get("best_lr")))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def score(self) -> str:
        """``fitness 0.81 ± 0.012 (mean ± SE over 3 seeds)``, the numbers exact."""
        if self.fitness is None:
            return "fitness unknown"
        seeds = "" if self.seeds is None else f"{self.seeds} seed" + "s" * (self.seeds != 1)
        if self.fitness_se is None:
            return f"fitness {self.fitness!r} ({seeds or 'seeds unknown'}, no SE)"
        return f"fitness {self.fitness!r} ± {self.fitness_se!r} (mean ± SE over {seeds})"

    def lines(self) -> list:
        """Three lines for a docstring: which search; the rank and score; the lr."""
        preset = "" if self.preset is None else f" (preset {self.preset!r})"
        lr = "no lr chosen" if self.best_lr is None else f"best lr {self.best_lr!r}"
        return [f"Found by evo_nos search run {self.run_id}{preset},",
                f"hall-of-fame rank {self.rank}: {self.score};", f"{lr}."]


def _standalone_body() -> str:
    """The text of evo_nos/optim/standalone.py without its module docstring."""
    text = inspect.getsource(standalone)
    tree = ast.parse(text)
    if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(
            getattr(tree.body[0], "value", None), ast.Constant) and isinstance(
            tree.body[0].value.value, str):
        lines = text.splitlines(keepends=True)
        text = "".join(lines[tree.body[0].end_lineno:])
    return text.strip("\n") + "\n"


def _reserved_names() -> set:
    """Module-level names of the exported file a class name must not shadow."""
    tree = ast.parse(inspect.getsource(standalone))
    names = {_DIRECTION_NAME, "__all__"}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _check_class_name(name: str) -> str:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"class name {name!r} is not a valid Python identifier; "
                         "pass e.g. --name MyOptimizer")
    if name in _reserved_names():
        raise ValueError(f"class name {name!r} clashes with a name the exported module "
                         "already defines; choose another")
    return name


def _template_fields(template: str) -> set:
    return {f for _, f, _, _ in string.Formatter().parse(template)
            if f and not f.isdigit()}


def _constants(rule: Rule, settings: RuleSettings) -> dict:
    """The settings this rule actually reads (its betas, noise, epsilons, periods)."""
    fields: set = set()
    for node in rule.nodes():
        prim = node.primitive
        fields |= (_template_fields(prim.code) | _template_fields(prim.prelude)
                   | set(prim.settings))
    for _, beta, _ in _rule_betas(rule, settings):
        fields |= {beta, "bias_correction"}
    values = settings.as_dict()
    return {name: values[name] for name in sorted(fields)}


def _rule_betas(rule: Rule, settings: RuleSettings) -> list:
    """``(average, setting, value)`` for each running average the rule reads (the
    primitive table's ``needs`` of its operands), in the order of the betas."""
    values = settings.as_dict()
    return [(avg, beta, values[beta]) for avg, beta in _AVERAGE_BETAS if avg in rule.needs]


def _constructor_defaults(rule: Rule, settings: RuleSettings,
                          origin: "SearchOrigin | None") -> dict:
    """The exported constructor's keyword arguments and their defaults, in order: ``lr``
    (the search's best lr when known), ``betas`` (only for a rule reading an average),
    then RuleOptimizer's other keywords."""
    lr = origin.best_lr if origin is not None and origin.best_lr is not None else DEFAULT_LR
    out = {"lr": lr}
    betas = _rule_betas(rule, settings)
    if betas:
        out["betas"] = tuple(value for _, _, value in betas)
    out.update((name, p.default) for name, p in _BASE_PARAMETERS.items()
               if p.kind is p.KEYWORD_ONLY and name != "betas")
    return out


def _state_keys(rule: Rule) -> list:
    return ["step"] + list(average_fields(rule)["_averages"])


def _resolve(rule, settings, class_name, origin=None):
    rule = resolve(rule)
    if origin is not None and not isinstance(origin, SearchOrigin):
        raise TypeError(f"origin must be a SearchOrigin, got {type(origin).__name__}")
    if settings is None:
        settings = RuleSettings()
    elif isinstance(settings, dict):
        settings = RuleSettings.from_dict(settings)
    elif not isinstance(settings, RuleSettings):
        raise TypeError(f"settings must be a RuleSettings or a dict, got {type(settings).__name__}")
    class_name = _check_class_name(class_name if class_name is not None
                                   else default_class_name(rule))
    return rule, settings, class_name


def export_spec(rule: "Rule | str", *, class_name: str | None = None,
                settings: "RuleSettings | dict | None" = None,
                origin: "SearchOrigin | None" = None) -> dict:
    """The JSON-able description written beside an exported file; ``search`` is
    ``origin`` as a dict (None for a rule no search found)."""
    rule, settings, class_name = _resolve(rule, settings, class_name, origin)
    defaults = _constructor_defaults(rule, settings, origin)
    if "betas" in defaults:
        defaults["betas"] = list(defaults["betas"])
    return {
        "format": SPEC_FORMAT,
        "class_name": class_name,
        "known_name": name_of(rule),
        "rule": rule.canonical,
        "math": rule.math,
        "latex": rule.latex,
        "update": update_line(rule),
        "complexity": rule.complexity,
        "needs": sorted(rule.needs),
        "state": _state_keys(rule),
        "requires_total_steps": rule.uses_decay,
        "constants": _constants(rule, settings),
        "settings": settings.as_dict(),
        "defaults": defaults,
        "search": None if origin is None else origin.as_dict(),
        "evo_nos_version": _evo_nos_version(),
    }


def _betas_doc(rule: Rule, settings: RuleSettings) -> list:
    """The ``betas`` lines of the Args section (none for a rule reading no average)."""
    betas = _rule_betas(rule, settings)
    if not betas:
        return []
    names = ", ".join(beta for _, beta, _ in betas) + ("," if len(betas) == 1 else "")
    values = tuple(value for _, _, value in betas)
    lines = [f"    betas: ({names}), default {values!r}: the decays of the running averages",
             "        this rule reads, each in [0, 1):"]
    lines += [f"        {BY_NAME[avg].math}: {BY_NAME[avg].doc}." for avg, _, _ in betas]
    return lines


def _docstring(rule: Rule, settings: RuleSettings, class_name: str,
               origin: "SearchOrigin | None" = None) -> str:
    known = name_of(rule)
    title = f"{class_name}: {rule.math}" + (f"  (evo_nos known rule {known!r})" if known else "")
    beta_names = {beta for _, beta in _AVERAGE_BETAS}
    constants = ", ".join(f"{k}={v!r}" for k, v in _constants(rule, settings).items()
                          if k not in beta_names) or "none"
    decay_note = ("required: this rule uses a decay\n        operand evaluated at t / total_steps"
                  if rule.uses_decay else "unused by this rule")
    lr = _constructor_defaults(rule, settings, origin)["lr"]
    lr_note = (f"learning rate (default {lr!r}: the lr the search chose for this rule)"
               if origin is not None and origin.best_lr is not None
               else f"learning rate (default {lr!r})")
    found = [] if origin is None else [*origin.lines(), ""]
    read = [beta for _, beta, _ in _rule_betas(rule, settings)]
    cycle = "OneCycleLR(cycle_momentum=True) cycles beta1, as for torch's Adam."
    groups = (["Param groups hold all three betas, (beta1, beta2, beta3), of which this rule "
               "reads", f"{', '.join(read)}. {cycle}"] if read else
              ["Param groups also hold betas, (beta1, beta2, beta3), which this rule does not "
               "read.", cycle])
    lines = [
        title,
        "",
        "Update, per parameter and step:",
        "",
        "    " + update_line(rule),
        "",
        f"LaTeX: {rule.latex}",
        "",
        f"Rule (evo_nos canonical string): {rule.canonical}",
        "",
        *found,
        f"Constants: {constants}.",
        f"State per parameter: {', '.join(_state_keys(rule))}.",
        "",
        "Notation: g is the gradient (plus weight_decay * w when set); m̂, v̂, γ̂ are the",
        "running averages of g, g², g³ (updated before the direction is computed, bias",
        "corrected when bias_correction is on); t counts the steps taken before this one.",
        "",
        "Args:",
        "    params: parameters or param groups, as for any torch optimizer.",
        f"    lr: {lr_note}.",
        *_betas_doc(rule, settings),
        f"    total_steps: number of optimizer steps of the training; {decay_note}.",
        "    weight_decay: L2 penalty added to the gradient (as torch's SGD and Adam).",
        "    maximize: ascend instead of descend.",
        "    foreach: True: the multi-tensor path; False: the per-tensor path; None (the",
        "        default): the multi-tensor path for plain tensors on the CPU, CUDA or XPU,",
        "        where it is the faster (see default_foreach).",
        *(["        This rule draws random numbers: the two paths draw other numbers of",
           "        the same distributions (see RuleOptimizerBase)."]
          if "rng" in rule.needs else []),
        "    capturable: keep state['step'] as a 0-dim tensor on the parameter's device and",
        "        never read it on the host (torch.compile, CUDA graphs), as torch's Adam.",
        "",
        *groups,
        "",
        f"Exported by evo_nos {_evo_nos_version()}; needs only torch.",
    ]
    return "\n".join(lines)


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line else "" for line in text.splitlines())


def _call_lines(opening: str, items: list, closing: str, width: int = 92) -> list:
    """``opening`` + the comma-separated ``items`` + ``closing``, wrapped between items,
    the continuation lines aligned after the opening parenthesis."""
    lines, line, fresh = [], opening, True
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else closing)
        if len(line) + len(piece.rstrip()) > width and not fresh:
            lines.append(line.rstrip())
            line = " " * (opening.rindex("(") + 1)
        line += piece
        fresh = False
    lines.append(line)
    return lines


def _constructor_source(defaults: dict) -> list:
    """The exported ``__init__``: ``defaults`` (from :func:`_constructor_defaults`) as its
    keywords, all handed to RuleOptimizerBase."""
    keywords = [name for name in defaults if name != "lr"]
    signature = ["params", f"lr={defaults['lr']!r}", "*",
                 *(f"{name}={defaults[name]!r}" for name in keywords)]
    call = ["params", "lr", *(f"{name}={name}" for name in keywords)]
    return (_call_lines("    def __init__(self, ", signature, "):")
            + _call_lines("        super().__init__(", call, ")"))


def export_source(rule: "Rule | str", *, class_name: str | None = None,
                  settings: "RuleSettings | dict | None" = None,
                  origin: "SearchOrigin | None" = None) -> str:
    """Python source of a standalone optimizer class for ``rule`` (torch + stdlib only);
    with ``origin`` (the search that found it) its default lr is the search's best."""
    rule, settings, class_name = _resolve(rule, settings, class_name, origin)
    doc = _docstring(rule, settings, class_name, origin)
    if '"""' in doc or doc.endswith("\\"):
        raise ValueError("cannot embed this rule's forms in a docstring")  # never with our table
    betas = (settings.beta1, settings.beta2, settings.beta3)
    defaults = _constructor_defaults(rule, settings, origin)
    found = "" if origin is None else "\n".join(origin.lines()) + "\n\n"
    header = (
        f'"""{class_name}: an optimizer exported by evo_nos {_evo_nos_version()}.\n\n'
        f"    {update_line(rule)}\n\n"
        f"Rule: {rule.canonical}\n\n"
        f"{found}"
        f"Usage: opt = {class_name}(model.parameters())  # lr={defaults['lr']!r} by default;"
        f" needs only torch.\n"
        f'"""\n'
    )
    header = header.replace("\\", "\\\\")  # the math form is plain text; keep it literal
    class_src = "\n".join([
        f"class {class_name}(RuleOptimizerBase):",
        _indent('r"""' + doc + '\n"""', "    "),
        "",
        f"    rule = {rule.canonical!r}",
        f"    settings = {settings.as_dict()!r}",
        f"    _direction = staticmethod({_DIRECTION_NAME})",
        *(f"    {key} = {value!r}" for key, value in average_fields(rule).items()),
        f"    _betas = {betas!r}",
        f"    _bias_correction = {settings.bias_correction!r}",
        f"    _needs_total_steps = {rule.uses_decay!r}",
        f"    _reads_weights = {'w' in rule.needs!r}",
        "",
        *_constructor_source(defaults),
        "",
        "    def __repr__(self):",
        f"        return {(class_name + '(' + rule.math + ')')!r} + '\\n' + super().__repr__()",
        "",
    ])
    parts = [
        header,
        "# ---- the optimizer machinery, copied verbatim from evo_nos/optim/standalone.py ----",
        _standalone_body(),
        "",
        "# ---- the rule's update direction, generated from the evo_nos primitive table ----",
        direction_source(rule, settings, name=_DIRECTION_NAME),
        "",
        class_src,
        "",
        f"__all__ = [{class_name!r}]",
        "",
    ]
    return "\n".join(parts)


def export(rule: "Rule | str", out_path: "str | os.PathLike", *, class_name: str | None = None,
           settings: "RuleSettings | dict | None" = None,
           origin: "SearchOrigin | None" = None) -> tuple[Path, Path]:
    """Write ``out_path`` (the .py source) and the JSON spec beside it (same stem);
    ``origin``: the search that found the rule (see :class:`SearchOrigin`)."""
    py_path = Path(out_path)
    if py_path.suffix != ".py":
        raise ValueError(f"the output must be a .py file, got {str(py_path)!r}")
    json_path = py_path.with_suffix(".json")
    source = export_source(rule, class_name=class_name, settings=settings, origin=origin)
    spec = export_spec(rule, class_name=class_name, settings=settings, origin=origin)
    spec["source_file"] = py_path.name
    write_atomic(py_path, source)
    write_atomic(json_path, json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
    return py_path, json_path


# ---- documentation tables (docs/rules.md shows these; a test keeps them in sync) ----------

class _Setting:
    """Stands for a setting in a code template (shown as its name, with or without !r)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__


def primitives_frame() -> pd.DataFrame:
    """The primitive table, one row per token: its kind, math form (of ``x``, ``y``),
    torch code (settings by name), the running averages it reads ("" for none) and
    its meaning."""
    rows = []
    for prim in BY_NAME.values():
        slots = ["x", "y"][:prim.arity]
        code = prim.code.format(*slots, **{k: _Setting(k) for k in _template_fields(prim.code)})
        rows.append({"token": prim.name, "kind": prim.kind, "math": prim.math.format(*slots),
                     "code": code, "reads": ", ".join(sorted(prim.needs)),
                     "meaning": prim.doc})
    return pd.DataFrame(rows, columns=["token", "kind", "math", "code", "reads", "meaning"])


def primitives_markdown() -> str:
    """:func:`primitives_frame` as a Markdown table (token, kind, math, code, reads, meaning)."""
    return tables.markdown(primitives_frame(), code=("token", "code"),
                           formats={"reads": lambda reads: reads or "–"},
                           headers={"math": "math form", "code": "torch code"})


def known_rules_frame() -> pd.DataFrame:
    """The known rules, one row per name: its canonical string and math form."""
    return pd.DataFrame([{"name": name, "rule": rule.canonical, "math": rule.math}
                         for name, rule in KNOWN.items()], columns=["name", "rule", "math"])


def known_rules_markdown() -> str:
    """:func:`known_rules_frame` as a Markdown table (name, canonical string, math form)."""
    return tables.markdown(known_rules_frame(), code=("name", "rule"),
                           headers={"rule": "canonical string", "math": "math form"})
