"""The algebra of rules: a sympy form for every rule, exact simplification, readable forms.

Many spellings mean one rule: ``add(g, sub(m, m))``, ``mul(g, 1)``, ``keep(g, m)`` and
``neg(neg(g))`` all update with ``g``.  This module gives

* :func:`to_sympy` -- a rule as a sympy expression, built from each primitive's
  ``sympy`` template in the primitive table (:mod:`evo_nos.core.primitives`, the one
  source of truth).  The state is symbols (``g``, ``m̂``, ``v̂``, ``γ̂``, ``w``, the decays
  ``ld``, ``cd``, ``rd``, the settings ``δ`` and ``ε_adam``: the table's operands whose
  form is a bare name, and its quantities); randomness is never algebra: every
  occurrence of a random primitive (``eps``, ``eps_t``, ``drop``) is its own draw,
  numbered in the order the compiled rule draws it, so ``sub(eps, eps)`` stays ``ε₁ − ε₂``.
* :func:`simplify` -- an equal rule in the primitive set, from the exact rewrites of
  :data:`REWRITES` (``x − x``, ``·1``, ``+0``, ``sign∘sign``, ``−−x``, ``keep``'s dead
  argument, ``exp(log|x|)`` for x ≥ 0, an operand's ``spells``, ...).  A rewrite is exact
  in floating point too, where it applies: it drops a cancelling term only when that
  term cannot be infinite or NaN for finite state (only primitives the table marks
  ``finite`` in it: no ``exp``, ``log``, ``div``, ``pow``), it never
  merges or splits random draws, and under a ``drop`` it keeps the shape of the value
  (a drop of a 0-dim constant draws one mask entry, not one per entry).  Every rewrite
  is checked by sympy (:func:`check_rewrite`).  :func:`simplified_complexity` is the
  node count of the result.
* :func:`readable` / :func:`readable_latex` -- the simplified rule's sympy form, as text
  and LaTeX.  sympy's own evaluation tidies further (``g·g`` is ``g²``, ``exp(log|x|)`` is
  ``|x|``); these are identities over the reals, for reading.  ``Rule.math`` and
  ``Rule.latex`` stay the literal forms of the rule as written.
"""
from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass
from functools import cached_property

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from evo_nos.core.primitives import (BINARY, BY_NAME, IDENTITY, OPERAND, QUANTITIES, UNARY,
                                     on_change)
from evo_nos.core.rules import Rule

__all__ = ["Clip", "Sign", "Drop", "Noise", "AnnealedNoise", "SYMBOLS", "template",
           "to_sympy", "equivalent", "draws", "simplify", "simplified_complexity",
           "readable", "readable_latex", "Rewrite", "REWRITES", "CONDITIONS", "ZERO",
           "check_rewrite", "deterministic", "finite", "nonnegative", "sign_valued",
           "magnitude", "full"]

RANDOM = "rng"          # the ``needs`` entry of a random primitive


# -- the functions of the templates ------------------------------------------------------------
class Clip(sympy.Function):
    """``clip(x, c)``: x clamped to [−c, c] (c > 0)."""

    nargs = 2

    @classmethod
    def eval(cls, x, c):
        if x.is_zero:
            return sympy.S.Zero
        if isinstance(x, Clip):
            return cls(x.args[0], sympy.Min(x.args[1], c))
        if x.is_Number:
            return sympy.Max(sympy.Min(x, c), -c)
        if x.could_extract_minus_sign():
            return -cls(-x, c)
        return None

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return self.args[0].is_positive

    def _eval_is_negative(self):
        return self.args[0].is_negative

    def _eval_is_zero(self):
        return self.args[0].is_zero


class Sign(sympy.sign):
    """``sign(x)``, knowing also that clipping keeps the sign."""

    @classmethod
    def eval(cls, arg):
        if isinstance(arg, Clip):
            return cls(arg.args[0])
        return super().eval(arg)


class Drop(sympy.Function):
    """``drop(x, p, k)``: x with entries zeroed at random with probability p; ``k``
    numbers the draw (two drops are two draws, never equal)."""

    nargs = 3

    @classmethod
    def eval(cls, x, p, k):
        if x.is_zero:
            return sympy.S.Zero
        return None

    def _eval_is_real(self):
        return self.args[0].is_real


class Noise(sympy.Function):
    """``eps(k)``: the k-th draw of Gaussian noise in a rule."""

    nargs = 1

    def _eval_is_real(self):
        return True


class AnnealedNoise(sympy.Function):
    """``eps_t(k)``: the k-th draw of annealed Gaussian noise in a rule."""

    nargs = 1

    def _eval_is_real(self):
        return True


RANDOM_FUNCTIONS = (Drop, Noise, AnnealedNoise)


# -- the symbols ---------------------------------------------------------------------------------
# template name -> symbol: the operands whose sympy form is a bare name (named by their
# readable form: ``m`` is ``m̂``; nonnegative where the table says so) and the quantities.
# Rebuilt, in place, whenever the table changes (see _rebuild).
SYMBOLS: dict[str, sympy.Symbol] = {}
_LATEX_NAMES: dict[str, str] = {}        # symbol name -> its LaTeX
_BOUNDS: dict = {}                       # symbol -> a bound of its |value| (from the table)
_ARGS = (sympy.Dummy("x0", real=True), sympy.Dummy("x1", real=True))   # {0}, {1}
_K = sympy.Dummy("k", integer=True, positive=True)                     # the draw's number
_ARG_NAMES = ("_x0", "_x1")
_FUNCTIONS = {"exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt, "Abs": sympy.Abs,
              "sign": Sign, "clip": Clip, "drop": Drop, "noise": Noise,
              "noise_t": AnnealedNoise}
_NAMESPACE: dict = {}


def _symbols() -> None:
    """Fill SYMBOLS, _LATEX_NAMES, _BOUNDS and _NAMESPACE from the table."""
    for table in (SYMBOLS, _LATEX_NAMES, _BOUNDS, _NAMESPACE):
        table.clear()
    for prim in BY_NAME.values():
        if prim.kind == OPERAND and prim.sympy.isidentifier():
            sign = "nonnegative" if prim.nonnegative_if == () else "real"
            symbol = sympy.Symbol(prim.math.format(), **{sign: True})
            SYMBOLS[prim.sympy] = symbol
            _LATEX_NAMES[symbol.name] = prim.latex.format()
            _BOUNDS[symbol] = prim.bound
    for quantity in QUANTITIES:
        SYMBOLS[quantity.name] = sympy.Symbol(quantity.math, **{quantity.sign: True})
        _LATEX_NAMES[quantity.math] = quantity.latex
    _NAMESPACE.update({**SYMBOLS, **_FUNCTIONS, "k": _K, **dict(zip(_ARG_NAMES, _ARGS))})


_symbols()


@functools.cache
def template(name: str) -> sympy.Expr:
    """The primitive's ``sympy`` template, parsed (``{0}``, ``{1}``: placeholders)."""
    prim = BY_NAME.get(name)
    if prim is None:
        raise KeyError(f"unknown primitive {name!r}")
    if not prim.sympy:
        raise ValueError(f"primitive {name!r} has no sympy form: give it one in "
                         "evo_nos.core.primitives.PRIMITIVES")
    text = prim.sympy.format(*_ARG_NAMES[:prim.arity])
    try:
        expr = sympy.parse_expr(text, local_dict=dict(_NAMESPACE))
    except (SyntaxError, TypeError, ValueError) as err:
        raise ValueError(f"the sympy form {prim.sympy!r} of {name!r} does not parse: "
                         f"{err}") from err
    allowed = set(SYMBOLS.values()) | set(_ARGS[:prim.arity]) | {_K}
    unknown = sorted(str(s) for s in expr.free_symbols - allowed)
    undefined = sorted(str(f.func) for f in expr.atoms(sympy.core.function.AppliedUndef))
    if unknown or undefined:
        raise ValueError(f"the sympy form {prim.sympy!r} of {name!r} names unknown "
                         f"{'symbols ' + str(unknown) if unknown else ''}"
                         f"{'functions ' + str(undefined) if undefined else ''}; known: "
                         f"{sorted(n for n in _NAMESPACE if not n.startswith('_'))}")
    if (_K in expr.free_symbols) != (RANDOM in prim.needs):
        raise ValueError(f"the sympy form {prim.sympy!r} of {name!r}: a random primitive "
                         "(needs 'rng') numbers its draw with k, and only a random one")
    return expr


def _unaries(function) -> tuple[str, ...]:
    """The unary primitives whose sympy form is ``function`` of their argument."""
    return tuple(p.name for p in BY_NAME.values()
                 if p.kind == UNARY and isinstance(template(p.name), function))


# -- rules as sympy expressions -----------------------------------------------------------------
def _computed(name: str) -> tuple[int, ...]:
    """The argument positions the primitive computes (keep(x, y) never computes y)."""
    expr = template(name)
    return tuple(i for i in range(BY_NAME[name].arity) if _ARGS[i] in expr.free_symbols)


def _sympy(node, counter, variables: dict) -> sympy.Expr:
    """``node`` (a Rule or a pattern) as sympy; pattern variables from ``variables``."""
    if node.op in variables:
        return variables[node.op]
    subs = {_ARGS[i]: _sympy(node.args[i], counter, variables) for i in _computed(node.op)}
    if RANDOM in BY_NAME[node.op].needs:
        subs[_K] = sympy.Integer(next(counter))      # after its argument: evaluation order
    return template(node.op).xreplace(subs)


def to_sympy(rule: Rule) -> sympy.Expr:
    """``rule`` as a sympy expression over :data:`SYMBOLS`; the k-th random draw of the
    compiled rule is ``Noise(k)``, ``AnnealedNoise(k)`` or ``Drop(x, p, k)``."""
    if not isinstance(rule, Rule):
        raise TypeError(f"expected a Rule, got {type(rule).__name__}")
    return _sympy(rule, itertools.count(1), {})


def equivalent(a: Rule, b: Rule) -> bool:
    """True when sympy shows ``a`` and ``b`` equal over the reals, as functions of the
    state and of their random draws matched in the order they are drawn."""
    return sympy.simplify(to_sympy(a) - to_sympy(b)) == 0


def draws(rule: Rule) -> tuple[str, ...]:
    """The random primitives the compiled rule draws, in the order it draws them."""
    out: list[str] = []

    def walk(node):
        for i in _computed(node.op):
            walk(node.args[i])
        if RANDOM in node.primitive.needs:
            out.append(node.op)

    walk(rule)
    return tuple(out)


# -- what is known of a subtree -----------------------------------------------------------------
# From the table's fields (finite, nonnegative_if, sign_valued_if, bound) and the sympy
# forms.  Products are taken as finite: a rule whose g·g overflows has diverged anyway.
def deterministic(rule: Rule) -> bool:
    """No random draw in it."""
    return RANDOM not in rule.needs


def finite(rule: Rule) -> bool:
    """Finite whenever the state is: built of primitives the table marks ``finite``."""
    return all(n.primitive.finite for n in rule.nodes())


def _where(positions, test, args) -> bool:
    """The table's ``*_if`` field: the test holds of the arguments at ``positions``."""
    return positions is not None and all(test(args[i]) for i in positions)


def _square(rule: Rule) -> bool:
    """x∘x of one deterministic x where the primitive's form of x∘x is x² (``mul``)."""
    return (rule.kind == BINARY and rule.args[0] == rule.args[1]
            and deterministic(rule.args[0])
            and template(rule.op).xreplace({_ARGS[1]: _ARGS[0]}) == _ARGS[0] ** 2)


def nonnegative(rule: Rule) -> bool:
    """Known to be ≥ 0 (or NaN) everywhere."""
    prim = rule.primitive
    return bool(template(rule.op).is_nonnegative
                or _where(prim.nonnegative_if, nonnegative, rule.args) or _square(rule))


def sign_valued(rule: Rule) -> bool:
    """Known to take only the values −1, 0, 1 (or NaN)."""
    expr = template(rule.op)
    return (isinstance(expr, sympy.sign) or expr in (-1, 0, 1) or rule == ZERO
            or _where(rule.primitive.sign_valued_if, sign_valued, rule.args))


def _bound(expr: sympy.Expr, bounds: dict) -> float:
    """A bound of ``|expr|`` from bounds of its symbols (``inf``: none known)."""
    if expr.is_Number:
        return abs(float(expr))
    if expr.is_Symbol:
        return bounds.get(expr, math.inf)
    if isinstance(expr, sympy.sign):
        return 1.0
    if isinstance(expr, Clip):
        return float(expr.args[1])
    if isinstance(expr, sympy.Abs):
        return _bound(expr.args[0], bounds)
    if expr.is_Pow and expr.exp == sympy.S.Half:
        return math.sqrt(_bound(expr.base, bounds))
    if expr.is_Add or expr.is_Mul:
        parts = [_bound(a, bounds) for a in expr.args]
        if math.inf in parts:
            return math.inf
        return sum(parts) if expr.is_Add else math.prod(parts)
    return math.inf


def magnitude(rule: Rule) -> float:
    """An upper bound of ``|rule|`` for finite state (``inf``: none known)."""
    bounds = {**_BOUNDS, **{_ARGS[i]: magnitude(rule.args[i]) for i in _computed(rule.op)}}
    return _bound(template(rule.op), bounds)


def _ordered(x: Rule, y: Rule) -> bool:
    return deterministic(x) or deterministic(y)


# condition -> (test on the bound subtrees, what it means)
_CONDITIONS = {
    "deterministic": (deterministic, "draws no randomness"),
    "finite": (finite, "is finite for finite state"),
    "nonneg": (nonnegative, "is >= 0"),
    "signed": (sign_valued, "takes the values -1, 0, 1"),
    "bounded": (lambda r: magnitude(r) <= 50.0, "has |x| <= 50 (exp does not overflow)"),
    "ordered": (_ordered, "at most one of them draws randomness (their order may swap)"),
}


# -- patterns and rewrites ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Pattern:
    """A rule with variables: ``op`` is a primitive or a variable (``X``, ``Y``)."""

    op: str
    args: tuple = ()

    @property
    def is_variable(self) -> bool:
        return self.op[:1].isupper()

    def variables(self) -> set:
        if self.is_variable:
            return {self.op}
        return set().union(*(a.variables() for a in self.args))


_PATTERN_TOKEN = re.compile(r"\s*([A-Za-z0-9_]+|[(),])")


def _parse_pattern(text: str) -> _Pattern:
    tokens, pos = [], 0
    while text[pos:].strip():
        match = _PATTERN_TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"pattern {text!r}: unexpected character at position {pos}")
        tokens.append(match.group(1))
        pos = match.end()
    tokens.append(None)
    at = 0

    def expr() -> _Pattern:
        nonlocal at
        name = tokens[at]
        at += 1
        if name in (None, "(", ")", ","):
            raise ValueError(f"pattern {text!r}: expected a primitive or a variable, "
                             f"found {name!r}")
        args = []
        if tokens[at] == "(":
            at += 1
            args.append(expr())
            while tokens[at] == ",":
                at += 1
                args.append(expr())
            if tokens[at] != ")":
                raise ValueError(f"pattern {text!r}: expected ')', found {tokens[at]!r}")
            at += 1
        node = _Pattern(name, tuple(args))
        if node.is_variable:
            if args:
                raise ValueError(f"pattern {text!r}: variable {name!r} takes no arguments")
        elif name not in BY_NAME or name == IDENTITY:
            raise ValueError(f"pattern {text!r}: unknown primitive {name!r}")
        elif len(args) != BY_NAME[name].arity:
            raise ValueError(f"pattern {text!r}: {name!r} takes {BY_NAME[name].arity} "
                             f"argument(s), got {len(args)}")
        return node

    pattern = expr()
    if tokens[at] is not None:
        raise ValueError(f"pattern {text!r}: unexpected {tokens[at]!r} after a complete rule")
    return pattern


def _match(pattern: _Pattern, node: Rule, bound: dict) -> bool:
    if pattern.is_variable:
        if pattern.op in bound:
            return bound[pattern.op] == node
        bound[pattern.op] = node
        return True
    return pattern.op == node.op and all(
        _match(p, n, bound) for p, n in zip(pattern.args, node.args))


def _instantiate(pattern: _Pattern, bound: dict) -> Rule:
    if pattern.is_variable:
        return bound[pattern.op]
    return Rule(pattern.op, tuple(_instantiate(a, bound) for a in pattern.args))


@dataclass(frozen=True)
class Rewrite:
    """``before`` -> ``after``, where every condition of ``when`` holds.

    Patterns are rule strings whose capitalised names are variables (``X``, ``Y``: any
    subtree; a repeated variable, equal subtrees).  A condition is ``"<property> X"`` (or
    ``"ordered X Y"``); the properties are those of :data:`CONDITIONS`.
    """

    before: str
    after: str
    when: tuple = ()
    why: str = ""

    def __post_init__(self) -> None:
        free = self.lhs.variables()
        extra = self.rhs.variables() - free
        if extra:
            raise ValueError(f"rewrite {self}: {sorted(extra)} not in {self.before!r}")
        for cond in self.when:
            name, *names = cond.split()
            if name not in _CONDITIONS:
                raise ValueError(f"rewrite {self}: unknown condition {name!r}; known: "
                                 f"{sorted(_CONDITIONS)}")
            if not names or not set(names) <= free or (name == "ordered") != (len(names) == 2):
                raise ValueError(f"rewrite {self}: condition {cond!r} must name "
                                 f"{'two' if name == 'ordered' else 'one'} of {sorted(free)}")

    def __str__(self) -> str:
        when = f"  [{', '.join(self.when)}]" if self.when else ""
        return f"{self.before} -> {self.after}{when}"

    @cached_property
    def lhs(self) -> _Pattern:
        return _parse_pattern(self.before)

    @cached_property
    def rhs(self) -> _Pattern:
        return _parse_pattern(self.after)

    def apply(self, node: Rule) -> Rule | None:
        """The rewritten node, or None where the rewrite does not apply."""
        bound: dict = {}
        if not _match(self.lhs, node, bound):
            return None
        for cond in self.when:
            name, *names = cond.split()
            if not _CONDITIONS[name][0](*(bound[n] for n in names)):
                return None
        return _instantiate(self.rhs, bound)


def _constant(value: int) -> str:
    """The operand that is the constant ``value`` (its sympy form is that number)."""
    for prim in BY_NAME.values():
        if prim.kind == OPERAND and template(prim.name) == value:
            return prim.name
    raise ValueError(f"the primitive table has no operand for the constant {value}")


def _narrower(a: str, b: str) -> str:
    return a if template(a).args[1] <= template(b).args[1] else b


def _rewrites() -> tuple[Rewrite, ...]:
    """The rewrites of the table: structural ones over its functions, spelled with its
    constants 1 and 2, and each operand's ``spells``."""
    one, two, clips, drops = _constant(1), _constant(2), _unaries(Clip), _unaries(Drop)
    z = f"sub({one}, {one})"          # the spelling of 0 (ZERO)
    spells = tuple(Rewrite(spelling, prim.name, why=f"the operand {prim.math.format()} "
                           "(computed the same way)")
                   for prim in BY_NAME.values() for spelling in prim.spells)
    return (
        Rewrite("keep(X, Y)", "X", why="keep(x, y) is x; y is never computed"),
        Rewrite("neg(neg(X))", "X", why="−(−x) = x"),
        Rewrite(f"mul(X, {one})", "X", why="x·1 = x"),
        Rewrite(f"mul({one}, X)", "X", why="1·x = x"),
        Rewrite(f"pow(X, {one})", "X", why="x^1 = x"),
        Rewrite(f"pow({one}, X)", one, why="1^y = 1 (also for y NaN, as IEEE pow)"),
        Rewrite("sub(X, X)", z, ("deterministic X", "finite X"),
                "x − x = 0 for one finite x (two draws are no x − x)"),
        Rewrite(f"add(X, {z})", "X", why="x + 0 = x"),
        Rewrite(f"add({z}, X)", "X", why="0 + x = x"),
        Rewrite(f"sub(X, {z})", "X", why="x − 0 = x"),
        Rewrite(f"sub({z}, X)", "neg(X)", why="0 − x = −x"),
        Rewrite(f"mul(X, {z})", z, ("finite X",), "x·0 = 0 for finite x"),
        Rewrite(f"mul({z}, X)", z, ("finite X",), "0·x = 0 for finite x"),
        Rewrite(f"div({z}, X)", z, ("finite X", "nonneg X"), "0/(y + δ) = 0 for y ≥ 0"),
        Rewrite(f"pow(X, {z})", one, why="x^0 = 1 (also for x NaN, as IEEE pow)"),
        Rewrite(f"exp({z})", one, why="e^0 = 1"),
        Rewrite(f"neg({z})", z, why="−0 = 0"),
        Rewrite(f"sqrt({z})", z, why="√|0| = 0"),
        *(Rewrite(f"{c}({z})", z, why="clip(0) = 0") for c in clips),
        *(Rewrite(f"{d}({z})", z, why="drop(0) = 0") for d in drops),
        Rewrite("add(X, neg(Y))", "sub(X, Y)", why="x + (−y) = x − y"),
        Rewrite("sub(X, neg(Y))", "add(X, Y)", why="x − (−y) = x + y"),
        Rewrite("add(neg(X), Y)", "sub(Y, X)", ("ordered X Y",), "−x + y = y − x"),
        Rewrite("neg(sub(X, Y))", "sub(Y, X)", ("ordered X Y",), "−(x − y) = y − x"),
        Rewrite("mul(neg(X), neg(Y))", "mul(X, Y)", why="(−x)·(−y) = x·y"),
        Rewrite(f"mul(X, neg({one}))", "neg(X)", why="x·(−1) = −x"),
        Rewrite(f"mul(neg({one}), X)", "neg(X)", why="(−1)·x = −x"),
        Rewrite("add(X, X)", f"mul({two}, X)", ("deterministic X",), "x + x = 2x for one x"),
        Rewrite("sign(X)", "X", ("signed X",), "sign(x) = x for x in {−1, 0, 1}"),
        Rewrite(f"sign({two})", one, why="sign(2) = 1"),
        # an operand's spellings (no other rewrite has the root of one: where they stand
        # among the others changes nothing)
        *spells,
        *(Rewrite(f"sign({c}(X))", "sign(X)", why="clipping keeps the sign") for c in clips),
        *(Rewrite(f"{a}({b}(X))", f"{_narrower(a, b)}(X)", why="the narrower clip wins")
          for a in clips for b in clips),
        Rewrite(f"sqrt({one})", one, why="√|1| = 1"),
        Rewrite("exp(log(X))", "X", ("nonneg X",), "exp(log|x|) = x for x ≥ 0"),
        Rewrite("log(exp(X))", "X", ("bounded X",), "log|e^x| = x where e^x is representable"),
    )


ZERO: Rule = Rule.parse(f"sub({_constant(1)}, {_constant(1)})")   # 0 (no state, exact)
REWRITES: tuple[Rewrite, ...] = _rewrites()


def full(rule: Rule) -> bool:
    """True when the compiled value has the parameter's shape, False when it is 0-dim:
    the constants and the decays are 0-dim tensors (see :mod:`evo_nos.optim.kernels`),
    and so is everything computed from them alone."""
    if rule.kind == OPERAND:
        return not rule.primitive.scalar
    return any(full(rule.args[i]) for i in _computed(rule.op))


def simplify(rule: Rule) -> Rule:
    """An equal rule, simplified bottom-up by :data:`REWRITES` until none applies.

    Idempotent (``simplify(simplify(r)) == simplify(r)``); never more nodes than ``rule``.
    The result may have a root the search space does not propose (``keep(g, m)`` is
    ``g``): it is a reading of the rule, the rule itself stays what was scored.

    Shape is behaviour under a drop: ``drop(x)`` draws one mask entry per entry of x, so
    there a tensor is never rewritten into a 0-dim constant (``drop1(sub(m, m))`` is no
    ``drop1(sub(1, 1))``).  Elsewhere a 0-dim value broadcasts as the tensor would.
    """
    if not isinstance(rule, Rule):
        raise TypeError(f"expected a Rule, got {type(rule).__name__}")
    return _simplify(rule, False)


@functools.lru_cache(maxsize=1 << 16)
def _simplify(rule: Rule, keep_shape: bool) -> Rule:
    inner = keep_shape or isinstance(template(rule.op), Drop)
    args = None
    if keep_shape and rule.kind == BINARY and len(_computed(rule.op)) == 2:
        # an elementwise x ∘ y has the shape of either: its arguments may lose theirs
        # as long as the result keeps its own (add(g, sub(m, m)) is g under a drop too)
        relaxed = tuple(_simplify(a, False) for a in rule.args)
        if full(Rule(rule.op, relaxed)) == full(rule):
            args = relaxed
    if args is None:
        args = tuple(_simplify(a, inner) for a in rule.args)
    node = rule if args == rule.args else Rule(rule.op, args)
    for rewrite in REWRITES:
        new = rewrite.apply(node)
        if new is not None and new != node and (not keep_shape or full(new) == full(node)):
            return _simplify(new, keep_shape)
    return node


def simplified_complexity(rule: Rule) -> int:
    """The node count of :func:`simplify` (``rule``)."""
    return simplify(rule).complexity


# -- checking the rewrites with sympy ----------------------------------------------------------
def _stand_in(name: str, properties: set) -> sympy.Expr:
    if "signed" in properties:
        return sympy.sign(sympy.Symbol(name, real=True))
    if "nonneg" in properties:
        return sympy.Symbol(name, nonnegative=True)
    return sympy.Symbol(name, real=True)


def _zero(expr: sympy.Expr) -> bool:
    return sympy.simplify(expr) == 0


def check_rewrite(rewrite: Rewrite) -> str | None:
    """None when sympy shows ``before == after`` under the rewrite's conditions (by
    simplification, else case by case: each plain variable positive, negative, zero);
    else what it could not show."""
    properties: dict = {v: set() for v in rewrite.lhs.variables()}
    for cond in rewrite.when:
        name, *names = cond.split()
        for n in names:
            properties[n].add(name)
    stand_ins = {v: _stand_in(v, p) for v, p in properties.items()}
    before = _sympy(rewrite.lhs, itertools.count(1), stand_ins)
    after = _sympy(rewrite.rhs, itertools.count(1), stand_ins)
    if _zero(before - after):
        return None
    plain = [v for v, s in stand_ins.items() if isinstance(s, sympy.Symbol) and s.is_real
             and not s.is_nonnegative]
    cases = [(sympy.Symbol(v, positive=True), -sympy.Symbol(v, positive=True), sympy.S.Zero)
             for v in plain]
    for case in itertools.product(*cases):
        subs = {stand_ins[v]: value for v, value in zip(plain, case)}
        if not _zero(before.xreplace(subs) - after.xreplace(subs)):
            return f"{rewrite}: sympy finds {before} != {after} (case {subs})"
    return None if plain else f"{rewrite}: sympy finds {before} != {after}"


# -- readable forms --------------------------------------------------------------------------------
_SUPER = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _draw_labels(expr: sympy.Expr) -> dict:
    """(function name, k) -> the draw's shown number (0: the only draw of its kind)."""
    found: dict = {}
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, RANDOM_FUNCTIONS):
            found.setdefault(type(node).__name__, set()).add(int(node.args[-1]))
    return {(name, k): (i if len(ks) > 1 else 0)
            for name, ks in found.items() for i, k in enumerate(sorted(ks), 1)}


def _ten_power(value) -> int | None:
    """k where ``value`` is 10^-k (k >= 1), else None."""
    value = sympy.sympify(value)
    if value.is_Rational and value.p == 1 and value.q > 1:
        k = round(math.log10(value.q))
        if 10 ** k == value.q:
            return k
    return None


class _Notation:
    """What both printers share: terms with a plus sign first (``m̂ − g``, not
    ``−g + m̂``), and the numbers of the random draws."""

    labels: dict

    def _as_ordered_terms(self, expr, order=None):
        terms = super()._as_ordered_terms(expr, order)
        return sorted(terms, key=lambda term: bool(term.could_extract_minus_sign()))

    def _label(self, expr) -> int:
        return self.labels.get((type(expr).__name__, int(expr.args[-1])), 0)

    def _print_Mul(self, expr):
        """A power of ten times a term reads as such (``10⁻³·w``), not as a fraction."""
        coeff, rest = expr.as_coeff_Mul()
        k = _ten_power(abs(coeff)) if coeff.is_Rational else None
        if k is not None and rest != 1:
            return ("-" if coeff < 0 else "") + self._scaled(abs(coeff), k, self._print(rest),
                                                             rest.is_Add)
        return super()._print_Mul(expr)


class _TextPrinter(_Notation, StrPrinter):
    """sympy's str printer in the notation of ``Rule.math``."""

    def __init__(self, labels: dict):
        super().__init__()
        self.labels = labels

    def _sub(self, expr) -> str:
        i = self._label(expr)
        return str(i).translate(_SUB) if i else ""

    def _grouped(self, expr) -> str:
        """``expr``, in parentheses unless it is a symbol, a whole number or a call."""
        text = self._print(expr)
        simple = (expr.is_Symbol or (expr.is_Integer and expr >= 0)
                  or isinstance(expr, (sympy.Abs, sympy.Function))
                  and not isinstance(expr, sympy.log))            # (log|x|)², not log|x|²
        return text if simple else f"({text})"

    def _number(self, value) -> str:
        k = _ten_power(value)
        return "10" + f"-{k}".translate(_SUPER) if k is not None else self._print(value)

    def _print_Noise(self, expr):
        return "ε" + self._sub(expr)

    def _print_AnnealedNoise(self, expr):
        return "ε_t" + self._sub(expr)

    def _print_Drop(self, expr):
        x, p, _ = expr.args
        return f"drop{self._sub(expr)}({self._print(x)}, {float(p):g})"

    def _print_Clip(self, expr):
        x, c = expr.args
        return f"clip({self._print(x)}, {self._number(c)})"

    def _print_Abs(self, expr):
        return f"|{self._print(expr.args[0])}|"

    def _print_Sign(self, expr):
        return f"sign({self._print(expr.args[0])})"

    def _print_log(self, expr):
        arg = expr.args[0]
        return "log" + (self._print(arg) if isinstance(arg, sympy.Abs) else
                        f"({self._print(arg)})")

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.as_base_exp()
        if exp == sympy.S.Half:
            return "√" + self._grouped(base)
        if exp == -sympy.S.Half:
            return "1/√" + self._grouped(base)
        if exp.is_Integer and exp > 1:
            return self._grouped(base) + str(exp).translate(_SUPER)
        if exp.is_Integer and exp < -1:
            return "1/" + self._grouped(base) + str(-exp).translate(_SUPER)
        return super()._print_Pow(expr, rational)

    def _scaled(self, coeff, k: int, text: str, is_sum: bool) -> str:
        return f"{self._number(coeff)}*" + (f"({text})" if is_sum else text)


class _LatexPrinter(_Notation, LatexPrinter):
    """sympy's LaTeX printer in the notation of ``Rule.latex``."""

    def __init__(self, labels: dict):
        super().__init__({"mul_symbol": "dot"})
        self.labels = labels

    def _print_Symbol(self, expr, style="plain"):
        name = _LATEX_NAMES.get(expr.name)
        return name if name is not None else super()._print_Symbol(expr, style)

    @staticmethod
    def _raised(text: str, exp) -> str:
        return f"{text}^{{{exp}}}" if exp else text

    def _print_Noise(self, expr, exp=None):
        i = self._label(expr)
        return self._raised(r"\epsilon" + (f"_{{{i}}}" if i else ""), exp)

    def _print_AnnealedNoise(self, expr, exp=None):
        i = self._label(expr)
        return self._raised(r"\epsilon_{t" + (f",{i}" if i else "") + "}", exp)

    def _print_Drop(self, expr, exp=None):
        x, p, _ = expr.args
        i = self._label(expr)
        sub = f"_{{{i}}}" if i else ""
        return self._raised(
            rf"\operatorname{{drop}}{sub}\left({self._print(x)}, {float(p):g}\right)", exp)

    def _power_of_ten(self, value) -> str:
        k = _ten_power(value)
        return f"10^{{-{k}}}" if k is not None else self._print(value)

    def _print_Clip(self, expr, exp=None):
        x, c = expr.args
        return self._raised(
            rf"\operatorname{{clip}}\left({self._print(x)}, {self._power_of_ten(c)}\right)",
            exp)

    def _print_Sign(self, expr, exp=None):
        power = f"^{{{exp}}}" if exp else ""
        return rf"\operatorname{{sign}}{power}{{\left({self._print(expr.args[0])} \right)}}"

    def _print_log(self, expr, exp=None):
        arg = expr.args[0]
        if isinstance(arg, sympy.Abs):
            text = rf"\log\left|{self._print(arg.args[0])}\right|"
            return rf"\left({text}\right)^{{{exp}}}" if exp else text
        return super()._print_log(expr, exp)

    def _scaled(self, coeff, k: int, text: str, is_sum: bool) -> str:
        return f"10^{{-{k}}} \\cdot " + (rf"\left({text}\right)" if is_sum else text)


def _as_text(expr: sympy.Expr) -> str:
    text = _TextPrinter(_draw_labels(expr)).doprint(expr)
    return text.replace("**", "^").replace("*", "·").replace("-", "−")


@functools.lru_cache(maxsize=1 << 14)
def readable(rule: Rule) -> str:
    """The simplified rule as people read it, e.g. ``g`` for ``add(g, sub(m, m))`` and
    ``g·exp(sign(g)·sign(m̂))`` for PowerSign (sympy's order of terms)."""
    return _as_text(to_sympy(simplify(rule)))


@functools.lru_cache(maxsize=1 << 14)
def readable_latex(rule: Rule) -> str:
    """:func:`readable` as LaTeX."""
    expr = to_sympy(simplify(rule))
    return _LatexPrinter(_draw_labels(expr)).doprint(expr)


CONDITIONS = {name: meaning for name, (_, meaning) in _CONDITIONS.items()}


@on_change
def _rebuild() -> None:
    """After a change of the primitive table: its symbols, constants and rewrites anew,
    and no cached result of the old table."""
    global ZERO, REWRITES
    for cached in (template, _simplify, readable, readable_latex):
        cached.cache_clear()
    _symbols()
    ZERO = Rule.parse(f"sub({_constant(1)}, {_constant(1)})")
    REWRITES = _rewrites()
