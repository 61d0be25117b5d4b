"""Rule: an update rule as an immutable expression tree over the primitive set.

The canonical string is prefix notation, ``mul(exp(mul(sign_g, sign_m)), g)`` for
PowerSign.  It is a rule's identity everywhere (checkpoints, worker messages, MLflow,
export specs) and ``Rule.parse(str(rule)) == rule`` always holds.

The identity function ``id`` is accepted by the parser but never stored: ``id(x)`` *is*
``x``.  That makes the paper's grammar (a binary combines two unary results; a unary
takes an operand or a binary result) a grammar over trees whose unary slots may be the
identity, which is how :mod:`evo_nos.operators.space` checks it.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property

from evo_nos.core.known_names import KNOWN_STRINGS
from evo_nos.core.primitives import ATOM, BINARY, BY_NAME, IDENTITY, OPERAND, UNARY, Primitive


# The deepest rule the parser accepts (Rule.depth: an operand is 1 deep, neg(g) 2).  Rules
# are walked recursively everywhere (forms, sympy, kernels), so a bound far below Python's
# recursion limit keeps a hand-written rule from crashing them; every rule of a search
# space with up to (MAX_RULE_DEPTH - 2) // 2 binary functions fits under it.
MAX_RULE_DEPTH = 64


class RuleSyntaxError(ValueError):
    """A rule string that does not parse; names the problem and its position.

    ``str(err)`` shows the rule with a pointer under the problem (three lines);
    :attr:`brief` says the same in one line, for command-line errors."""

    def __init__(self, message: str, text: str, position: int):
        self.text, self.position, self.reason = text, position, message
        pointer = " " * position + "^"
        super().__init__(f"{message} at position {position}\n  {text}\n  {pointer}")

    @property
    def brief(self) -> str:
        """The problem in one line: the reason, its position and (when short) the rule."""
        where = f" of {self.text!r}" if len(self.text) <= 60 and "\n" not in self.text else ""
        return f"{self.reason} (position {self.position}{where})"


@dataclass(frozen=True, eq=True)
class Rule:
    op: str
    args: tuple["Rule", ...] = ()

    # -- construction -------------------------------------------------------------
    def __post_init__(self) -> None:
        prim = BY_NAME.get(self.op)
        if prim is None:
            raise ValueError(f"unknown primitive {self.op!r}; see evo_nos.core.primitives")
        if prim.name == IDENTITY:
            raise ValueError(f"{IDENTITY} is not stored in a Rule: use "
                             f"Rule.make({IDENTITY!r}, x), which returns x")
        if len(self.args) != prim.arity:
            raise ValueError(f"{self.op!r} takes {prim.arity} argument(s), got {len(self.args)}")

    @staticmethod
    def make(op: str, *args: "Rule") -> "Rule":
        """Build a node; ``make('id', x)`` is ``x``."""
        if op == IDENTITY:
            if len(args) != 1:
                raise ValueError(f"{IDENTITY!r} takes 1 argument(s), got {len(args)}")
            return args[0]
        return Rule(op, tuple(args))

    @staticmethod
    def parse(text: str) -> "Rule":
        """Parse a canonical string; raises :class:`RuleSyntaxError` on bad input."""
        return _Parser(text).parse()

    # -- structure ----------------------------------------------------------------
    @property
    def primitive(self) -> Primitive:
        return BY_NAME[self.op]

    @property
    def kind(self) -> str:
        return self.primitive.kind

    def nodes(self):
        """All nodes, pre-order."""
        yield self
        for arg in self.args:
            yield from arg.nodes()

    @cached_property
    def complexity(self) -> int:
        """Node count (the identity is not a node)."""
        return sum(1 for _ in self.nodes())

    @cached_property
    def n_binary(self) -> int:
        return sum(1 for n in self.nodes() if n.kind == BINARY)

    @cached_property
    def depth(self) -> int:
        return 1 + max((a.depth for a in self.args), default=0)

    @cached_property
    def needs(self) -> frozenset:
        """State the rule reads: subset of {'m', 'v', 'r', 'w', 'T', 'rng'}."""
        out: set = set()
        for n in self.nodes():
            out |= n.primitive.needs
        return frozenset(out)

    @property
    def uses_decay(self) -> bool:
        return "T" in self.needs

    @cached_property
    def key(self) -> str:
        """Structural key: equal for rules that differ only by the order of the
        arguments of commutative functions (add, mul)."""
        return hashlib.sha1(self._sorted_string().encode()).hexdigest()[:16]

    def _sorted_string(self) -> str:
        if not self.args:
            return self.op
        parts = [a._sorted_string() for a in self.args]
        if self.primitive.commutative:
            parts.sort()
        return f"{self.op}({', '.join(parts)})"

    # -- forms ----------------------------------------------------------------------
    def __str__(self) -> str:
        return self.canonical

    def __repr__(self) -> str:
        return f"Rule.parse({self.canonical!r})"

    @cached_property
    def canonical(self) -> str:
        if not self.args:
            return self.op
        return f"{self.op}({', '.join(a.canonical for a in self.args)})"

    @property
    def math(self) -> str:
        """Readable form, e.g. ``exp(sign(g)·sign(m̂))·g``."""
        return self._render("math")

    @property
    def latex(self) -> str:
        return self._render("latex")

    def _render(self, form: str) -> str:
        prim = self.primitive
        template = getattr(prim, form)
        if prim.kind == OPERAND:
            return template.format()
        children = [a._render(form) for a in self.args]
        if prim.kind == UNARY:
            if prim.prefix and self.args[0].primitive.prec < ATOM:
                open_, close = ("\\left(", "\\right)") if form == "latex" else ("(", ")")
                children[0] = f"{open_}{children[0]}{close}"
            return template.format(*children)
        # binary: parenthesise binary children that bind more loosely than this node
        for i, arg in enumerate(self.args):
            if _needs_parens(prim, arg.primitive, i, form):
                open_, close = ("\\left(", "\\right)") if form == "latex" else ("(", ")")
                children[i] = f"{open_}{children[i]}{close}"
        return template.format(*children)


def _needs_parens(parent: Primitive, child: Primitive, position: int, form: str) -> bool:
    if child.kind != BINARY or child.prec >= ATOM:
        return False
    if (form, position) in parent.grouped:
        return False  # the template groups it (x/(y + δ), \\frac, a braced exponent)
    if child.prec != parent.prec:
        return child.prec < parent.prec
    if not parent.chains_left:
        return True
    return position == 1 and not (parent.commutative and child.name == parent.name)


_TOKEN = re.compile(r"\s*(?:([A-Za-z0-9_]+)|(\()|(\))|(,))")


class _Parser:
    def __init__(self, text: str):
        if not isinstance(text, str):
            raise TypeError(f"a rule string must be str, got {type(text).__name__}")
        self.text = text
        self.tokens = self._tokenize(text)
        self.i = 0

    def _tokenize(self, text):
        """The tokens with their positions; refuses a rule nested deeper than
        :data:`MAX_RULE_DEPTH` here, counting parentheses, before anything recurses."""
        tokens, pos = [], 0
        open_, deepest, too_deep_at = 0, 0, None
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if not match:
                bad = len(text[pos:]) - len(text[pos:].lstrip()) + pos
                raise RuleSyntaxError(f"unexpected character {text[bad]!r}", text, bad)
            start = match.start(match.lastindex)
            token = match.group(match.lastindex)
            if token == "(":
                open_ += 1
                deepest = max(deepest, open_)
                if open_ + 1 > MAX_RULE_DEPTH and too_deep_at is None:
                    too_deep_at = start
            elif token == ")":
                open_ = max(0, open_ - 1)
            tokens.append((token, start))
            pos = match.end()
        if too_deep_at is not None:
            raise RuleSyntaxError(f"rule nested {deepest + 1} deep; at most {MAX_RULE_DEPTH}",
                                  text, too_deep_at)
        return tokens

    def _peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, len(self.text))

    def _take(self, expected=None):
        tok, pos = self._peek()
        if tok is None:
            what = f"expected {expected!r}" if expected else "expected a primitive"
            raise RuleSyntaxError(f"unexpected end of rule, {what}", self.text, pos)
        if expected is not None and tok != expected:
            raise RuleSyntaxError(f"expected {expected!r}, found {tok!r}", self.text, pos)
        self.i += 1
        return tok, pos

    def parse(self) -> Rule:
        if not self.tokens:
            raise RuleSyntaxError("empty rule", self.text, 0)
        rule = self._expr()
        tok, pos = self._peek()
        if tok is not None:
            raise RuleSyntaxError(f"unexpected {tok!r} after a complete rule", self.text, pos)
        return rule

    def _expr(self) -> Rule:
        name, pos = self._take()
        if name in "(),":
            raise RuleSyntaxError(f"expected a primitive, found {name!r}", self.text, pos)
        prim = BY_NAME.get(name)
        if prim is None:
            hint = (" (a known rule name; use it alone, not inside a rule)"
                    if name in KNOWN_STRINGS else "")
            raise RuleSyntaxError(f"unknown token {name!r}{hint}", self.text, pos)
        args = []
        if self._peek()[0] == "(":
            self._take("(")
            if self._peek()[0] != ")":
                args.append(self._expr())
                while self._peek()[0] == ",":
                    self._take(",")
                    args.append(self._expr())
            self._take(")")
        if len(args) != prim.arity:
            raise RuleSyntaxError(
                f"{name!r} takes {prim.arity} argument(s), got {len(args)}", self.text, pos
            )
        return Rule.make(name, *args)
