"""Rules as token sequences: the controller's vocabulary and its per-step masks.

The RL controller (:mod:`evo_nos.strategies.rl`) writes a rule one token at a time.
This module fixes how, so that every sequence it can write is a rule of the shared
:class:`~evo_nos.operators.space.SearchSpace` and every rule of the space has exactly
one sequence.

**Serialisation (prefix order).** With the identity elided the space's grammar is
``slot := operand | binary | unary(operand) | unary(binary)``, ``binary := b(slot, slot)``.
A slot is written as *two* decisions, a unary token (``id`` included, which the
decoder drops) and then an operand token or a binary token; a binary token is followed
by its left slot, then its right slot::

    mul(exp(mul(sign_g, sign_m)), g)      (PowerSign, root = "binary")
    mul  exp mul  id sign_g  id sign_m  id g

Because a slot always opens with exactly one unary token, ``unary(unary(x))`` cannot
be written and the encoding of a rule is unique (``id`` marks a bare slot).

**Root.** The space decides (``SearchSpace.root``; a grammar has no root setting of its
own, so it cannot disagree with the space).  ``root="binary"`` (the default) starts
with a bare binary token, as the paper's last five-token group does and as
:meth:`SearchSpace.sample` draws: the update is ``b(u1(·), u2(·))``.  ``root="slot"``
starts with a full slot, so rules such as ``g`` or ``sign(mul(...))`` can be written
too.  Either way the sequences are exactly the rules of ``SearchSpace.contains``.

**Masks.** A sequence is decoded by a tiny automaton whose state, per sample, is
``(phase, todo, n_binary)``: the phase says which kind of token comes next (``ROOT``:
a binary; ``UNARY``: a slot's unary; ``INNER``: an operand or a binary; ``DONE``),
``todo`` counts the slots still to be written after the current one, ``n_binary`` the
binary tokens so far.  The mask allows only the space's tokens of the phase's kind,
and a binary only while ``n_binary < max_binary``; an operand always closes a slot,
so every partial sequence can be completed and every finished one is inside the bound
(the approach of Deep Symbolic Regression, Petersen et al. 2021).  The state lives in
tensors, so masks for a whole batch are computed at once.

The vocabulary is the whole primitive table (so a controller's shape does not depend
on the space's subsets); the masks come from the space.  Nothing here lists a
primitive by name.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from evo_nos.core.primitives import BINARY, IDENTITY, OPERAND, PRIMITIVES, UNARY
from evo_nos.operators.space import SearchSpace
from evo_nos.core.rules import Rule

# automaton phases
ROOT, UNARY_PHASE, INNER, DONE = 0, 1, 2, 3


@dataclass
class GrammarState:
    """The automaton state of a batch of partial sequences (one row per sample)."""

    phase: torch.Tensor      # long [n]: ROOT, UNARY_PHASE, INNER or DONE
    todo: torch.Tensor       # long [n]: slots still to write after the current one
    n_binary: torch.Tensor   # long [n]: binary tokens written so far

    @property
    def done(self) -> torch.Tensor:
        return self.phase == DONE


class TokenGrammar:
    """Vocabulary, masks, encoding and decoding of rules for one search space (whose
    ``root`` decides whether a sequence starts with a binary token or a slot)."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.vocab: tuple[str, ...] = tuple(p.name for p in PRIMITIVES)
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.vocab)}
        self.kind: tuple[str, ...] = tuple(p.kind for p in PRIMITIVES)
        n = len(self.vocab)

        def allowed(names) -> torch.Tensor:
            mask = torch.zeros(n, dtype=torch.bool)
            mask[[self.index[name] for name in names]] = True
            return mask

        # kind masks restricted to the space (the only place the space's subsets enter)
        self._unary_mask = allowed(space.unaries)
        self._operand_mask = allowed(space.operands)
        self._binary_mask = allowed(space.binaries)
        self._is_binary = torch.tensor([k == BINARY for k in self.kind])
        self._is_operand = torch.tensor([k == OPERAND for k in self.kind])

    @property
    def root(self) -> str:
        """The space's root: "binary" or "slot" (read-only, never a setting of its own)."""
        return self.space.root

    # -- sizes ----------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return len(self.vocab)

    @property
    def max_length(self) -> int:
        """Longest sequence: k binaries give k binary tokens, 2k slots of one unary
        token each and k + 1 operands (4k + 1), plus the root slot's unary token."""
        return 4 * self.space.max_binary + 1 + (1 if self.root == "slot" else 0)

    # -- the automaton (batched) ----------------------------------------------------
    def start(self, n: int) -> GrammarState:
        first = ROOT if self.root == "binary" else UNARY_PHASE
        zeros = torch.zeros(n, dtype=torch.long)
        return GrammarState(torch.full((n,), first, dtype=torch.long), zeros, zeros.clone())

    def mask(self, state: GrammarState) -> torch.Tensor:
        """Bool [n, n_tokens]: the tokens each sample may write next (none when done)."""
        phase = state.phase.unsqueeze(1)
        binary_ok = (state.n_binary < self.space.max_binary).unsqueeze(1) & self._binary_mask
        return (
            ((phase == ROOT) & binary_ok)
            | ((phase == UNARY_PHASE) & self._unary_mask)
            | ((phase == INNER) & (self._operand_mask | binary_ok))
        )

    def advance(self, state: GrammarState, tokens: torch.Tensor) -> GrammarState:
        """The state after each unfinished sample writes ``tokens[i]`` (done rows and
        their tokens are ignored).  Assumes the tokens were allowed by :meth:`mask`."""
        phase, todo, n_binary = state.phase, state.todo, state.n_binary
        safe = tokens.clamp(0, self.n_tokens - 1)
        is_binary = self._is_binary[safe] & (phase != DONE)
        is_operand = self._is_operand[safe] & (phase == INNER)
        new_phase = phase.clone()
        new_todo = todo.clone()
        # a slot's unary is followed by its inner token
        new_phase[phase == UNARY_PHASE] = INNER
        # a binary opens its left slot now and leaves its right slot to do
        new_phase[is_binary] = UNARY_PHASE
        new_todo = new_todo + is_binary.long()
        # an operand closes a slot: the next pending slot, or the end
        closes_last = is_operand & (todo == 0)
        new_phase[is_operand & (todo > 0)] = UNARY_PHASE
        new_todo = new_todo - (is_operand & (todo > 0)).long()
        new_phase[closes_last] = DONE
        return GrammarState(new_phase, new_todo, n_binary + is_binary.long())

    def masks_for(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Replay padded sequences ``tokens`` (long [n, L], padding anywhere after the
        end): the mask at every step (bool [n, L, V]) and which steps are real (bool
        [n, L]).  Raises when a sequence writes a token its mask forbids or stops early."""
        n, length = tokens.shape
        state = self.start(n)
        masks, live = [], []
        for step in range(length):
            mask = self.mask(state)
            alive = ~state.done
            tok = tokens[:, step]
            in_vocab = (tok >= 0) & (tok < self.n_tokens)
            ok = mask[torch.arange(n), tok.clamp(0, self.n_tokens - 1)] & in_vocab
            bad = alive & ~ok
            if bool(bad.any()):
                row = int(bad.nonzero()[0])
                raise ValueError(f"sequence {row} writes a token its grammar mask forbids at "
                                 f"step {step}: {self.names(tokens[row].tolist())}")
            masks.append(mask)
            live.append(alive)
            state = self.advance(state, tok)
        if not bool(state.done.all()):
            row = int((~state.done).nonzero()[0])
            raise ValueError(f"sequence {row} stops before its rule is complete: "
                             f"{self.names(tokens[row].tolist())}")
        return torch.stack(masks, 1), torch.stack(live, 1)

    # -- rules <-> tokens -------------------------------------------------------------
    def names(self, tokens) -> list[str]:
        return [self.vocab[t] if 0 <= t < self.n_tokens else "<pad>" for t in tokens]

    def encode(self, rule: Rule) -> list[int]:
        """The unique token sequence of ``rule`` (ValueError, with the space's reason,
        when it is outside the space, e.g. with root="binary" a rule whose root is not a
        binary function)."""
        why = self.space.violation(rule)
        if why:
            raise ValueError(f"cannot encode {rule}: {why}")
        out: list[str] = []
        if self.root == "binary":
            self._encode_bare(rule, out)
        else:
            self._encode_slot(rule, out)
        return [self.index[name] for name in out]

    def _encode_slot(self, node: Rule, out: list[str]) -> None:
        if node.kind == UNARY:
            out.append(node.op)
            self._encode_bare(node.args[0], out)
        else:
            out.append(IDENTITY)
            self._encode_bare(node, out)

    def _encode_bare(self, node: Rule, out: list[str]) -> None:
        out.append(node.op)
        for arg in node.args:           # operands have none; binaries have two slots
            self._encode_slot(arg, out)

    def decode(self, tokens) -> Rule:
        """The rule a complete sequence writes (trailing padding is ignored)."""
        names = self.names([int(t) for t in tokens])
        pos = 0

        def take() -> str:
            nonlocal pos
            if pos >= len(names):
                raise ValueError(f"token sequence ends inside a rule: {names}")
            name = names[pos]
            pos += 1
            return name

        def bare() -> Rule:
            name = take()
            kind = self.kind[self.index[name]] if name in self.index else None
            if kind == OPERAND:
                return Rule(name)
            if kind == BINARY:
                return Rule(name, (slot(), slot()))
            raise ValueError(f"expected an operand or a binary token, got {name!r} in {names}")

        def slot() -> Rule:
            name = take()
            if name not in self.index or self.kind[self.index[name]] != UNARY:
                raise ValueError(f"expected a unary token, got {name!r} in {names}")
            return Rule.make(name, bare())

        rule = bare() if self.root == "binary" else slot()
        if any(name != "<pad>" for name in names[pos:]):
            raise ValueError(f"tokens after the end of the rule: {names}")
        return rule


class TreeContext:
    """Where in the tree the next token of each sample goes: its *parent* (the binary
    whose slot is being written) and its *sibling* (for a right slot, the token that
    opened the left slot's content: an operand or a binary).  Deep Symbolic Regression
    feeds the same two tokens to its RNN; ``NONE`` (= ``n_tokens``) marks "no parent" /
    "no left sibling".  Kept per sample in small Python stacks; call :meth:`write` with
    each step's tokens (PAD, i.e. negative, for finished samples)."""

    def __init__(self, grammar: TokenGrammar, n: int):
        self.grammar = grammar
        self.none = grammar.n_tokens
        # per sample: stack of frames [binary token, slot index 0|1, left sibling token]
        self.stacks: list[list[list[int]]] = [[] for _ in range(n)]

    def current(self) -> tuple[torch.Tensor, torch.Tensor]:
        parent, sibling = [], []
        for stack in self.stacks:
            if stack:
                binary, slot, left = stack[-1]
                parent.append(binary)
                sibling.append(left if slot == 1 else self.none)
            else:
                parent.append(self.none)
                sibling.append(self.none)
        return torch.tensor(parent, dtype=torch.long), torch.tensor(sibling, dtype=torch.long)

    def write(self, tokens) -> None:
        kind = self.grammar.kind
        tokens = tokens.tolist() if torch.is_tensor(tokens) else tokens
        for stack, token in zip(self.stacks, tokens):
            if token < 0 or kind[token] == UNARY:
                continue                                 # finished, or a slot's unary
            if stack and stack[-1][1] == 0:
                stack[-1][2] = token                     # the left slot's content
            if kind[token] == BINARY:
                stack.append([token, 0, self.none])
                continue
            # an operand closes its slot, and with it every binary it completes
            while stack:
                if stack[-1][1] == 0:
                    stack[-1][1] = 1
                    break
                stack.pop()

    def replay(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parent and sibling before every step of padded sequences, long [n, L] each."""
        parents, siblings = [], []
        for step in range(tokens.shape[1]):
            p, s = self.current()
            parents.append(p)
            siblings.append(s)
            self.write(tokens[:, step])
        return torch.stack(parents, 1), torch.stack(siblings, 1)
