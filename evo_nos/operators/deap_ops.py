"""The search space as DEAP typed GP trees, and variation that never leaves it.

Representation.  A rule becomes a :class:`deap.gp.PrimitiveTree` over a
:class:`deap.gp.PrimitiveSetTyped` with two types that spell out the paper's grammar::

    Slot  <- unary(Bare)          every unary function, the identity ``id`` included
    Bare  <- binary(Slot, Slot)   every binary function
    Bare  <- operand              every operand (a terminal)

and a tree's root is a ``Slot``.  The identity, elided in a :class:`~evo_nos.core.rules.Rule`,
is explicit in a tree, so every rule of the grammar has exactly one tree and
``tree_to_rule(rule_to_tree(r)) == r``.  In a space with ``root="binary"`` (the default,
see :mod:`evo_nos.operators.space`) a legal tree starts ``id(b(...))``: node 0 is the
root slot's unary and must stay ``id``, node 1 is the root's core and must stay a
binary.  The primitive set is derived from the primitive table filtered by the
:class:`SearchSpace`, never written out by hand.
Trees are never compiled (``gp.compile`` is ``eval`` of a string); a rule is scored
through its canonical string.

Variation.  DEAP's own operators draw from the global ``random`` module, and its
``mutShrink``/``mutInsert`` find nothing to do in this grammar (no primitive returns the
type it takes).  The operators below therefore act on DEAP's ``PrimitiveTree`` (its
typed nodes, ``searchSubtree`` and checked slice assignment) with an explicit
``random.Random``, and know the bound on binary nodes and the space's root:

* ``crossover`` -- typed one-point crossover: a non-root subtree of the first parent is
  replaced by a subtree of the same type from the second, chosen among the pairs that
  keep the child within the bound (and, with a binary root, only a binary donor may
  replace the root's core);
* ``subtree``   -- a random subtree is replaced by a fresh random one of the same type,
  with as many binary nodes as the bound leaves room for (at least one at the root,
  with a binary root);
* ``point``     -- one node swapped for another primitive of the same kind and type
  (unary for unary, the identity included; binary for binary; operand for operand),
  never the root slot's ``id`` with a binary root;
* ``shrink``    -- a binary node replaced by one of its arguments (its unary dropped);
  with a binary root the root binary only by an argument that is itself a binary;
* ``insert``    -- an operand or binary result ``x`` becomes ``b(x, u(o))`` or
  ``b(u(o), x)`` with a fresh binary ``b``, unary ``u`` and operand ``o``.

:class:`Variation` re-draws a child (at most ``max_tries`` times) until it is inside the
space and structurally different (by :attr:`Rule.key`) from its parents, preferring
children not seen before.  The operators never produce an illegal root from a legal
parent, so the re-draws guard only the parent's own faults (e.g. a rule with an operand
root restored from an old checkpoint).
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field

from deap import gp

from evo_nos.core.primitives import BINARY, IDENTITY, OPERAND, PRIMITIVES, UNARY
from evo_nos.operators.space import SearchSpace
from evo_nos.core.rules import Rule

OPERATORS = ("crossover", "subtree", "point", "shrink", "insert")
MUTATIONS = ("subtree", "point", "shrink", "insert")


class Slot:
    """DEAP type of a unary slot: a unary function (possibly ``id``) over a Bare."""


class Bare:
    """DEAP type of an operand or of a binary function's result."""


def _never_compiled(name: str):
    def primitive(*_args):
        raise RuntimeError(f"evo_nos never runs DEAP trees ({name!r}): score a rule through "
                           "its canonical string (tree_to_rule(tree).canonical)")
    primitive.__name__ = name
    return primitive


@functools.lru_cache(maxsize=32)
def primitive_set(space: SearchSpace = SearchSpace()) -> gp.PrimitiveSetTyped:
    """The typed primitive set of ``space`` (cached per space; treat it as read-only).

    ``id`` is always present: it is how a tree spells a slot without a unary function,
    which the grammar allows whatever the space's unary list says.
    """
    pset = gp.PrimitiveSetTyped("evo_nos_rule", [], Slot)
    for prim in PRIMITIVES:
        if prim.kind == UNARY and (prim.name in space.unaries or prim.name == IDENTITY):
            pset.addPrimitive(_never_compiled(prim.name), [Bare], Slot, name=prim.name)
        elif prim.kind == BINARY and prim.name in space.binaries:
            pset.addPrimitive(_never_compiled(prim.name), [Slot, Slot], Bare, name=prim.name)
        elif prim.kind == OPERAND and prim.name in space.operands:
            pset.addTerminal(prim.name, Bare, name=prim.name)
    return pset


# -- Rule <-> tree ---------------------------------------------------------------------
def rule_to_tree(rule: Rule, space: SearchSpace = SearchSpace()) -> gp.PrimitiveTree:
    """The tree of ``rule`` (identity made explicit).  Raises ValueError when the rule
    is not in the grammar or uses a primitive outside ``space`` (the bound on binary
    nodes is *not* checked: a tree may be larger than the space allows)."""
    return gp.PrimitiveTree(_slot_nodes(rule, primitive_set(space)))


def tree_to_rule(tree: gp.PrimitiveTree) -> Rule:
    """The rule a tree spells (``id`` nodes elided)."""
    position = 0

    def build() -> Rule:
        nonlocal position
        node = tree[position]
        position += 1
        if node.arity == 0:
            return Rule(node.name)
        args = [build() for _ in range(node.arity)]
        return Rule.make(node.name, *args)

    rule = build()
    if position != len(tree):
        raise ValueError(f"tree has {len(tree) - position} node(s) after a complete rule")
    return rule


def _lookup(pset: gp.PrimitiveSetTyped, name: str, rule: Rule):
    try:
        return pset.mapping[name]
    except KeyError:
        raise ValueError(f"{name!r} (in {rule}) is not in this search space") from None


def _slot_nodes(rule: Rule, pset) -> list:
    if rule.kind == UNARY:
        inner = rule.args[0]
        if inner.kind == UNARY:
            raise ValueError(f"{rule} is outside the grammar: a unary function takes an "
                             "operand or a binary result, not another unary")
        return [_lookup(pset, rule.op, rule)] + _bare_nodes(inner, pset)
    return [pset.mapping[IDENTITY]] + _bare_nodes(rule, pset)


def _bare_nodes(rule: Rule, pset) -> list:
    if rule.kind == OPERAND:
        return [_lookup(pset, rule.op, rule)]
    nodes = [_lookup(pset, rule.op, rule)]
    for arg in rule.args:
        nodes += _slot_nodes(arg, pset)
    return nodes


def _n_binary(nodes) -> int:
    return sum(1 for node in nodes if node.arity == 2)


# -- operators on trees (each returns a new tree, or None when it does not apply) ------
_ROOT_CORE = 1      # index of the root slot's Bare (its core) in a tree; 0 is its unary


def crossover(tree1, tree2, rng: random.Random, space: SearchSpace):
    """Typed one-point crossover within the bound: one child (tree1 receiving a subtree
    of tree2).  With a binary root only a binary subtree may replace tree1's root core."""
    total1 = _n_binary(tree1)
    sizes2 = {}
    pairs = []
    for i in range(1, len(tree1)):
        slice1 = tree1.searchSubtree(i)
        outside = total1 - _n_binary(tree1[slice1])
        binary_only = space.binary_root and i == _ROOT_CORE
        for j in range(1, len(tree2)):
            if tree2[j].ret is not tree1[i].ret or (binary_only and tree2[j].arity != 2):
                continue
            if j not in sizes2:
                sizes2[j] = _n_binary(tree2[tree2.searchSubtree(j)])
            if outside + sizes2[j] <= space.max_binary:
                pairs.append((i, j))
    if not pairs:
        return None
    i, j = rng.choice(pairs)
    child = gp.PrimitiveTree(tree1)
    child[tree1.searchSubtree(i)] = tree2[tree2.searchSubtree(j)]
    return child


def subtree_mutation(tree, rng: random.Random, space: SearchSpace):
    """Replace a random subtree by a fresh random one of the same type (with a binary
    root, the root slot or its core by a fresh binary-root rule)."""
    i = rng.randrange(len(tree))
    slice_ = tree.searchSubtree(i)
    room = space.max_binary - (_n_binary(tree) - _n_binary(tree[slice_]))
    pset = primitive_set(space)
    at_root = space.binary_root and i <= _ROOT_CORE
    k = rng.randint(1 if at_root else 0, room)
    if at_root:                        # room == max_binary >= 1: the whole rule is new
        fresh = space.sample_binary(rng, k)
        nodes = _slot_nodes(fresh, pset) if i == 0 else _bare_nodes(fresh, pset)
    elif tree[i].ret is Slot:
        nodes = _slot_nodes(space.sample_slot(rng, k), pset)
    else:
        fresh = Rule(rng.choice(space.operands)) if k == 0 else space.sample_binary(rng, k)
        nodes = _bare_nodes(fresh, pset)
    child = gp.PrimitiveTree(tree)
    child[slice_] = nodes
    return child


def point_mutation(tree, rng: random.Random, space: SearchSpace):
    """Swap one node for a different primitive of the same kind and type (with a binary
    root, never the root slot's ``id``)."""
    pset = primitive_set(space)
    choices = []
    for i, node in enumerate(tree):
        if i == 0 and space.binary_root:
            continue
        if node.arity == 0:
            pool = [t for t in pset.terminals[node.ret] if t.name != node.name]
        else:
            pool = [p for p in pset.primitives[node.ret]
                    if p.args == node.args and p.name != node.name]
        if pool:
            choices.append((i, pool))
    if not choices:
        return None
    i, pool = rng.choice(choices)
    child = gp.PrimitiveTree(tree)
    child[i] = rng.choice(pool)
    return child


def shrink_mutation(tree, rng: random.Random, space: SearchSpace):
    """Replace a binary node by one of its arguments (without that argument's unary).
    With a binary root, the root's binary is replaced only by an argument that is itself
    a binary (and not at all when both are operands)."""
    choices = []
    for i, node in enumerate(tree):
        if node.arity != 2:
            continue
        first_slot = i + 1
        slots = (first_slot, tree.searchSubtree(first_slot).stop)
        if space.binary_root and i == _ROOT_CORE:
            slots = tuple(s for s in slots if tree[s + 1].arity == 2)
        if slots:
            choices.append((i, slots))
    if not choices:
        return None
    i, slots = rng.choice(choices)
    slot = rng.choice(slots)
    kept = tree[tree.searchSubtree(slot + 1)]          # the Bare under that slot's unary
    child = gp.PrimitiveTree(tree)
    child[tree.searchSubtree(i)] = kept
    return child


def insert_mutation(tree, rng: random.Random, space: SearchSpace):
    """Wrap an operand or binary result x into b(x, u(o)) or b(u(o), x): x is kept whole."""
    if _n_binary(tree) >= space.max_binary:
        return None
    pset = primitive_set(space)
    bares = [i for i, node in enumerate(tree) if node.ret is Bare]
    i = rng.choice(bares)
    slice_ = tree.searchSubtree(i)
    kept = [pset.mapping[IDENTITY]] + tree[slice_]
    fresh = [rng.choice(pset.primitives[Slot]), rng.choice(pset.terminals[Bare])]
    args = kept + fresh if rng.random() < 0.5 else fresh + kept
    child = gp.PrimitiveTree(tree)
    child[slice_] = [rng.choice(pset.primitives[Bare])] + args
    return child


_MUTATORS = {
    "subtree": subtree_mutation,
    "point": point_mutation,
    "shrink": shrink_mutation,
    "insert": insert_mutation,
}


# -- children that stay in the space -----------------------------------------------------
@dataclass
class Variation:
    """Makes children of rules that are inside ``space`` and differ from their parents.

    ``weights`` sets how often each mutation is picked (operators that do not apply to
    a parent, e.g. ``shrink`` on a rule without binary nodes, are skipped).  Every
    attempt that is outside the space, equal to a parent (by structural key) or, when
    possible, already in ``avoid`` is re-drawn, at most ``max_tries`` times.
    """

    space: SearchSpace = field(default_factory=SearchSpace)
    max_tries: int = 20
    weights: dict = field(default_factory=lambda: {name: 1.0 for name in MUTATIONS})

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(MUTATIONS))
        if unknown:
            raise ValueError(f"unknown mutation(s) {unknown}; choose from {list(MUTATIONS)}")
        if not any(w > 0 for w in self.weights.values()):
            raise ValueError("at least one mutation needs a positive weight")
        if self.max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {self.max_tries}")

    def mutate(self, parent: Rule, rng: random.Random, avoid=()) -> Rule | None:
        """A mutated child of ``parent``, or None when no valid different child was found."""
        tree = rule_to_tree(parent, self.space)
        names = [n for n in MUTATIONS if self.weights.get(n, 0) > 0]
        weights = [self.weights[n] for n in names]

        def attempt():
            return _MUTATORS[rng.choices(names, weights)[0]](tree, rng, self.space)

        return self._search(attempt, (parent,), avoid)

    def crossover(self, parent1: Rule, parent2: Rule, rng: random.Random,
                  avoid=()) -> Rule | None:
        """A crossover child of the two parents (which one donates is drawn each try)."""
        trees = (rule_to_tree(parent1, self.space), rule_to_tree(parent2, self.space))

        def attempt():
            first = rng.randrange(2)
            return crossover(trees[first], trees[1 - first], rng, self.space)

        return self._search(attempt, (parent1, parent2), avoid)

    def _search(self, attempt, parents, avoid) -> Rule | None:
        parent_keys = {p.key for p in parents}
        fallback = None
        for _ in range(self.max_tries):
            tree = attempt()
            if tree is None:
                continue
            child = tree_to_rule(tree)
            if child.key in parent_keys or not self.space.contains(child):
                continue
            if child.key not in avoid:
                return child
            fallback = fallback or child
        return fallback
