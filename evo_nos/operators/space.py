"""The search space every strategy shares: the paper's grammar, its root and its size bound.

With the identity elided (see :mod:`evo_nos.core.rules`), the grammar is::

    rule   := binary                                                (root="binary", default)
    rule   := slot                                                  (root="slot")
    slot   := operand | binary | unary(operand) | unary(binary)     (unary ≠ id)
    binary := b(slot, slot)

i.e. a binary function combines two unary results and a unary function takes an
operand or a binary result, exactly the paper's ``[op1, op2, u1, u2, b]`` groups.

**The root.** This object is the one place that decides which roots are legal; every
strategy samples, mutates and decodes inside it (:meth:`SearchSpace.sample`, the DEAP
operators of :mod:`evo_nos.operators.deap_ops`, the token masks of
:mod:`evo_nos.operators.tokens`) and :meth:`SearchSpace.violation` checks it.  With
``root="binary"`` (the default, the paper's grammar) the update is the output of the
last group's binary function.  Nothing is lost by it: a rule ``x`` with an operand or
unary root has binary-root spellings that behave identically, e.g. ``keep(x, ·)``
(:meth:`SearchSpace.spelling` finds one).  ``root="slot"`` makes any slot a legal root,
``g`` and ``sign(mul(g, m))`` included.  Known rules such as ``sgd = g`` stay rules
everywhere else (scoring, export); only searches propose inside the space.

The size bound is the number of binary nodes (``max_binary``, default 4: enough for every
rule of the paper's table, AddSign with a decay included; the invalid rate of uniform
samples is 0.520 at 4 against 0.512 at 3, 1,500 samples each, within the noise).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from evo_nos.core.primitives import BINARIES, BINARY, BY_NAME, OPERAND, OPERANDS, UNARIES, UNARY
from evo_nos.core.rules import Rule

_ALL_OPERANDS = tuple(p.name for p in OPERANDS)
_ALL_UNARIES = tuple(p.name for p in UNARIES)          # includes "id"
_ALL_BINARIES = tuple(p.name for p in BINARIES)

ROOTS = ("binary", "slot")   # what a rule's root may be: a binary function, or any slot


@dataclass(frozen=True)
class SearchSpace:
    max_binary: int = 4
    operands: tuple[str, ...] = field(default=_ALL_OPERANDS)
    unaries: tuple[str, ...] = field(default=_ALL_UNARIES)
    binaries: tuple[str, ...] = field(default=_ALL_BINARIES)
    root: str = "binary"

    def __post_init__(self) -> None:
        if self.max_binary < 1:
            raise ValueError(f"max_binary must be >= 1, got {self.max_binary}")
        if self.root not in ROOTS:
            raise ValueError(f"root must be one of {ROOTS}, got {self.root!r}")
        for label, names, allowed in (
            ("operand", self.operands, _ALL_OPERANDS),
            ("unary", self.unaries, _ALL_UNARIES),
            ("binary", self.binaries, _ALL_BINARIES),
        ):
            bad = [n for n in names if n not in allowed]
            if bad:
                raise ValueError(f"unknown {label} function(s) {bad}; choose from {list(allowed)}")
            if not names:
                raise ValueError(f"the search space needs at least one {label}")
        object.__setattr__(self, "operands", tuple(self.operands))
        object.__setattr__(self, "unaries", tuple(self.unaries))
        object.__setattr__(self, "binaries", tuple(self.binaries))

    def as_dict(self) -> dict:
        return {"max_binary": self.max_binary, "operands": list(self.operands),
                "unaries": list(self.unaries), "binaries": list(self.binaries),
                "root": self.root}

    @property
    def binary_root(self) -> bool:
        """Whether a rule's root must be a binary function (``root="binary"``)."""
        return self.root == "binary"

    # -- validity -------------------------------------------------------------------
    def violation(self, rule: Rule) -> str | None:
        """Why ``rule`` is outside the space, or None when it is inside."""
        if rule.n_binary > self.max_binary:
            return f"{rule.n_binary} binary functions, the bound is {self.max_binary}"
        return self._slot_violation(rule) or self.root_violation(rule)

    def contains(self, rule: Rule) -> bool:
        return self.violation(rule) is None

    def root_violation(self, rule: Rule) -> str | None:
        """Why ``rule``'s root is not legal here (only its root is looked at), or None."""
        if self.binary_root and rule.kind != BINARY:
            what = "an operand" if rule.kind == OPERAND else "a unary function"
            return (f"its root {rule.op!r} is {what}, not a binary function: the root must be "
                    f"a binary function in this space (root='binary', the paper's grammar); "
                    f"spell it with one, e.g. keep(x, ·) (SearchSpace.spelling), or use "
                    f"SearchSpace(root='slot')")
        return None

    def _slot_violation(self, node: Rule) -> str | None:
        if node.kind == UNARY:
            if node.op not in self.unaries:
                return f"unary {node.op!r} is not in this space"
            inner = node.args[0]
            if inner.kind == UNARY:
                return f"{node.op}({inner.op}(...)): a unary function takes an operand or a binary result"
            return self._bare_violation(inner)
        return self._bare_violation(node)

    def _bare_violation(self, node: Rule) -> str | None:
        if node.kind == OPERAND:
            return None if node.op in self.operands else f"operand {node.op!r} is not in this space"
        if node.op not in self.binaries:
            return f"binary {node.op!r} is not in this space"
        for arg in node.args:
            why = self._slot_violation(arg)
            if why:
                return why
        return None

    # -- spelling a rule inside the space ---------------------------------------------
    def spelling(self, rule: Rule) -> Rule:
        """``rule`` itself when its root is legal here, else an equivalent spelling with
        a binary root: ``keep(rule, o)`` when ``keep`` is in the space (``o``: an operand
        of the rule itself if the space has one, else one that reads no state, so the
        optimizer keeps no extra state), else ``mul(rule, 1)`` (exact: x·1 = x).  Raises
        ValueError, saying how to spell it, when neither is available or the extra
        binary function would exceed ``max_binary``.  Only the root is rewritten: a rule
        outside the space for another reason stays outside (check :meth:`violation`)."""
        if self.root_violation(rule) is None:
            return rule
        kind = "an operand" if rule.kind == OPERAND else "a unary"
        if rule.n_binary >= self.max_binary:
            raise ValueError(
                f"{rule} has {kind} root and {rule.n_binary} binary function(s): a "
                f"binary-root spelling such as keep({rule}, g) needs {rule.n_binary + 1}, the "
                f"bound is {self.max_binary}; raise max_binary or use SearchSpace(root='slot')")
        keeping = [b for b in self.binaries if BY_NAME[b].keeps_left]
        if keeping:
            own = [n.op for n in rule.nodes() if n.kind == OPERAND and n.op in self.operands]
            stateless = [o for o in self.operands if not BY_NAME[o].needs]
            return Rule.make(keeping[0], rule, Rule((own or stateless or self.operands)[0]))
        for b in self.binaries:
            units = [u for u in BY_NAME[b].right_identity if u in self.operands]
            if units:
                return Rule.make(b, rule, Rule(units[0]))
        ways = [f"'{b}' to the binaries ({b}({rule}, g))" for b in _ALL_BINARIES
                if BY_NAME[b].keeps_left] + [
            f"'{b}' and the operand '{u}' ({b}({rule}, {u}))" for b in _ALL_BINARIES
            for u in BY_NAME[b].right_identity]
        raise ValueError(
            f"{rule} has {kind} root, but roots are binary functions in this space "
            f"(root='binary') and it has no identity to spell it with: add "
            f"{' or '.join(ways)}, write "
            f"it with a binary root yourself, or use SearchSpace(root='slot')")

    # -- sampling -------------------------------------------------------------------
    def sample(self, rng: random.Random, n_binary: int | None = None) -> Rule:
        """A random rule: the number of binary functions uniform in 1..max_binary
        (0..max_binary with root="slot"), the tree shape uniform over splits, every
        function and operand uniform; the root is a binary function, or with
        root="slot" a slot (a uniform unary, ``id`` included, over the rest)."""
        low = 1 if self.binary_root else 0
        k = rng.randint(low, self.max_binary) if n_binary is None else n_binary
        if self.binary_root:
            if k < 1:
                raise ValueError(f"a rule with a binary root has >= 1 binary function, not {k}")
            return self.sample_binary(rng, k)
        return self.sample_slot(rng, k)

    def sample_binary(self, rng: random.Random, k: int) -> Rule:
        """A binary node with exactly ``k >= 1`` binary functions in its subtree."""
        left_k = rng.randint(0, k - 1)
        return Rule.make(
            rng.choice(self.binaries),
            self.sample_slot(rng, left_k),
            self.sample_slot(rng, k - 1 - left_k),
        )

    def sample_slot(self, rng: random.Random, k: int) -> Rule:
        """A slot (unary over an operand or a binary) with ``k`` binary functions."""
        inner = Rule(rng.choice(self.operands)) if k == 0 else self.sample_binary(rng, k)
        return Rule.make(rng.choice(self.unaries), inner)
