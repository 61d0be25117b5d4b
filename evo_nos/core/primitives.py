"""The NOS primitive set: every operand, unary and binary function, defined once.

Each :class:`Primitive` carries everything the rest of evo_nos derives from it:

* ``code``  -- a Python/torch source template.  ``{0}``/``{1}`` are the children's
  code; ``{name}`` fields are filled from :class:`RuleSettings`.  The compiled
  optimizer step, the exported optimizer and the fitness screen all run this code.
* ``math`` / ``latex`` -- display templates for the readable and LaTeX forms.
* ``sympy`` -- what the primitive *is*, as a sympy expression in the children ``{0}``,
  ``{1}``: the algebra :mod:`evo_nos.core.algebra` simplifies with.  Its names are
  ``g``, ``m``, ``v``, ``r``, ``w`` (the state; m, v, r bias corrected when that is on),
  ``ld``, ``cd``, ``rd`` (the decays at t), ``delta``, ``eps_adam`` (the settings of those
  names) and the functions ``exp``, ``log``, ``sqrt``, ``Abs``, ``sign``, ``clip(x, c)``
  (clamp to ±c), ``drop(x, p, k)``, ``eps(k)``, ``eps_t(k)``.  ``k`` marks a random
  primitive: each occurrence in a rule is its own independent draw (``sub(eps, eps)`` is
  no zero), so the algebra gives each occurrence its own ``k``.
* ``needs`` -- the optimizer state the primitive reads (``m``, ``v``, ``r`` running
  averages, ``w`` weights, ``T`` total steps, ``rng`` randomness).

Operand code may refer to the names bound by the compiled step: ``g`` (gradient),
``w`` (weights), ``m``, ``v``, ``r`` (running averages of g, g², g³, bias corrected
when the setting is on), ``t`` (an int: steps completed before this one, so the first
step sees t = 0), ``one``/``two`` (0-dim constants) and ``ld``/``cd``/``rd`` (0-dim decay
values at t).  :mod:`evo_nos.optim.kernels` binds them.
"""
from __future__ import annotations

import dataclasses
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


@dataclass(frozen=True)
class Primitive:
    name: str          # the token in a rule's canonical string
    kind: str          # OPERAND, UNARY or BINARY
    code: str          # torch source template
    math: str          # readable template
    latex: str         # LaTeX template
    needs: frozenset = field(default_factory=frozenset)
    doc: str = ""
    prec: int = 9      # display precedence of binary infix forms (atoms are 9)
    commutative: bool = False
    sympy: str = ""    # sympy template: the algebra of the primitive (evo_nos.core.algebra)
    average: int = 0   # a running-average operand: the power of g it averages (0: none)

    @property
    def arity(self) -> int:
        return ARITY[self.kind]


def _op(name, code, math, latex, sympy, needs=(), doc="", average=0):
    return Primitive(name, OPERAND, code, math, latex, frozenset(needs), doc, sympy=sympy,
                     average=average)


def _un(name, code, math, latex, sympy, needs=(), doc=""):
    return Primitive(name, UNARY, code, math, latex, frozenset(needs), doc, sympy=sympy)


def _bin(name, code, math, latex, sympy, prec, commutative=False, doc=""):
    return Primitive(name, BINARY, code, math, latex, frozenset(), doc, prec, commutative,
                     sympy)


_RAND = ("rng",)

PRIMITIVES: tuple[Primitive, ...] = (
    # ---- operands -------------------------------------------------------------
    _op("g", "g", "g", "g", "g", doc="gradient"),
    _op("g2", "(g * g)", "g²", "g^{{2}}", "g**2", doc="gradient squared"),
    _op("g3", "(g * g * g)", "g³", "g^{{3}}", "g**3", doc="gradient cubed"),
    _op("m", "m", "m̂", r"\hat{{m}}", "m", ("m",), "running average of g (beta1)", average=1),
    _op("v", "v", "v̂", r"\hat{{v}}", "v", ("v",), "running average of g² (beta2)", average=2),
    _op("r", "r", "γ̂", r"\hat{{\gamma}}", "r", ("r",), "running average of g³ (beta3)",
        average=3),
    _op("sign_g", "torch.sign(g)", "sign(g)", r"\operatorname{{sign}}(g)", "sign(g)",
        doc="sign of g"),
    _op("sign_m", "torch.sign(m)", "sign(m̂)", r"\operatorname{{sign}}(\hat{{m}})", "sign(m)",
        ("m",), "sign of m"),
    _op("1", "one", "1", "1", "1", doc="constant 1"),
    _op("2", "two", "2", "2", "2", doc="constant 2"),
    _op("eps", "(torch.randn_like(g) * {noise_std!r})", "ε", r"\epsilon", "eps(k)", _RAND,
        "fresh Gaussian noise, std noise_std"),
    _op("w4", "(1e-4 * w)", "10⁻⁴w", r"10^{{-4}}w", "w/10**4", ("w",), "weights times 1e-4"),
    _op("w3", "(1e-3 * w)", "10⁻³w", r"10^{{-3}}w", "w/10**3", ("w",), "weights times 1e-3"),
    _op("w2", "(1e-2 * w)", "10⁻²w", r"10^{{-2}}w", "w/10**2", ("w",), "weights times 1e-2"),
    _op("w1", "(1e-1 * w)", "10⁻¹w", r"10^{{-1}}w", "w/10", ("w",), "weights times 1e-1"),
    _op("adam", "(m / (torch.sqrt(v) + {adam_eps!r}))", "Adam", r"\mathrm{{Adam}}",
        "m/(sqrt(v) + eps_adam)", ("m", "v"), "m / (sqrt(v) + adam_eps)"),
    _op("rmsprop", "(g / (torch.sqrt(v) + {adam_eps!r}))", "RMSProp", r"\mathrm{{RMSProp}}",
        "g/(sqrt(v) + eps_adam)", ("v",), "g / (sqrt(v) + adam_eps)"),
    _op("ld", "ld", "ld", r"\mathrm{{ld}}", "ld", ("T",), "linear decay 1 - t/T"),
    _op("cd", "cd", "cd", r"\mathrm{{cd}}", "cd", ("T",),
        "cosine decay 0.5(1 + cos(2π n t/T))"),
    _op("rd", "rd", "rd", r"\mathrm{{rd}}", "rd", ("T",),
        "restart decay 0.5(1 + cos(π ((n t) mod T)/T))"),
    _op("eps_t", "(torch.randn_like(g) * (1.0 + t) ** (-0.5 * {anneal_power!r}))", "ε_t",
        r"\epsilon_t", "eps_t(k)", _RAND, "annealed noise, variance 1/(1+t)^anneal_power"),
    # ---- unary functions ------------------------------------------------------
    _un("id", "{0}", "{0}", "{0}", "{0}", doc="identity"),
    _un("neg", "(-{0})", "−{0}", "-{0}", "-{0}", doc="negation"),
    _un("exp", "torch.exp({0})", "exp({0})", r"e^{{{0}}}", "exp({0})", doc="e^x"),
    _un("log", "torch.log(torch.abs({0}))", "log|{0}|", r"\log\left|{0}\right|",
        "log(Abs({0}))", doc="log|x|"),
    _un("sqrt", "torch.sqrt(torch.abs({0}))", "√|{0}|", r"\sqrt{{\left|{0}\right|}}",
        "sqrt(Abs({0}))", doc="sqrt|x|"),
    _un("clip5", "torch.clamp({0}, -1e-5, 1e-5)", "clip({0}, 10⁻⁵)",
        r"\operatorname{{clip}}\left({0}, 10^{{-5}}\right)", "clip({0}, 10**-5)",
        doc="clamp to ±1e-5"),
    _un("clip4", "torch.clamp({0}, -1e-4, 1e-4)", "clip({0}, 10⁻⁴)",
        r"\operatorname{{clip}}\left({0}, 10^{{-4}}\right)", "clip({0}, 10**-4)",
        doc="clamp to ±1e-4"),
    _un("clip3", "torch.clamp({0}, -1e-3, 1e-3)", "clip({0}, 10⁻³)",
        r"\operatorname{{clip}}\left({0}, 10^{{-3}}\right)", "clip({0}, 10**-3)",
        doc="clamp to ±1e-3"),
    _un("drop1", "drop({0}, 0.1, {drop_rescale!r})", "drop({0}, 0.1)",
        r"\operatorname{{drop}}\left({0}, 0.1\right)", "drop({0}, 1/10, k)", _RAND,
        "zero entries with p=0.1"),
    _un("drop3", "drop({0}, 0.3, {drop_rescale!r})", "drop({0}, 0.3)",
        r"\operatorname{{drop}}\left({0}, 0.3\right)", "drop({0}, 3/10, k)", _RAND,
        "zero entries with p=0.3"),
    _un("drop5", "drop({0}, 0.5, {drop_rescale!r})", "drop({0}, 0.5)",
        r"\operatorname{{drop}}\left({0}, 0.5\right)", "drop({0}, 1/2, k)", _RAND,
        "zero entries with p=0.5"),
    _un("sign", "torch.sign({0})", "sign({0})", r"\operatorname{{sign}}\left({0}\right)",
        "sign({0})", doc="sign, sign(0) = 0"),
    # ---- binary functions -----------------------------------------------------
    _bin("add", "({0} + {1})", "{0} + {1}", "{0} + {1}", "{0} + {1}", 1, True, "x + y"),
    _bin("sub", "({0} - {1})", "{0} − {1}", "{0} - {1}", "{0} - {1}", 1, doc="x - y"),
    _bin("mul", "({0} * {1})", "{0}·{1}", r"{0} \cdot {1}", "{0}*{1}", 2, True, "x · y"),
    _bin("div", "({0} / ({1} + {delta!r}))", "{0}/({1} + δ)", r"\frac{{{0}}}{{{1} + \delta}}",
         "{0}/({1} + delta)", 2, doc="x / (y + delta)"),
    _bin("pow", "torch.pow({0}, {1})", "{0}^{1}", "{{{0}}}^{{{1}}}", "{0}**{1}", 3, doc="x^y"),
    _bin("keep", "{0}", "{0}", "{0}", "{0}", 9, doc="keep-left: x (y is ignored)"),
)

BY_NAME: dict[str, Primitive] = {p.name: p for p in PRIMITIVES}
OPERANDS = tuple(p for p in PRIMITIVES if p.kind == OPERAND)
UNARIES = tuple(p for p in PRIMITIVES if p.kind == UNARY)
BINARIES = tuple(p for p in PRIMITIVES if p.kind == BINARY)

# The running averages, in the order of their betas (beta1, beta2, beta3): the state an
# optimizer keeps per parameter.  AVERAGE_POWERS: the power of g each one averages.
AVERAGES = tuple(p.name for p in sorted(OPERANDS, key=lambda p: p.average) if p.average)
AVERAGE_POWERS = {p.name: p.average for p in OPERANDS if p.average}

# The operands of the paper's first search round; the second round added the decays.
DECAY_OPERANDS = ("ld", "cd", "rd", "eps_t")
BASE_OPERANDS = tuple(p.name for p in OPERANDS if p.name not in DECAY_OPERANDS)

assert len(UNARIES) == 12 and len(BINARIES) == 6, "the paper has 12 unary and 6 binary functions"


def get(name: str) -> Primitive:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown primitive {name!r}") from None
