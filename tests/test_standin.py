"""The stand-in fitness's two cache rules."""
import pytest

from evo_nos.core.known import resolve
from evo_nos.fitness.standin import StandInBackend


def test_behaviour_cache_scores_a_neutral_variant_once():
    backend = StandInBackend("powersign", cache="behaviour")
    first, variant = backend.evaluate([resolve("g"), resolve("keep(g, exp(m))")])
    assert (first.status, first.trainings) == ("ok", 1)
    assert (variant.status, variant.trainings) == ("cached", 0)
    assert variant.fitness == first.fitness
    assert backend.stats["trainings"] == 1 and backend.stats["cache_hits"] == 1


def test_structure_cache_trains_a_neutral_variant_again():
    backend = StandInBackend("powersign")
    first, variant = backend.evaluate([resolve("g"), resolve("keep(g, exp(m))")])
    assert (first.status, variant.status) == ("ok", "ok")
    assert backend.stats["trainings"] == 2


def test_unknown_cache_rule_is_refused():
    with pytest.raises(ValueError, match="'structure' or 'behaviour'"):
        StandInBackend("powersign", cache="name")
