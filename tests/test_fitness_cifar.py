"""The protocol on a slice of the real CIFAR-10 copy (1,000 train / 500 validation images).

Needs EVO_NOS_CIFAR_DIR (the `cifar_dir` fixture skips otherwise).  About 45 s on a
2-core CPU: four candidate trainings of the cpu preset's protocol, shortened to a
3-epoch final run.
"""
import pytest

from evo_nos.fitness.backend import FitnessBackend
from evo_nos.fitness.tasks import load_task
from evo_nos.core.known import resolve

pytestmark = [pytest.mark.slow, pytest.mark.cifar]
RULES = ["sgd", "adam", "powersign", "neg(g)", "w4"]


@pytest.fixture(scope="module")
def scored(cifar_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVO_NOS_CACHE", str(tmp_path_factory.mktemp("evo_nos_data")))
        task = load_task("cpu", data=f"imagefolder:{cifar_dir}", n_train=1000, n_val=500,
                         final_epochs=3)
        backend = FitnessBackend(task, seed=0, device="cpu")
        evaluations = backend.evaluate([resolve(r) for r in RULES])
    return dict(zip(RULES, evaluations))


@pytest.mark.parametrize("rule", ["sgd", "adam", "powersign"])
def test_good_optimizers_score_far_above_chance_on_cifar(scored, rule):
    ev = scored[rule]
    assert ev.status == "ok" and ev.trainings == 1
    assert ev.fitness > 0.25, ev          # 10 classes: chance is 0.1
    assert ev.fitness > 2 * scored["neg(g)"].fitness


def test_gradient_ascent_is_at_chance_on_cifar(scored):
    assert scored["neg(g)"].status == "ok"
    assert scored["neg(g)"].fitness < 0.2


def test_do_nothing_rule_is_invalid_on_cifar(scored):
    assert scored["w4"].status == "invalid" and scored["w4"].trainings == 0
