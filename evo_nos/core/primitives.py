"""The NOS primitive set: every operand, unary and binary function, defined once.

Each :class:`Primitive` carries everything the rest of evo_nos derives from it:

* ``code``  -- a Python/torch source template.  ``{0}``/``{1}`` are the children's
  code; ``{name}`` fields are filled from :class:`RuleSettings`.  The compiled
  optimizer step, the exported optimizer and the fitness screen all run this code.
* ``math`` / ``latex`` -- display templates for the readable and LaTeX forms.
* ``sympy`` -- what the primitive *is*, as a sympy expression in the children ``{0}``,
  ``{1}``: the algebra :mod:`evo_nos.core.algebra` simplifies with.  Its names are
  the operands whose form is a bare name (the state ``g``, ``m``, ``v``, ``r``, with m, v, r
  bias corrected when that is on, and the decays ``ld``, ``cd``, ``rd`` at t), the
  :data:`QUANTITIES` ``w``, ``delta``, ``eps_adam`` (the weights and the settings of those
  names) and the functions ``exp``, ``log``, ``sqrt``, ``Abs``, ``sign``, ``clip(x, c)``
  (clamp to ±c), ``drop(x, p, k)``, ``noise(k)``, ``noise_t(k)``.  ``k`` marks a random
  primitive: each occurrence in a rule is its own independent draw (``sub(eps, eps)`` is
  no zero), so the algebra gives each occurrence its own ``k``.
* ``needs`` -- the optimizer state the primitive reads (``m``, ``v``, ``r`` running
  averages, ``w`` weights, ``T`` total steps, ``rng`` randomness).

Operand code may refer to the names bound by the compiled step: ``g`` (gradient),
``w`` (weights), ``m``, ``v``, ``r`` (running averages of g, g², g³, bias corrected
when the setting is on), ``t`` (an int: steps completed before this one, so the first
step sees t = 0) and what an operand's ``prelude`` binds (``one``, ``two``, the decays at
t): :mod:`evo_nos.optim.kernels` writes those lines, as the table says.

Every fact a module needs about a specific primitive is a field of its entry (see
:class:`Primitive`); nothing else in evo_nos names a primitive by its token.  To add one
for good, add an entry below; :func:`register` adds one at run time.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from dataclasses import dataclass, field

OPERAND, UNARY, BINARY = "operand", "unary", "binary"
ARITY = {OPERAND: 0, UNARY: 1, BINARY: 2}


@dataclass(frozen=True)
class RuleSettings:
    """Settings of the primitive set (reference defaults from nos-reference.md)."""

    beta1: float = 0.9            # decay of m, the running average of g
    beta2: float = 0.999          # decay of v, the running average of g²
    beta3: float = 0.999          # decay of r, the running average of g³
    bias_correction: bool = True  # divide averages by (1 - beta^t), as Adam does
    noise_std: float = 0.1        # std of the ε operand (variance 0.01)
    anneal_power: float = 0.55    # ε_t ~ N(0, 1 / (1 + t)^anneal_power) (variance)
    drop_rescale: bool = True     # drop(x, p) rescales kept entries by 1 / (1 - p)
    cd_periods: float = 0.5       # n of the cosine decay cd (0.5 = plain cosine)
    rd_periods: float = 1.0       # n of the restart decay rd
    delta: float = 1e-8           # x / (y + delta)
    adam_eps: float = 1e-8        # epsilon of the Adam and RMSProp operands

    def __post_init__(self) -> None:
        for name in ("beta1", "beta2", "beta3"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std!r}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RuleSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown rule setting(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


# Display precedences of binary infix forms (Primitive.prec): a child binding more
# loosely than its parent is parenthesised.
SUM, PRODUCT, POWER, ATOM = 1, 2, 3, 9

IDENTITY = "id"     # the unary identity: accepted by the parser, never stored in a Rule


@dataclass(frozen=True)
class Primitive:
    """One primitive and every fact the rest of evo_nos knows of it (see the module
    docstring for ``code``, ``math``, ``latex``, ``sympy`` and ``needs``).

    What the algebra (:mod:`evo_nos.core.algebra`) knows of a value beyond its sympy form:

    * ``finite`` -- finite wherever its arguments are (an operand: for finite state).
    * ``nonnegative_if`` / ``sign_valued_if`` -- known ≥ 0 (or NaN) / known to take only
      −1, 0, 1 where the arguments at these positions are: ``()`` always, ``(0,)`` where
      the first is, ``None`` not known.  What the sympy form shows counts too (``exp``,
      ``g²``, the constant 1, ``sign``).  An operand that is a symbol of the algebra
      (its ``sympy`` form is a bare name: the state ``g``, ``m``, ``v``, ...) with
      ``nonnegative_if=()`` makes that symbol nonnegative.
    * ``bound`` -- a bound of ``|value|`` of such a symbol for finite state (the decays
      are in [0, 1]); functions are bounded through their sympy forms.
    * ``spells`` -- rules over other primitives that compute exactly this operand's
      value (``mul(g, g)`` is ``g2``): :func:`~evo_nos.core.algebra.simplify` rewrites
      them into it.

    What :mod:`evo_nos.optim.kernels` needs to bind the names an operand's code reads:

    * ``scalar`` -- bound as a 0-dim tensor (constants, decays), not one of the
      parameter's shape.
    * ``prelude`` -- the line of the direction function binding it (settings as in
      ``code``), e.g. ``one = g.new_ones(())``.
    * ``decay`` -- which value of ``decay_values(t, T, ...)``
      (:mod:`evo_nos.optim.standalone`) it is (0 linear, 1 cosine, 2 restart), None for
      no decay; ``settings`` -- the :class:`RuleSettings` it reads beyond those its
      ``code`` names (a decay's periods, passed to ``decay_values``).
    """

    name: str          # the token in a rule's canonical string
    kind: str          # OPERAND, UNARY or BINARY
    code: str          # torch source template
    math: str          # readable template
    latex: str         # LaTeX template
    needs: frozenset = field(default_factory=frozenset)
    doc: str = ""
    prec: int = ATOM   # display precedence of binary infix forms (atoms are ATOM)
    commutative: bool = False
    sympy: str = ""    # sympy template: the algebra of the primitive (evo_nos.core.algebra)
    average: int = 0   # a running-average operand: the power of g it averages (0: none)
    finite: bool = False
    nonnegative_if: "tuple[int, ...] | None" = None
    sign_valued_if: "tuple[int, ...] | None" = None
    bound: float = math.inf
    spells: tuple = ()
    scalar: bool = False
    prelude: str = ""
    decay: "int | None" = None
    settings: tuple = ()
    # display of a binary infix form: the (form, position) pairs its template already
    # groups (no parentheses needed there), and whether a child of equal precedence on
    # the left goes without them (x − y − z; False for x^y, where both sides need them)
    grouped: tuple = ()
    chains_left: bool = True
    prefix: bool = False       # a unary written before its argument (−x): an infix
                               # argument is shown in parentheses
    keeps_left: bool = False   # a binary b with b(x, y) = x for every y (keep)
    right_identity: tuple = ()  # operands u with b(x, u) = x exactly (mul: 1)

    @property
    def arity(self) -> int:
        return ARITY[self.kind]


def operand(name, code, math, latex, sympy, needs=(), doc="", **facts) -> Primitive:
    """An operand (finite for finite state unless ``finite=False``); ``facts``: the
    other fields of :class:`Primitive`."""
    facts.setdefault("finite", True)
    return Primitive(name, OPERAND, code, math, latex, frozenset(needs), doc, sympy=sympy,
                     **facts)


def unary(name, code, math, latex, sympy, needs=(), doc="", **facts) -> Primitive:
    """A unary function; ``facts``: the other fields of :class:`Primitive`."""
    return Primitive(name, UNARY, code, math, latex, frozenset(needs), doc, sympy=sympy,
                     **facts)


def binary(name, code, math, latex, sympy, prec, commutative=False, doc="",
           **facts) -> Primitive:
    """A binary function shown with precedence ``prec``; ``facts``: the other fields."""
    return Primitive(name, BINARY, code, math, latex, frozenset(), doc, prec, commutative,
                     sympy, **facts)


def _decay(name, math, latex, index, doc, settings=()) -> Primitive:
    """A decay operand: value ``index`` of ``decay_values``, in [0, 1], 0-dim."""
    return operand(name, name, math, latex, name, ("T",), doc, decay=index, settings=settings,
                   nonnegative_if=(), bound=1.0, scalar=True,
                   # a float, or a 0-dim tensor when t is one (a capturable step)
                   prelude=f"{name} = torch.as_tensor({name}, dtype=g.dtype, device=g.device)")


_RAND = ("rng",)

PRIMITIVES: tuple[Primitive, ...] = (
    # ---- operands -------------------------------------------------------------
    operand("g", "g", "g", "g", "g", doc="gradient"),
    operand("g2", "(g * g)", "g²", "g^{{2}}", "g**2", doc="gradient squared",
            spells=("mul(g, g)",)),
    operand("g3", "(g * g * g)", "g³", "g^{{3}}", "g**3", doc="gradient cubed",
            spells=("mul(g, g2)", "mul(g2, g)")),
    operand("m", "m", "m̂", r"\hat{{m}}", "m", ("m",), "running average of g (beta1)",
            average=1),
    operand("v", "v", "v̂", r"\hat{{v}}", "v", ("v",), "running average of g² (beta2)",
            average=2, nonnegative_if=()),
    operand("r", "r", "γ̂", r"\hat{{\gamma}}", "r", ("r",), "running average of g³ (beta3)",
            average=3),
    operand("sign_g", "torch.sign(g)", "sign(g)", r"\operatorname{{sign}}(g)", "sign(g)",
            doc="sign of g", spells=("sign(g)",)),
    operand("sign_m", "torch.sign(m)", "sign(m̂)", r"\operatorname{{sign}}(\hat{{m}})",
            "sign(m)", ("m",), "sign of m", spells=("sign(m)",)),
    operand("1", "one", "1", "1", "1", doc="constant 1", scalar=True,
            prelude="one = g.new_ones(())"),
    operand("2", "two", "2", "2", "2", doc="constant 2", scalar=True,
            prelude="two = g.new_full((), 2.0)"),
    operand("eps", "(torch.randn_like(g) * {noise_std!r})", "ε", r"\epsilon", "noise(k)",
            _RAND, "fresh Gaussian noise, std noise_std"),
    operand("w4", "(1e-4 * w)", "10⁻⁴w", r"10^{{-4}}w", "w/10**4", ("w",),
            "weights times 1e-4"),
    operand("w3", "(1e-3 * w)", "10⁻³w", r"10^{{-3}}w", "w/10**3", ("w",),
            "weights times 1e-3"),
    operand("w2", "(1e-2 * w)", "10⁻²w", r"10^{{-2}}w", "w/10**2", ("w",),
            "weights times 1e-2"),
    operand("w1", "(1e-1 * w)", "10⁻¹w", r"10^{{-1}}w", "w/10", ("w",), "weights times 1e-1"),
    operand("adam", "(m / (torch.sqrt(v) + {adam_eps!r}))", "Adam", r"\mathrm{{Adam}}",
            "m/(sqrt(v) + eps_adam)", ("m", "v"), "m / (sqrt(v) + adam_eps)"),
    operand("rmsprop", "(g / (torch.sqrt(v) + {adam_eps!r}))", "RMSProp",
            r"\mathrm{{RMSProp}}", "g/(sqrt(v) + eps_adam)", ("v",), "g / (sqrt(v) + adam_eps)"),
    _decay("ld", "ld", r"\mathrm{{ld}}", 0, "linear decay 1 - t/T"),
    _decay("cd", "cd", r"\mathrm{{cd}}", 1, "cosine decay 0.5(1 + cos(2π n t/T))",
           ("cd_periods",)),
    _decay("rd", "rd", r"\mathrm{{rd}}", 2, "restart decay 0.5(1 + cos(π ((n t) mod T)/T))",
           ("rd_periods",)),
    operand("eps_t", "(torch.randn_like(g) * (1.0 + t) ** (-0.5 * {anneal_power!r}))", "ε_t",
            r"\epsilon_t", "noise_t(k)", _RAND,
            "annealed noise, variance 1/(1+t)^anneal_power"),
    # ---- unary functions ------------------------------------------------------
    unary(IDENTITY, "{0}", "{0}", "{0}", "{0}", doc="identity", finite=True,
          nonnegative_if=(0,), sign_valued_if=(0,)),
    unary("neg", "(-{0})", "−{0}", "-{0}", "-{0}", doc="negation", finite=True,
          sign_valued_if=(0,), prefix=True),
    unary("exp", "torch.exp({0})", "exp({0})", r"e^{{{0}}}", "exp({0})", doc="e^x"),
    unary("log", "torch.log(torch.abs({0}))", "log|{0}|", r"\log\left|{0}\right|",
          "log(Abs({0}))", doc="log|x|"),
    unary("sqrt", "torch.sqrt(torch.abs({0}))", "√|{0}|", r"\sqrt{{\left|{0}\right|}}",
          "sqrt(Abs({0}))", doc="sqrt|x|", finite=True),
    *(unary(f"clip{k}", f"torch.clamp({{0}}, -1e-{k}, 1e-{k})", f"clip({{0}}, 10⁻{sup})",
            rf"\operatorname{{{{clip}}}}\left({{0}}, 10^{{{{-{k}}}}}\right)",
            f"clip({{0}}, 10**-{k})", doc=f"clamp to ±1e-{k}", finite=True,
            nonnegative_if=(0,))
      for k, sup in (("5", "⁵"), ("4", "⁴"), ("3", "³"))),
    *(unary(f"drop{k}", f"drop({{0}}, 0.{k}, {{drop_rescale!r}})", f"drop({{0}}, 0.{k})",
            rf"\operatorname{{{{drop}}}}\left({{0}}, 0.{k}\right)", f"drop({{0}}, {p}, k)",
            _RAND, f"zero entries with p=0.{k}", finite=True, nonnegative_if=(0,))
      for k, p in (("1", "1/10"), ("3", "3/10"), ("5", "1/2"))),
    unary("sign", "torch.sign({0})", "sign({0})", r"\operatorname{{sign}}\left({0}\right)",
          "sign({0})", doc="sign, sign(0) = 0", finite=True, nonnegative_if=(0,)),
    # ---- binary functions -----------------------------------------------------
    binary("add", "({0} + {1})", "{0} + {1}", "{0} + {1}", "{0} + {1}", SUM, True, "x + y",
           finite=True, nonnegative_if=(0, 1)),
    binary("sub", "({0} - {1})", "{0} − {1}", "{0} - {1}", "{0} - {1}", SUM, doc="x - y",
           finite=True),
    binary("mul", "({0} * {1})", "{0}·{1}", r"{0} \cdot {1}", "{0}*{1}", PRODUCT, True,
           "x · y", finite=True, nonnegative_if=(0, 1), sign_valued_if=(0, 1),
           right_identity=("1",)),
    binary("div", "({0} / ({1} + {delta!r}))", "{0}/({1} + δ)",
           r"\frac{{{0}}}{{{1} + \delta}}", "{0}/({1} + delta)", PRODUCT, doc="x / (y + delta)",
           nonnegative_if=(0, 1), grouped=(("math", 1), ("latex", 0), ("latex", 1))),
    binary("pow", "torch.pow({0}, {1})", "{0}^{1}", "{{{0}}}^{{{1}}}", "{0}**{1}", POWER,
           doc="x^y", grouped=(("latex", 1),), chains_left=False),
    binary("keep", "{0}", "{0}", "{0}", "{0}", ATOM, doc="keep-left: x (y is ignored)",
           finite=True, nonnegative_if=(0,), sign_valued_if=(0,), keeps_left=True),
)

# The names of the sympy templates that are no operand: the weights and two settings
# (what their symbols are: "real", "nonnegative" or "positive").
@dataclass(frozen=True)
class Quantity:
    name: str          # the name in sympy templates
    math: str          # the symbol's name (readable form)
    latex: str
    sign: str          # "real", "nonnegative" or "positive"
    doc: str = ""


QUANTITIES: tuple[Quantity, ...] = (
    Quantity("w", "w", "w", "real", "the weights"),
    Quantity("delta", "δ", r"\delta", "positive", "the setting delta of x / (y + delta)"),
    Quantity("eps_adam", "ε_adam", r"\epsilon_{\mathrm{adam}}", "positive",
             "the setting adam_eps of the Adam and RMSProp operands"),
)

# -- what is derived from the table ------------------------------------------------------
# Rebuilt by _derive whenever the table changes (see register); BY_NAME and AVERAGE_POWERS
# are updated in place, so a module holding them sees every change.
BY_NAME: dict[str, Primitive] = {}
AVERAGE_POWERS: dict[str, int] = {}      # a running average's name -> the power of g
OPERANDS: tuple[Primitive, ...] = ()
UNARIES: tuple[Primitive, ...] = ()
BINARIES: tuple[Primitive, ...] = ()
AVERAGES: tuple[str, ...] = ()           # the running averages, in the order of the betas
# The operands of the paper's first search round; the second round added the decays.
DECAY_OPERANDS = ("ld", "cd", "rd", "eps_t")
BASE_OPERANDS: tuple[str, ...] = ()

_PAPER = PRIMITIVES                      # the table as written above
_TOKEN = re.compile(r"[A-Za-z0-9_]+")
_LISTENERS: list = []


def _derive(table: tuple) -> None:
    global PRIMITIVES, OPERANDS, UNARIES, BINARIES, AVERAGES, BASE_OPERANDS
    PRIMITIVES = table
    BY_NAME.clear()
    BY_NAME.update((p.name, p) for p in table)
    OPERANDS = tuple(p for p in table if p.kind == OPERAND)
    UNARIES = tuple(p for p in table if p.kind == UNARY)
    BINARIES = tuple(p for p in table if p.kind == BINARY)
    # the state an optimizer keeps per parameter, in the order of beta1, beta2, beta3
    AVERAGES = tuple(p.name for p in sorted(OPERANDS, key=lambda p: p.average) if p.average)
    AVERAGE_POWERS.clear()
    AVERAGE_POWERS.update((p.name, p.average) for p in OPERANDS if p.average)
    BASE_OPERANDS = tuple(p.name for p in OPERANDS if p.name not in DECAY_OPERANDS)
    for callback in _LISTENERS:
        callback()


_derive(PRIMITIVES)


# -- changing the table at run time ---------------------------------------------------------
# The one way to add a primitive for good is an entry of PRIMITIVES above.  register()
# adds one for a while (a test, an experiment): whatever reads the table through BY_NAME,
# or rebuilds on on_change (the algebra, the compiled kernels), sees it.  What copied the
# table when it was imported does not: the default SearchSpace's lists, a TokenGrammar's
# vocabulary, the DEAP primitive sets (evo_nos.operators) and ``from ... import OPERANDS``.
def on_change(callback):
    """Call ``callback()`` after every change of the table (for a module that derives
    something from it: caches, tables of rewrites).  Returns ``callback``."""
    _LISTENERS.append(callback)
    return callback


def register(prim: Primitive) -> None:
    """Add ``prim`` to the table (after the others); :func:`unregister` takes it out."""
    if not isinstance(prim, Primitive):
        raise TypeError(f"expected a Primitive, got {type(prim).__name__}")
    if not _TOKEN.fullmatch(prim.name):
        raise ValueError(f"a primitive's name is a token of letters, digits and _: {prim.name!r}")
    if prim.name in BY_NAME:
        raise ValueError(f"primitive {prim.name!r} is already in the table")
    if prim.kind not in ARITY:
        raise ValueError(f"kind must be one of {sorted(ARITY)}, got {prim.kind!r}")
    _derive(PRIMITIVES + (prim,))


def unregister(name: str) -> None:
    """Take a primitive :func:`register` added out of the table again."""
    if name in {p.name for p in _PAPER}:
        raise ValueError(f"{name!r} is a primitive of the paper's table, not a registered one")
    get(name)
    _derive(tuple(p for p in PRIMITIVES if p.name != name))


@contextlib.contextmanager
def registered(*prims: Primitive):
    """``with registered(p, ...):`` the table with ``p``, ... added, as :func:`register`."""
    added = []
    try:
        for prim in prims:
            register(prim)
            added.append(prim.name)
        yield
    finally:
        for name in reversed(added):
            unregister(name)


def get(name: str) -> Primitive:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown primitive {name!r}") from None
