"""FitnessBackend on the smoke preset: scores, screening, cache, checkpoints, parallelism.

The smoke preset is synthetic 10-class data (chance = 0.1); one candidate trains in
about a second.  The batch below is scored once per module and shared by the tests.
"""
import hashlib
import json
import pickle

import joblib
import pytest

from evo_nos.fitness.backend import FitnessBackend, candidate_seed
from evo_nos.fitness.evaluation import Evaluation
from evo_nos.fitness.tasks import DATA_KEYS, NEUTRAL_KEYS, TRANSFER_KEYS, load_task
from evo_nos.core.known import KNOWN
from evo_nos.core.rules import Rule
from evo_nos.experiments.references import fitness_key

OVERFLOW = "exp(div(sign_g, sqrt(g)))"   # finite on the probe, overflows in training
BATCH = ["sgd", "mul(g, 1)", "adam", "powersign", "neg(g)", "w4", "clip5(sub(g, g))",
         OVERFLOW, "sgd"]
PARALLEL = ["neg(g)", "powersign"]   # one training per worker: keeps the test short


@pytest.fixture(scope="module")
def scored():
    backend = FitnessBackend("smoke", seed=0, device="cpu")
    evaluations = backend.evaluate([KNOWN.get(r) or Rule.parse(r) for r in BATCH])
    return backend, dict(zip(range(len(BATCH)), evaluations))


def _serial(scored, rule):
    return scored[1][BATCH.index(rule)]


def test_results_come_back_in_order_as_evaluations(scored):
    _, evs = scored
    assert [evs[i].rule for i in range(len(BATCH))] == [
        (KNOWN.get(r) or Rule.parse(r)).canonical for r in BATCH]
    assert all(isinstance(e, Evaluation) for e in evs.values())


@pytest.mark.parametrize("rule", ["sgd", "adam", "powersign"])
def test_good_optimizers_score_far_above_chance(scored, rule):
    ev = _serial(scored, rule)
    assert ev.status == "ok" and ev.trainings == 1
    assert ev.fitness > 0.6, ev            # chance is 0.1
    assert set(ev.lr_scores) == set(load_task("smoke").lrs)
    assert ev.best_lr in ev.lr_scores


def test_gradient_ascent_scores_at_chance(scored):
    ev = _serial(scored, "neg(g)")
    assert ev.status == "ok"
    # an untrained net on 500 validation images lands near 0.1 (± its init's luck)
    assert ev.fitness < 0.25
    assert ev.fitness < _serial(scored, "sgd").fitness - 0.4


@pytest.mark.parametrize("rule, reason", [("w4", "depend on the gradient"),
                                          ("clip5(sub(g, g))", "zero")])
def test_do_nothing_rules_are_invalid_and_cost_nothing(scored, rule, reason):
    ev = _serial(scored, rule)
    assert ev.status == "invalid" and ev.fitness == 0.0 and ev.trainings == 0
    assert reason in ev.reason


def test_overflowing_rule_is_diverged_without_crashing(scored):
    ev = _serial(scored, OVERFLOW)
    assert ev.status == "diverged" and ev.fitness == 0.0 and ev.trainings == 1
    assert all(score == 0.0 for score in ev.lr_scores.values())


def test_behaviourally_identical_rules_in_one_batch_train_once(scored):
    _, evs = scored
    first, same = evs[0], evs[1]                        # g, then mul(g, 1)
    assert first.status == "ok" and same.status == "cached" and same.trainings == 0
    assert same.fitness == first.fitness and same.lr_scores == first.lr_scores
    assert same.fingerprint == first.fingerprint
    assert evs[8].status == "cached"                    # sgd again, same batch


def test_stats_count_trainings_hits_and_invalid(scored):
    backend, _ = scored
    s = backend.stats
    assert (s["evaluated"], s["trainings"], s["cache_hits"], s["invalid"], s["diverged"]) == \
        (9, 5, 2, 2, 1)


def test_cache_hits_across_batches_cost_nothing(scored):
    backend, evs = scored
    before = dict(backend.stats)
    (ev,) = backend.evaluate([Rule.parse("mul(exp(mul(sign_m, sign_g)), g)")])
    assert ev.status == "cached" and ev.trainings == 0
    assert ev.fitness == _serial(scored, "powersign").fitness
    assert backend.stats["trainings"] == before["trainings"]
    assert backend.stats["cache_hits"] == before["cache_hits"] + 1


def test_same_rule_and_seed_give_the_same_fitness_twice(scored):
    again = FitnessBackend("smoke", seed=0, device="cpu").evaluate([KNOWN["sgd"]])[0]
    first = _serial(scored, "sgd")
    assert again.status == "ok"
    assert (again.fitness, again.lr_scores) == (first.fitness, first.lr_scores)


def test_candidate_seed_is_stable_and_depends_on_backend_seed_and_fingerprint():
    assert candidate_seed(0, "abc") == candidate_seed(0, "abc")
    assert len({candidate_seed(0, "abc"), candidate_seed(1, "abc"),
                candidate_seed(0, "abd")}) == 3


def test_state_dict_round_trips_through_pickle_and_skips_retraining(scored):
    backend, _ = scored
    state = pickle.loads(pickle.dumps(backend.state_dict()))
    fresh = FitnessBackend("smoke", seed=0, device="cpu")
    fresh.load_state_dict(state)
    assert fresh.stats == backend.stats
    ev = fresh.evaluate([KNOWN["adam"]])[0]
    assert ev.status == "cached" and ev.fitness == _serial(scored, "adam").fitness


def test_loading_a_cache_scored_under_other_settings_is_refused(scored):
    backend, _ = scored
    other = FitnessBackend(load_task("smoke", final_epochs=3), seed=0, device="cpu")
    with pytest.raises(ValueError, match="final_epochs"):
        other.load_state_dict(backend.state_dict())
    with pytest.raises(ValueError, match="seed"):
        FitnessBackend("smoke", seed=1, device="cpu").load_state_dict(backend.state_dict())


def test_describe_is_flat_scalars(scored):
    backend, _ = scored
    params = backend.describe()
    assert params["task.name"] == "smoke" and params["fitness_seed"] == 0
    assert params["task.lrs"] == "1e-05,0.0001,0.001,0.01,0.1,1"
    assert all(isinstance(v, (str, int, float, bool)) for v in params.values())


# The task description (checkpoints, in this order) and the fitness key (MLflow, the
# references) of each preset, as searches before the fields declared their kind wrote
# them: old checkpoints and caches must keep matching.
KEYS = {("smoke", "", ()): ("23ee7f999646b2b2", "17fb532119b5"),
        ("cpu", "", ()): ("c070c645369d5237", "0c377bf6aa5e"),
        ("fast", "", ()): ("e7611a6777223ab2", "c583f20b81a3"),
        ("nos", "", ()): ("da451e995728ac70", "78ae55ee17ff"),
        ("quick", "transfer", ()): ("b4bb9b76076db15e", "3b6f06cff53d"),
        ("cpu", "transfer", ()): ("005480d25163eba5", "dc2b0d2d5d38"),
        ("gpu", "transfer", ()): ("6fb9f75713f2586c", "d0f7ba264b07"),
        ("smoke", "", (("pack", 8),)): ("37fdba5e677f4801", "17fb532119b5"),
        ("smoke", "", (("n_test", 100),)): ("ca85d426b650a8cc", "a38b1bbed522"),
        ("smoke", "", (("threads", 2), ("eval_batch_size", 500))):
            ("4fec4886c206b8e3", "17fb532119b5")}


@pytest.mark.parametrize("preset, group, overrides", list(KEYS))
def test_task_descriptions_and_fitness_keys_are_those_of_old_searches(preset, group,
                                                                      overrides):
    task = load_task(preset, group=group, **dict(overrides))
    described = hashlib.sha256(json.dumps(task.described()).encode()).hexdigest()[:16]
    key = fitness_key(FitnessBackend(task, device="cpu").describe())
    assert (described, key) == KEYS[preset, group, overrides]


def test_the_kinds_of_task_fields_are_declared_on_them():
    assert set(NEUTRAL_KEYS) == {"name", "threads", "eval_batch_size", "pack"}
    assert DATA_KEYS == ("data", "n_train", "n_val", "n_test", "image_size", "n_classes",
                         "data_seed", "translate", "flip", "channels_last")
    assert set(TRANSFER_KEYS) == {"model", "blocks", "n_test"}


def _assert_same_scores(parallel, scored):
    for ev in parallel:
        serial = next(e for e in scored[1].values() if e.rule == ev.rule and e.trainings)
        assert (ev.status, ev.fitness, ev.best_lr, ev.lr_scores, ev.steps) == \
            (serial.status, serial.fitness, serial.best_lr, serial.lr_scores, serial.steps)


@pytest.mark.slow
def test_loky_with_two_workers_gives_the_serial_evaluations(scored):
    backend = FitnessBackend("smoke", seed=0, n_jobs=2, device="cpu")
    with joblib.parallel_config(backend="loky"):
        evs = backend.evaluate([KNOWN[r] if r in KNOWN else Rule.parse(r) for r in PARALLEL])
    assert all(e.trainings == 1 for e in evs)
    _assert_same_scores(evs, scored)


@pytest.mark.slow
def test_batch_order_does_not_change_scores(scored):
    reversed_batch = [KNOWN[r] if r in KNOWN else Rule.parse(r) for r in PARALLEL[::-1]]
    evs = FitnessBackend("smoke", seed=0, n_jobs=1, device="cpu").evaluate(reversed_batch)
    _assert_same_scores(evs, scored)


def _loaded_datasets():
    from evo_nos.fitness import workers
    return len(workers._WORKER_DATA)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_serial_evaluations(scored):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        backend = FitnessBackend("smoke", seed=0, n_jobs=2, device="cpu")
        with joblib.parallel_config(backend="dask"):
            evs = backend.evaluate([KNOWN[r] if r in KNOWN else Rule.parse(r)
                                    for r in PARALLEL])
        # the trainings really ran in the cluster's worker processes: they loaded the data
        loaded = client.run(_loaded_datasets)
        assert sum(loaded.values()) >= 1
    assert all(e.trainings == 1 for e in evs)
    _assert_same_scores(evs, scored)
