"""``--strategy rl``: the LSTM controller trained with PPO on the shared search space."""
import dataclasses
import pickle

import pytest
import torch

from evo_nos.fitness.evaluation import Evaluation
from evo_nos.fitness.standin import FOUND, StandInBackend
from evo_nos.core.primitives import BINARY
from evo_nos.operators.space import SearchSpace
from evo_nos.core.rules import Rule
from evo_nos.search import Search, load_checkpoint
from evo_nos.strategies import make_strategy, strategy_settings
from evo_nos.strategies.rl import RLSettings, RLStrategy

from counting_backend import CountingBackend

SMALL = SearchSpace(max_binary=2, operands=("g", "m", "sign_g", "sign_m"),
                    unaries=("id", "exp", "neg"), binaries=("mul", "add"))


def ev(rule, fitness, status="ok"):
    return Evaluation(rule=str(rule), fitness=fitness, status=status,
                      trainings=int(status == "ok"))


def told(strategy, rounds, n, fitness=lambda rule: rule.complexity / 13.0):
    """``rounds`` of ask(n)/tell with a deterministic fitness; the rules asked."""
    out = []
    for _ in range(rounds):
        rules = strategy.ask(n)
        strategy.tell(rules, [ev(r, fitness(r)) for r in rules])
        out += [str(r) for r in rules]
    return out


# -- every sample is a rule of the space ------------------------------------------------------
def test_ten_thousand_samples_are_valid_rules_within_the_bound_and_report_their_log_prob():
    space = SearchSpace()                                   # everything, max_binary = 4
    strategy = RLStrategy(space, seed=0)
    told(strategy, 2, 16)                                   # move off the initial weights
    rules = strategy.ask(10_000)
    assert all(space.contains(r) for r in rules)
    assert all(r.kind == BINARY for r in rules)             # root = a binary (the default)
    assert {r.n_binary for r in rules} == {1, 2, 3, 4}
    # re-scoring every sample's tokens gives back the log-probability it was drawn with
    rescored = strategy.log_probs([seq for _, seq, _ in strategy.pending])
    reported = torch.tensor([logp for *_, logp in strategy.pending], dtype=torch.float64)
    assert torch.allclose(rescored, reported, atol=1e-5, rtol=0)
    # and so does encoding the rule afresh (the tokenisation is unique)
    for rule, (_, seq, logp) in list(zip(rules, strategy.pending))[:50]:
        assert strategy.grammar.encode(rule) == seq
        assert strategy.log_prob(rule) == pytest.approx(logp, abs=1e-5)


@pytest.mark.parametrize("settings", [
    dict(root="slot"), dict(tree_inputs=True), dict(uniform_mix=0.2), dict(risk_seeking=0.25),
])
def test_every_variant_samples_the_restricted_space_with_consistent_log_probs(settings):
    # the root is the space's: root="slot" builds the space with it, not the controller
    settings = dict(settings)
    space = dataclasses.replace(SMALL, root=settings.pop("root")) if "root" in settings else SMALL
    strategy = RLStrategy(space, seed=1, **settings)
    told(strategy, 3, 16)
    rules = strategy.ask(1000)
    assert all(space.contains(r) for r in rules)
    used = {n.op for r in rules for n in r.nodes()}
    assert used <= set(SMALL.operands) | set(SMALL.unaries) | set(SMALL.binaries)
    rescored = strategy.log_probs([seq for _, seq, _ in strategy.pending])
    reported = torch.tensor([lp for *_, lp in strategy.pending], dtype=torch.float64)
    assert torch.allclose(rescored, reported, atol=1e-5, rtol=0)
    if space.root == "slot":
        assert any(r.kind != BINARY for r in rules)         # g, exp(m), ... can be written
    else:
        assert all(r.kind == BINARY for r in rules)


def test_the_probabilities_of_all_rules_of_a_tiny_space_sum_to_one():
    # operands g, m; unaries id, neg; binary mul; at most 2 binaries: enumerate every
    # token sequence the masks allow and add up the controller's probabilities
    space = SearchSpace(max_binary=2, operands=("g", "m"), unaries=("id", "neg"),
                        binaries=("mul",))
    strategy = RLStrategy(space, seed=3)
    told(strategy, 2, 8)
    grammar = strategy.grammar
    sequences = []

    def walk(prefix, state):
        if bool(state.done[0]):
            sequences.append(prefix)
            return
        for token in grammar.mask(state)[0].nonzero().flatten().tolist():
            walk(prefix + [token], grammar.advance(state, torch.tensor([token])))

    walk([], grammar.start(1))
    rules = {grammar.decode(s) for s in sequences}
    # 1 binary: 2 unaries x 2 operands per slot, squared = 16; 2 binaries: the inner
    # binary in either slot (2) x its unary (2) x its two slots (4 x 4) x the other slot (4)
    assert len(sequences) == len(rules) == 16 + 2 * 2 * 16 * 4
    logp = strategy.log_probs(sequences)
    assert float(logp.exp().sum()) == pytest.approx(1.0, abs=1e-5)


# -- the controller and its settings ------------------------------------------------------------
def test_controller_has_the_papers_size_and_initialisation():
    strategy = RLStrategy(SearchSpace(), seed=0)
    assert strategy.controller.cell.hidden_size == 150
    weights = torch.cat([p.detach().flatten() for p in strategy.controller.parameters()])
    assert float(weights.abs().max()) <= 0.08
    assert float(weights.abs().max()) > 0.079              # uniform in ±0.08, not smaller
    assert RLSettings().ppo_clip == 0.2


def test_same_seed_same_samples_other_seed_other_samples():
    a, b, c = RLStrategy(SMALL, 5), RLStrategy(SMALL, 5), RLStrategy(SMALL, 6)
    assert told(a, 3, 8) == told(b, 3, 8)
    assert told(RLStrategy(SMALL, 5), 3, 8) != told(c, 3, 8)


def test_sampling_uses_its_own_generator_not_the_global_torch_rng():
    a, b = RLStrategy(SMALL, 5), RLStrategy(SMALL, 5)
    torch.manual_seed(0)
    first = [str(r) for r in a.ask(20)]
    torch.manual_seed(1)
    assert [str(r) for r in b.ask(20)] == first


def test_registry_builds_rl_with_any_setting():
    strategy = make_strategy("rl", SMALL, 2, lr=0.01, hidden_size=32)
    assert isinstance(strategy, RLStrategy) and strategy.controller.cell.hidden_size == 32
    assert {"lr", "ppo_clip", "entropy_coef", "hidden_size"} <= set(strategy_settings("rl"))
    assert all(isinstance(v, (int, float, str, bool)) for v in strategy.settings.values())
    with pytest.raises(ValueError, match="has no setting"):
        make_strategy("rl", SMALL, 0, learning_rate=0.01)


@pytest.mark.parametrize("bad, message", [
    (dict(baseline_decay=1.0), "baseline_decay"),
    (dict(risk_seeking=1.0), "risk_seeking"), (dict(uniform_mix=1.5), "uniform_mix"),
    (dict(ppo_epochs=0), "ppo_epochs"),
])
def test_bad_settings_are_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        RLSettings(**bad)


def test_the_root_is_the_spaces_not_an_rl_setting():
    with pytest.raises(ValueError, match="root must be"):
        SearchSpace(root="tree")
    assert "root" not in strategy_settings("rl")
    with pytest.raises(ValueError, match="SearchSpace\\(root='slot'\\)"):
        RLStrategy(SMALL, seed=0, root="slot")
    with pytest.raises(ValueError, match="no longer an rl setting"):
        RLSettings.from_dict({"root": "slot"})
    slot = dataclasses.replace(SMALL, root="slot")
    assert RLStrategy(slot, seed=0).grammar.root == "slot"


@pytest.mark.parametrize("root", ["binary", "slot"])
def test_a_checkpoint_from_when_the_root_was_an_rl_setting_still_loads(root):
    space = dataclasses.replace(SMALL, root=root)
    state = RLStrategy(space, seed=0).state_dict()
    state["settings"]["root"] = root                       # how such checkpoints looked
    del state["space"]["root"]
    RLStrategy(space, seed=0).load_state_dict(state)
    other = dataclasses.replace(SMALL, root="slot" if root == "binary" else "binary")
    with pytest.raises(ValueError, match="another search space"):
        RLStrategy(other, seed=0).load_state_dict(state)


# -- learning from tell -------------------------------------------------------------------------
@pytest.mark.parametrize("risk_seeking", [0.25, 0.0])    # default, and the paper's baseline
def test_a_ppo_update_makes_the_rewarded_rule_more_likely(risk_seeking):
    strategy = RLStrategy(SMALL, seed=4, min_batch=16, risk_seeking=risk_seeking)
    rules = strategy.ask(16)
    winner = rules[0]
    before = {str(r): strategy.log_prob(r) for r in rules}
    strategy.tell(rules, [ev(r, 1.0 if r == winner else 0.1) for r in rules])
    assert strategy.updates == 1
    assert strategy.log_prob(winner) > before[str(winner)] + 0.05
    losers = [r for r in rules if r != winner]
    assert sum(strategy.log_prob(r) - before[str(r)] for r in losers) < 0


def test_the_papers_baseline_is_a_moving_average_of_batch_rewards():
    strategy = RLStrategy(SMALL, seed=4, min_batch=4, risk_seeking=0.0)
    told(strategy, 1, 4, fitness=lambda rule: 0.2)
    assert strategy.baseline == pytest.approx(0.2)          # started at the first batch's mean
    told(strategy, 1, 4, fitness=lambda rule: 0.6)
    assert strategy.baseline == pytest.approx(0.9 * 0.2 + 0.1 * 0.6)


def test_rewards_wait_until_a_batch_is_full():
    strategy = RLStrategy(SMALL, seed=4, min_batch=8)
    for _ in range(7):
        told(strategy, 1, 1)
    assert strategy.updates == 0 and len(strategy.buffer) == 7
    told(strategy, 1, 1)
    assert strategy.updates == 1 and strategy.buffer == []


def test_cached_and_invalid_rules_still_reward_the_controller():
    strategy = RLStrategy(SMALL, seed=4, min_batch=3)
    rules = strategy.ask(3)
    strategy.tell(rules, [ev(rules[0], 0.7, "cached"), ev(rules[1], 0.0, "invalid"),
                          ev(rules[2], float("nan"), "diverged")])
    assert strategy.updates == 1
    assert strategy.history[-1]["mean_reward"] == pytest.approx(0.7 / 3)


def test_a_rule_told_without_being_asked_is_learned_if_the_controller_can_write_it():
    strategy = RLStrategy(SMALL, seed=4, min_batch=100)
    powersign = Rule.parse("mul(exp(mul(sign_g, sign_m)), g)")
    strategy.tell([powersign, Rule.parse("g")], [ev(powersign, 0.9), ev("g", 0.5)])
    # g has no binary root, so this grammar cannot write it: nothing to learn from
    assert len(strategy.buffer) == 1
    seq, logp, reward = strategy.buffer[0]
    assert strategy.grammar.decode(seq) == powersign and reward == 0.9
    assert logp == pytest.approx(strategy.log_prob(powersign), abs=1e-6)


def test_tell_needs_one_evaluation_per_rule():
    strategy = RLStrategy(SMALL, seed=0)
    rules = strategy.ask(2)
    with pytest.raises(ValueError, match="2 rules but 1 evaluations"):
        strategy.tell(rules, [ev(rules[0], 0.5)])



# -- does it learn? (stand-in fitness: resemblance to PowerSign's updates) ------------------------
TARGET = "mul(exp(mul(sign_g, sign_m)), g)"                       # PowerSign
FIND = SearchSpace(max_binary=2, operands=("g", "sign_g", "sign_m", "1"),
                   unaries=("id", "exp", "neg"), binaries=("mul", "add"))


def search(strategy, budget, batch=16):
    """The driver's loop without its per-batch checkpoint snapshots (they pickle the
    growing cache each batch, a third of the time here): batches of ``batch`` rules,
    the budget counted in child trainings, never exceeded.  Returns the trainings spent
    when the target (fitness >= 0.999) was first scored, or None."""
    backend, trainings, found = StandInBackend(TARGET), 0, None
    while trainings < budget:
        rules = strategy.ask(min(batch, budget - trainings))
        evaluations = backend.evaluate(rules)
        strategy.tell(rules, evaluations)
        for evaluation in evaluations:
            trainings += evaluation.trainings
            if found is None and evaluation.fitness >= FOUND:
                found = trainings
    return found


@pytest.fixture
def one_thread():
    """The stand-in's probes are tiny tensors: extra torch threads only cost time."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_controller_learns_and_finds_the_target_far_more_often_than_random(one_thread):
    """Budget 400 child trainings, batches of 16, seeds 0-3, default settings.

    Measured: RL found PowerSign in 3 of 4 seeds (after 203, 254 and 359 trainings),
    random sampling of the same space in 0 of 4 (over seeds 0-7: RL 4 of 8, random 0
    of 8).  A sample of ``FIND.sample`` is PowerSign or one of its 7 look-alikes (the
    arguments swapped, both signs negated) with probability 9e-5 (27 in 300,000
    draws); a 400-training random search draws ~880 rules, so it finds the target
    with probability ~8%.  The controller's mean reward per update rose from 0.02-0.07
    over its first 3 updates to 0.15-0.41 over its last 3, in every seed (70-109
    updates of 16 rules; invalid and cached rules are free, so RL drew 1,100-1,800).
    """
    found = {"rl": [], "random": []}
    for seed in range(4):
        for name in found:
            strategy = make_strategy(name, FIND, seed)
            found[name].append(search(strategy, budget=400))
            if name == "rl":
                rewards = [u["mean_reward"] for u in strategy.history]
                assert len(rewards) > 50
                assert sum(rewards[-3:]) / 3 > 2 * sum(rewards[:3]) / 3, (seed, rewards)
    hits = {name: sum(f is not None for f in runs) for name, runs in found.items()}
    assert hits["rl"] >= 2 and hits["random"] == 0, found


# -- checkpoints ----------------------------------------------------------------------------------
def test_state_dict_resumes_exactly():
    a = RLStrategy(SMALL, seed=8, min_batch=8)
    told(a, 3, 5)                              # 15 told: one update, 5 rewards waiting
    extra = a.ask(2)                           # and two asked, not yet told
    assert a.updates == 1 and len(a.buffer) == 5 and len(a.pending) == 2
    saved = pickle.dumps(a.state_dict())
    a.tell(extra, [ev(r, 0.5) for r in extra])
    after_a = told(a, 4, 5)

    b = RLStrategy(SMALL, seed=99, min_batch=8)
    b.load_state_dict(pickle.loads(saved))
    b.tell(extra, [ev(r, 0.5) for r in extra])
    assert told(b, 4, 5) == after_a
    for pa, pb in zip(a.controller.parameters(), b.controller.parameters()):
        assert torch.equal(pa, pb)
    assert a.baseline == b.baseline and a.updates == b.updates == 3 and a.buffer == b.buffer


def test_state_dict_refuses_other_settings_or_space():
    state = RLStrategy(SMALL, seed=0).state_dict()
    with pytest.raises(ValueError, match="other rl settings"):
        RLStrategy(SMALL, seed=0, lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="another search space"):
        RLStrategy(SearchSpace(), seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="strategy 'random'"):
        RLStrategy(SMALL, seed=0).load_state_dict({"name": "random"})


# -- in the search driver ------------------------------------------------------------------------
def rl(seed=0):
    return make_strategy("rl", SMALL, seed, min_batch=8)


def test_interrupt_then_resume_retrains_nothing_and_matches_an_uninterrupted_run(tmp_path):
    budget, batch = 40, 4
    reference_backend = CountingBackend()
    reference = Search(rl(), reference_backend, budget=budget, batch_size=batch,
                       progress=False).run()
    assert reference.status == "finished"

    first = CountingBackend(interrupt_on_call=6)        # Ctrl+C inside the 6th batch
    interrupted = Search(rl(), first, budget=budget, batch_size=batch, progress=False,
                         checkpoint_dir=tmp_path).run()
    assert interrupted.status == "interrupted"
    saved = load_checkpoint(tmp_path)["strategy_state"]
    assert saved["buffer"] and saved["updates"] >= 1   # mid-batch rewards are kept

    second = CountingBackend()
    strategy = rl()
    resumed = Search.resume(tmp_path, strategy, second, progress=False).run()
    assert resumed.status == "finished" and resumed.trainings == budget
    assert len(first.trained) + len(second.trained) == budget
    assert not set(first.trained) & set(second.trained)
    assert [r["rule"] for r in resumed.history] == [r["rule"] for r in reference.history]
    assert first.trained + second.trained == reference_backend.trained
    assert resumed.hall_of_fame.rows() == reference.hall_of_fame.rows()


@pytest.mark.slow
def test_smoke_search_per_strategy_lands_in_one_experiment_with_the_same_metrics(tmp_path):
    from mlflow.tracking import MlflowClient
    from mlflow_store import fresh_store

    from evo_nos.tracking import Tracker, load_search_runs, metric_history

    uri = fresh_store(tmp_path / "store")
    budget = 8
    for name, settings in (("evo", dict(population=4, tournament=2)), ("rl", dict(min_batch=4)),
                           ("random", {})):
        strategy = make_strategy(name, SMALL, 0, **settings)
        result = Search(strategy, StandInBackend("mul(exp(mul(sign_g, sign_m)), g)"),
                        budget=budget, batch_size=4, progress=False,
                        tracker=Tracker(experiment="smoke", tracking_uri=uri),
                        run_name=f"smoke-{name}").run()
        assert result.status == "finished" and result.trainings == budget
    runs = {r.tags["strategy"]: r for r in load_search_runs("smoke", uri)}
    assert set(runs) == {"evo", "rl", "random"}
    client = MlflowClient(tracking_uri=uri)
    keys = {name: set(client.get_run(r.run_id).data.metrics) for name, r in runs.items()}
    assert keys["rl"] == keys["evo"] == keys["random"]
    assert {"candidate_fitness", "best_fitness", "cache_hits", "invalid"} <= keys["rl"]
    for name, run in runs.items():
        steps = [step for step, _, _ in metric_history(run.run_id, "best_fitness", uri)]
        assert steps == sorted(steps) and steps[-1] == budget, name   # x = child trainings
    assert runs["rl"].params["strategy.risk_seeking"] == "0.25"
