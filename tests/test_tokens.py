"""The controller's token grammar: prefix serialisation of the shared search space."""
import pytest
import torch

from evo_nos.core.known import KNOWN
from evo_nos.core.primitives import BINARY, OPERAND, PRIMITIVES, UNARY
from evo_nos.operators.space import SearchSpace
from evo_nos.operators.tokens import TokenGrammar
from evo_nos.core.rules import Rule


def names_allowed(grammar, state):
    mask = grammar.mask(state)[0]
    return {grammar.vocab[i] for i in mask.nonzero().flatten().tolist()}


def state_after(grammar, names):
    state = grammar.start(1)
    for name in names:
        state = grammar.advance(state, torch.tensor([grammar.index[name]]))
    return state


def test_vocabulary_is_the_primitive_table():
    grammar = TokenGrammar(SearchSpace())
    assert grammar.vocab == tuple(p.name for p in PRIMITIVES)
    assert grammar.n_tokens == len(PRIMITIVES)


def test_powersign_serialises_in_prefix_order_with_a_unary_token_per_slot():
    grammar = TokenGrammar(SearchSpace())
    tokens = grammar.encode(KNOWN["powersign"])   # mul(exp(mul(sign_g, sign_m)), g)
    assert grammar.names(tokens) == ["mul", "exp", "mul", "id", "sign_g", "id", "sign_m", "id", "g"]
    slot_root = TokenGrammar(SearchSpace(root="slot"))
    assert slot_root.names(slot_root.encode(KNOWN["powersign"]))[:2] == ["id", "mul"]
    assert slot_root.names(slot_root.encode(Rule.parse("sign(g)"))) == ["sign", "g"]


@pytest.mark.parametrize("root", ["binary", "slot"])
def test_known_rules_round_trip_through_tokens(root):
    space = SearchSpace(max_binary=4, root=root)
    grammar = TokenGrammar(space)
    encoded = 0
    for name, rule in KNOWN.items():
        if root == "binary" and rule.kind != BINARY:
            with pytest.raises(ValueError, match="not a binary function"):
                grammar.encode(rule)
            continue
        assert grammar.decode(grammar.encode(rule)) == rule, name
        encoded += 1
    assert encoded >= 20


def test_encode_refuses_rules_outside_the_space_and_says_why():
    grammar = TokenGrammar(SearchSpace(max_binary=1))
    with pytest.raises(ValueError, match="2 binary functions, the bound is 1"):
        grammar.encode(Rule.parse("mul(g, mul(g, g))"))
    with pytest.raises(ValueError, match="a unary function takes an operand or a binary result"):
        TokenGrammar(SearchSpace()).encode(Rule.parse("mul(exp(neg(g)), g)"))


def test_root_binary_grammar_starts_with_the_space_binaries_only():
    space = SearchSpace(binaries=("mul", "add"))
    grammar = TokenGrammar(space)
    assert names_allowed(grammar, grammar.start(1)) == {"mul", "add"}


def test_the_grammar_takes_its_root_from_the_space():
    assert TokenGrammar(SearchSpace()).root == "binary"
    slot = TokenGrammar(SearchSpace(unaries=("id", "neg"), root="slot"))
    assert slot.root == "slot"
    assert names_allowed(slot, slot.start(1)) == {"id", "neg"}       # a slot opens with a unary
    with pytest.raises(TypeError):
        TokenGrammar(SearchSpace(), root="slot")      # no root of its own to disagree with


def test_a_slot_opens_with_a_unary_and_a_unary_is_never_followed_by_a_unary():
    space = SearchSpace(operands=("g", "m"), unaries=("id", "exp"), binaries=("mul",))
    grammar = TokenGrammar(space)
    after_binary = state_after(grammar, ["mul"])
    assert names_allowed(grammar, after_binary) == {"id", "exp"}
    after_unary = state_after(grammar, ["mul", "exp"])
    assert names_allowed(grammar, after_unary) == {"g", "m", "mul"}


def test_binary_tokens_are_masked_once_the_bound_is_reached():
    space = SearchSpace(max_binary=2, operands=("g",), unaries=("id",), binaries=("mul",))
    grammar = TokenGrammar(space)
    one = state_after(grammar, ["mul", "id"])
    assert names_allowed(grammar, one) == {"g", "mul"}
    two = state_after(grammar, ["mul", "id", "mul", "id"])
    assert names_allowed(grammar, two) == {"g"}
    assert int(two.n_binary[0]) == 2


def test_the_automaton_finishes_exactly_when_the_last_slot_closes():
    grammar = TokenGrammar(SearchSpace())
    names = grammar.names(grammar.encode(KNOWN["powersign"]))
    for cut in range(1, len(names)):
        assert not bool(state_after(grammar, names[:cut]).done[0])
    done = state_after(grammar, names)
    assert bool(done.done[0]) and not bool(grammar.mask(done).any())


def test_max_length_is_the_longest_sequence_in_the_bound():
    # every slot wrapped in a non-identity unary, all binaries used: 4k + 1 tokens
    rule = Rule.parse("mul(exp(add(neg(g), exp(sub(neg(g), neg(m))))), neg(m))")
    grammar = TokenGrammar(SearchSpace(max_binary=3))
    assert len(grammar.encode(rule)) == grammar.max_length == 13
    slot_root = TokenGrammar(SearchSpace(max_binary=3, root="slot"))
    assert len(slot_root.encode(Rule.make("neg", rule))) == slot_root.max_length == 14


def test_masks_for_replays_a_batch_and_marks_the_padding():
    grammar = TokenGrammar(SearchSpace())
    a = grammar.encode(KNOWN["powersign"])                  # 9 tokens
    b = grammar.encode(Rule.parse("mul(g, g)"))             # 5 tokens
    tokens = torch.full((2, grammar.max_length), -1, dtype=torch.long)
    tokens[0, :9], tokens[1, :5] = torch.tensor(a), torch.tensor(b)
    masks, live = grammar.masks_for(tokens)
    assert live.sum(1).tolist() == [9, 5]
    assert masks.shape == (2, grammar.max_length, grammar.n_tokens)
    # each real token was allowed where it was written
    for row in range(2):
        for step in range(int(live[row].sum())):
            assert masks[row, step, tokens[row, step]]


def test_masks_for_rejects_sequences_the_grammar_forbids():
    grammar = TokenGrammar(SearchSpace(max_binary=1))
    ids = [grammar.index[n] for n in ["mul", "id", "mul", "id", "g", "id", "g", "id", "g"]]
    with pytest.raises(ValueError, match="forbids at step 2"):
        grammar.masks_for(torch.tensor([ids]))
    short = [grammar.index[n] for n in ["mul", "id", "g"]]
    with pytest.raises(ValueError, match="stops before its rule is complete"):
        grammar.masks_for(torch.tensor([short]))


def test_kinds_of_the_vocabulary_come_from_the_table():
    grammar = TokenGrammar(SearchSpace())
    assert {grammar.kind[grammar.index[p.name]] for p in PRIMITIVES if p.kind == UNARY} == {UNARY}
    assert grammar.kind[grammar.index["g"]] == OPERAND


def test_tree_context_gives_each_step_its_parent_binary_and_left_sibling():
    from evo_nos.operators.tokens import TreeContext

    grammar = TokenGrammar(SearchSpace())
    rule = Rule.parse("mul(exp(add(g, m)), g)")
    tokens = torch.tensor([grammar.encode(rule)])
    assert grammar.names(tokens[0].tolist()) == ["mul", "exp", "add", "id", "g", "id", "m",
                                                 "id", "g"]
    parents, siblings = TreeContext(grammar, 1).replay(tokens)
    none = "<pad>"                                     # grammar.names shows "none" as <pad>
    assert grammar.names(parents[0].tolist()) == [none, "mul", "mul", "add", "add", "add", "add",
                                                  "mul", "mul"]
    # the right slot of add sees g (its left content); the right slot of mul sees add
    assert grammar.names(siblings[0].tolist()) == [none, none, none, none, none, "g", "g",
                                                   "add", "add"]
