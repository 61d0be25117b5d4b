"""A stand-in fitness backend for driver tests: counts what it really trains and can
interrupt itself."""
from evo_nos.fitness.standin import StandInBackend


class CountingBackend:
    """The stand-in backend, counting the trainings it really computes; it can raise
    KeyboardInterrupt from inside ``evaluate`` (a real Ctrl+C lands the same way)."""

    def __init__(self, target="mul(exp(mul(sign_g, sign_m)), g)", interrupt_on_call=None):
        self.inner = StandInBackend(target)
        self.trained = []
        self.calls = 0
        self.interrupt_on_call = interrupt_on_call

    def evaluate(self, rules):
        self.calls += 1
        if self.calls == self.interrupt_on_call:
            raise KeyboardInterrupt
        out = self.inner.evaluate(rules)
        self.trained += [e.rule for e in out if e.trainings]
        return out

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)

    def describe(self):
        return self.inner.describe()

    @property
    def stats(self):
        return self.inner.stats
