"""The search space every strategy shares: the paper's grammar and its size bound.

With the identity elided (see :mod:`evo_nos.core.rules`), the grammar is::

    rule   := slot
    slot   := operand | binary | unary(operand) | unary(binary)     (unary ≠ id)
    binary := b(slot, slot)

i.e. a binary function combines two unary results and a unary function takes an
operand or a binary result, exactly the paper's ``[op1, op2, u1, u2, b]`` groups.
The size bound is the number of binary nodes (``max_binary``, default 3: enough for
PowerSign with a decay).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from evo_nos.core.primitives import BINARIES, OPERAND, OPERANDS, UNARIES, UNARY
from evo_nos.core.rules import Rule

_ALL_OPERANDS = tuple(p.name for p in OPERANDS)
_ALL_UNARIES = tuple(p.name for p in UNARIES)          # includes "id"
_ALL_BINARIES = tuple(p.name for p in BINARIES)


@dataclass(frozen=True)
class SearchSpace:
    max_binary: int = 3
    operands: tuple[str, ...] = field(default=_ALL_OPERANDS)
    unaries: tuple[str, ...] = field(default=_ALL_UNARIES)
    binaries: tuple[str, ...] = field(default=_ALL_BINARIES)

    def __post_init__(self) -> None:
        if self.max_binary < 1:
            raise ValueError(f"max_binary must be >= 1, got {self.max_binary}")
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
                "unaries": list(self.unaries), "binaries": list(self.binaries)}

    # -- validity -------------------------------------------------------------------
    def violation(self, rule: Rule) -> str | None:
        """Why ``rule`` is outside the space, or None when it is inside."""
        if rule.n_binary > self.max_binary:
            return f"{rule.n_binary} binary functions, the bound is {self.max_binary}"
        return self._slot_violation(rule)

    def contains(self, rule: Rule) -> bool:
        return self.violation(rule) is None

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

    # -- sampling -------------------------------------------------------------------
    def sample(self, rng: random.Random, n_binary: int | None = None) -> Rule:
        """A random rule: the number of binary functions uniform in 1..max_binary, the
        tree shape uniform over splits, every function and operand uniform."""
        k = rng.randint(1, self.max_binary) if n_binary is None else n_binary
        return self.sample_binary(rng, k)

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
