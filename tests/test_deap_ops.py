"""DEAP representation of the search space and grammar-safe variation."""
import random

import pytest
from deap import gp

from evo_nos.core.known import KNOWN
from evo_nos.operators.deap_ops import (
    Bare, Slot, Variation, crossover, insert_mutation, point_mutation, primitive_set,
    rule_to_tree, shrink_mutation, subtree_mutation, tree_to_rule,
)
from evo_nos.core.primitives import BINARIES, OPERANDS, UNARIES
from evo_nos.operators.space import SearchSpace
from evo_nos.core.rules import Rule

SPACE = SearchSpace()
SLOT_ROOT = SearchSpace(root="slot")     # any slot is a legal root
P = Rule.parse


def tree(text, space=SPACE):
    return rule_to_tree(P(text), space)


# -- the primitive set ------------------------------------------------------------------
def test_primitive_set_is_the_primitive_table():
    pset = primitive_set(SPACE)
    assert [p.name for p in pset.primitives[Slot]] == [p.name for p in UNARIES]
    assert [p.name for p in pset.primitives[Bare]] == [p.name for p in BINARIES]
    assert [t.name for t in pset.terminals[Bare]] == [p.name for p in OPERANDS]
    assert all(p.args == [Bare] for p in pset.primitives[Slot])
    assert all(p.args == [Slot, Slot] for p in pset.primitives[Bare])


def test_primitive_set_of_a_smaller_space_keeps_only_its_primitives_and_id():
    space = SearchSpace(max_binary=2, operands=("g", "m"), unaries=("exp",), binaries=("mul",))
    pset = primitive_set(space)
    assert [p.name for p in pset.primitives[Slot]] == ["id", "exp"]
    assert [p.name for p in pset.primitives[Bare]] == ["mul"]
    assert [t.name for t in pset.terminals[Bare]] == ["g", "m"]


def test_deap_never_runs_a_tree():
    with pytest.raises(RuntimeError, match="canonical string"):
        gp.compile(tree("mul(exp(mul(sign_g, sign_m)), g)"), primitive_set(SPACE))


# -- Rule <-> tree ------------------------------------------------------------------------
def test_powersign_tree_spells_out_the_identity_slots():
    t = tree("mul(exp(mul(sign_g, sign_m)), g)")
    assert str(t) == "id(mul(exp(mul(id(sign_g), id(sign_m))), id(g)))"
    assert t[0].ret is Slot and len(t) == 10


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_round_trip_of_every_known_rule(name):
    rule = KNOWN[name]
    t = rule_to_tree(rule)
    assert tree_to_rule(t) == rule
    assert rule_to_tree(tree_to_rule(t)) == t


def test_round_trip_of_sampled_rules():
    rng = random.Random(1)
    for _ in range(300):
        rule = SPACE.sample(rng)
        assert tree_to_rule(rule_to_tree(rule)) == rule


def test_rule_outside_the_grammar_has_no_tree():
    with pytest.raises(ValueError, match="not another unary"):
        rule_to_tree(P("exp(neg(g))"))
    small = SearchSpace(operands=("g",), unaries=("exp",), binaries=("mul",))
    with pytest.raises(ValueError, match="'m'.*not in this search space"):
        rule_to_tree(P("mul(g, m)"), small)


# -- the operators ------------------------------------------------------------------------
def test_point_mutation_swaps_one_node_for_a_different_one_of_its_kind():
    parent = tree("mul(exp(mul(sign_g, sign_m)), g)")
    rng = random.Random(0)
    for _ in range(200):
        child = point_mutation(parent, rng, SPACE)
        diff = [i for i, (a, b) in enumerate(zip(parent, child)) if a.name != b.name]
        assert len(child) == len(parent) and len(diff) == 1
        a, b = parent[diff[0]], child[diff[0]]
        assert (a.arity, a.ret) == (b.arity, b.ret)


def test_shrink_replaces_a_binary_node_by_one_of_its_arguments():
    # PowerSign has two binary nodes: the outer mul (-> its arguments' cores
    # mul(sign_g, sign_m) or g) and the inner mul (-> exp(sign_g)·g or exp(sign_m)·g).
    parent = tree("mul(exp(mul(sign_g, sign_m)), g)")
    rng = random.Random(0)
    children = {str(tree_to_rule(shrink_mutation(parent, rng, SLOT_ROOT))) for _ in range(200)}
    assert children == {"mul(sign_g, sign_m)", "g", "mul(exp(sign_g), g)",
                        "mul(exp(sign_m), g)"}


def test_with_a_binary_root_shrink_replaces_the_root_only_by_a_binary_argument():
    # the same parent in the default space: the outer mul may only become its binary
    # argument mul(sign_g, sign_m), never the operand g
    parent = tree("mul(exp(mul(sign_g, sign_m)), g)")
    rng = random.Random(0)
    children = {str(tree_to_rule(shrink_mutation(parent, rng, SPACE))) for _ in range(200)}
    assert children == {"mul(sign_g, sign_m)", "mul(exp(sign_g), g)", "mul(exp(sign_m), g)"}
    # a root binary over two operands has nothing to shrink to
    assert shrink_mutation(tree("mul(g, m)"), rng, SPACE) is None
    assert shrink_mutation(tree("mul(g, m)"), rng, SLOT_ROOT) is not None


def test_shrink_does_not_apply_without_binary_nodes():
    assert shrink_mutation(tree("exp(g)"), random.Random(0), SPACE) is None


def test_insert_wraps_a_node_in_a_new_binary_keeping_it_whole():
    rng = random.Random(0)
    for _ in range(100):
        child = tree_to_rule(insert_mutation(tree("sqrt(g)"), rng, SPACE))
        # sqrt(b(g, u(o))) or sqrt(b(u(o), g)): the operand g was the only Bare node
        assert child.op == "sqrt" and child.n_binary == 1
        assert P("g") in child.args[0].args


def test_insert_does_not_apply_at_the_bound():
    full = tree("add(add(g, m), add(v, mul(g, m)))")
    assert insert_mutation(full, random.Random(0), SPACE) is None


def test_subtree_mutation_stays_within_the_bound():
    rng = random.Random(0)
    parent = tree("add(add(g, m), add(v, g))")      # already at the bound of 3
    for _ in range(200):
        child = tree_to_rule(subtree_mutation(parent, rng, SPACE))
        assert SPACE.contains(child)


def test_crossover_children_are_one_parent_with_a_subtree_of_the_other():
    v = Variation(SLOT_ROOT)
    rng = random.Random(0)
    a, b = P("mul(g, m)"), P("add(v, w1)")
    children = {str(v.crossover(a, b, rng)) for _ in range(400)}
    # mul(g, m) receiving a non-root subtree of add(v, w1) of the same type, and the
    # other way round; the parents themselves (add(v, w1) for mul(g, m)) never come back
    assert children == {
        "v", "w1", "mul(v, m)", "mul(w1, m)", "mul(g, v)", "mul(g, w1)",
        "mul(add(v, w1), m)", "mul(g, add(v, w1))",
        "g", "m", "add(g, w1)", "add(m, w1)", "add(v, g)", "add(v, m)",
        "add(mul(g, m), w1)", "add(v, mul(g, m))",
    }


def test_with_a_binary_root_crossover_gives_the_same_children_but_the_operand_roots():
    v = Variation(SPACE)
    rng = random.Random(0)
    a, b = P("mul(g, m)"), P("add(v, w1)")
    children = {str(v.crossover(a, b, rng)) for _ in range(400)}
    assert children == {
        "mul(v, m)", "mul(w1, m)", "mul(g, v)", "mul(g, w1)",
        "mul(add(v, w1), m)", "mul(g, add(v, w1))",
        "add(g, w1)", "add(m, w1)", "add(v, g)", "add(v, m)",
        "add(mul(g, m), w1)", "add(v, mul(g, m))",
    }
    # the operator itself never offers an operand for the root's core
    t1, t2 = tree("mul(g, m)"), tree("add(v, w1)")
    for _ in range(200):
        assert tree_to_rule(crossover(t1, t2, rng, SPACE)).op in ("mul", "add")


@pytest.mark.parametrize("space", [
    SPACE,
    SearchSpace(max_binary=1, operands=("g", "m"), unaries=("id", "exp"), binaries=("mul",)),
], ids=["full", "tiny"])
def test_no_operator_gives_a_legal_parent_an_illegal_root(space):
    """Every operator, applied directly (no re-draws), keeps a binary root binary and
    the root slot's unary the identity."""
    rng = random.Random(5)
    operators = (subtree_mutation, point_mutation, shrink_mutation, insert_mutation)
    for _ in range(300):
        parent = rule_to_tree(space.sample(rng), space)
        other = rule_to_tree(space.sample(rng), space)
        for child in [op(parent, rng, space) for op in operators] + [
                crossover(parent, other, rng, space)]:
            if child is not None:
                rule = tree_to_rule(child)
                assert child[0].name == "id" and rule.kind == "binary", rule
                assert space.contains(rule), (rule, space.violation(rule))


def test_with_a_slot_root_subtree_mutation_also_writes_operand_and_unary_roots():
    rng = random.Random(0)
    parent = tree("mul(g, m)", SLOT_ROOT)
    kinds = {tree_to_rule(subtree_mutation(parent, rng, SLOT_ROOT)).kind for _ in range(300)}
    assert kinds == {"operand", "unary", "binary"}


def test_crossover_respects_the_bound():
    rng = random.Random(0)
    t1, t2 = tree("add(add(g, m), add(v, g))"), tree("mul(mul(g, g), mul(g, g))")
    for _ in range(200):
        assert SPACE.contains(tree_to_rule(crossover(t1, t2, rng, SPACE)))


# -- Variation ----------------------------------------------------------------------------
def test_children_differ_from_their_parents():
    v = Variation(SPACE)
    rng = random.Random(3)
    powersign = KNOWN["powersign"]
    for _ in range(200):
        assert v.mutate(powersign, rng).key != powersign.key
        child = v.crossover(powersign, KNOWN["addsign"], rng)
        assert child.key not in (powersign.key, KNOWN["addsign"].key)


def test_children_avoid_rules_seen_before_when_they_can():
    v = Variation(SPACE)
    rng = random.Random(0)
    seen: dict = {}
    for _ in range(100):
        child = v.mutate(P("mul(g, m)"), rng, avoid=seen)
        assert child.key not in seen
        seen[child.key] = None


def test_variation_refuses_unknown_mutations():
    with pytest.raises(ValueError, match="unknown mutation"):
        Variation(SPACE, weights={"swap": 1.0})


@pytest.mark.parametrize("space", [
    SearchSpace(),
    SearchSpace(max_binary=2, operands=("g", "m", "sign_g", "sign_m", "1"),
                unaries=("id", "exp", "neg"), binaries=("mul", "add", "keep")),
], ids=["full", "small"])
def test_property_1000_rounds_of_crossover_and_mutation_stay_in_grammar_and_bound(space):
    """Evolve a population blindly (children replace random members), so later
    rounds vary children of children; every child must stay in the space."""
    rng = random.Random(42)
    v = Variation(space)
    pset = primitive_set(space)
    population = [space.sample(rng) for _ in range(20)]
    for _ in range(1000):
        a, b = rng.sample(population, 2)
        crossed, mutated = v.crossover(a, b, rng), v.mutate(a, rng)
        assert mutated.key != a.key
        children = [mutated]
        if crossed is not None:       # None: no child differs from both parents (a == b)
            assert crossed.key not in (a.key, b.key)
            children.append(crossed)
        for child in children:
            assert space.violation(child) is None, (child, space.violation(child))
            t = rule_to_tree(child, space)
            assert all(node.name in pset.mapping for node in t)
            assert tree_to_rule(t) == child
            population[rng.randrange(len(population))] = child
