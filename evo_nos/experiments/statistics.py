"""Bootstrap confidence intervals and the probability of improvement, for every report.

The one place where :mod:`evo_nos.experiments` computes an interval: the head-to-head
report (:mod:`evo_nos.experiments.report`) and the fidelity summary
(:mod:`evo_nos.experiments.fidelity`) both draw theirs from :func:`bootstrap_interval`.

Contract:

* an :class:`Interval` is a statistic, its confidence interval (``low``/``high`` NaN:
  none) and how it was got (:data:`BCA`, :data:`PERCENTILE`, :data:`NO_CI`);
* intervals are ``scipy.stats.bootstrap`` intervals drawn from a fixed seed
  (:data:`BOOTSTRAP_SEED` unless given), so the same data give the same interval;
* independent samples (each resampled on its own) get a BCa interval when every sample
  has at least 3 values and BCa is defined, else the percentile interval; a sample of
  fewer than 2 values gets none;
* paired samples (aligned observations, resampled together) get the percentile interval
  of the resamples on which the statistic is defined;
* :func:`probability_of_improvement` is rliable's P(X > Y) + 1/2 P(X = Y) over all pairs
  of values (the Mann-Whitney U over n*m), :func:`improvement_interval` the same with its
  bootstrap interval over independently resampled X and Y.

Non-finite values (and ``None``) are dropped from independent samples; nothing here
reads or writes files.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95                      # of every interval in the report
RESAMPLES = 10_000                     # bootstrap resamples per interval
BOOTSTRAP_SEED = 0                     # every interval draws from this seed: reproducible
BCA, PERCENTILE, NO_CI = "BCa", "percentile", "none"     # Interval.method


def finite_or_none(x):
    """``x``, or None where it is a non-finite float (JSON has no NaN)."""
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def mean_std(values) -> tuple[float, float]:
    """Mean and sample std (ddof 1; 0 for one value) of the finite values; NaN, NaN
    for none (``None`` and non-finite values are dropped)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


@dataclass(frozen=True)
class Interval:
    """A statistic and its bootstrap confidence interval (``low``/``high`` NaN: none)."""

    estimate: float
    low: float
    high: float
    method: str          # BCA, PERCENTILE (the fallback), NO_CI (too few values)
    sizes: tuple = ()    # the sample sizes it came from

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def overlaps(self, other: "Interval") -> bool:
        return self.low <= other.high and other.low <= self.high

    def contains(self, value: float) -> bool:
        return self.defined and self.low <= value <= self.high

    def mirrored(self) -> "Interval":
        """The interval of ``1 - statistic`` (P(Y > X) from P(X > Y))."""
        return Interval(1.0 - self.estimate, 1.0 - self.high, 1.0 - self.low, self.method,
                        tuple(reversed(self.sizes)))

    def as_dict(self) -> dict:
        return {"estimate": finite_or_none(self.estimate), "ci_low": finite_or_none(self.low),
                "ci_high": finite_or_none(self.high), "ci_method": self.method}


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def bootstrap_interval(samples, statistic=_mean, *, paired: bool = False, min_size: int = 2,
                       confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> Interval:
    """``statistic`` of ``samples`` (a sequence of 1-d samples) with its bootstrap
    ``confidence`` interval.  Every call draws from ``seed``: the same data give the same
    interval.  With a sample of fewer than ``min_size`` values, or an undefined (NaN)
    statistic, there is no interval (NaN, :data:`NO_CI`).

    Unpaired (the default): non-finite values are dropped, each sample is resampled on its
    own, and ``statistic(*samples, axis=-1)`` must be vectorized.  BCa when every sample
    has at least 3 values and BCa is defined; else the percentile interval (a degenerate
    bootstrap distribution, all resamples equal, gives the point itself).

    ``paired``: the samples are aligned observations (same length, kept whole: a
    non-finite value stays and the statistic decides), resampled together by observation;
    ``statistic(*resample)`` is called on each resample (it need not be vectorized) and
    may be undefined on some (a rank correlation of tied values): those are left out, and
    the interval is the percentile interval of the rest (none when no resample is
    defined)."""
    if paired:
        data = [np.asarray(s, dtype=float).ravel() for s in samples]
    else:
        data = [np.asarray([v for v in np.asarray(s, dtype=float).ravel() if math.isfinite(v)])
                for s in samples]
    sizes = tuple(len(d) for d in data)
    if min(sizes, default=0) == 0:
        return Interval(math.nan, math.nan, math.nan, NO_CI, sizes)
    estimate = float(statistic(*data) if paired else statistic(*data, axis=-1))
    if min(sizes) < min_size or not math.isfinite(estimate):
        return Interval(estimate, math.nan, math.nan, NO_CI, sizes)

    def run(method: str):
        with warnings.catch_warnings():          # BCa on degenerate data: NaN, warned
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            return stats.bootstrap(data, statistic, n_resamples=resamples,
                                   vectorized=not paired, paired=paired,
                                   confidence_level=confidence, method=method,
                                   rng=np.random.default_rng(seed))

    if paired:
        values = run(PERCENTILE).bootstrap_distribution
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return Interval(estimate, math.nan, math.nan, NO_CI, sizes)
        tail = (100 - 100 * confidence) / 2      # in percent: 2.5 for 95%
        low, high = np.percentile(values, [tail, 100 - tail])
        return Interval(estimate, float(low), float(high), PERCENTILE, sizes)
    if min(sizes) >= 3:
        ci = run(BCA).confidence_interval
        low, high = float(ci.low), float(ci.high)
        if math.isfinite(low) and math.isfinite(high) and low < high:
            return Interval(estimate, low, high, BCA, sizes)
    ci = run(PERCENTILE).confidence_interval
    low, high = float(ci.low), float(ci.high)
    if low == high:                               # every resample gave the same value
        low = high = estimate
    return Interval(estimate, low, high, PERCENTILE, sizes)


def _improvement(x, y, axis=-1):
    """P(X > Y) + ½·P(X = Y) over all pairs (vectorized along ``axis``)."""
    x, y = np.moveaxis(np.asarray(x), axis, -1), np.moveaxis(np.asarray(y), axis, -1)
    diff = x[..., :, None] - y[..., None, :]
    wins = (diff > 0).sum(axis=(-2, -1)) + 0.5 * (diff == 0).sum(axis=(-2, -1))
    return wins / (x.shape[-1] * y.shape[-1])


def probability_of_improvement(x, y) -> float:
    """rliable's probability of improvement of X over Y: P(X > Y) + ½·P(X = Y) over all
    n·m pairs of values, i.e. the Mann-Whitney U statistic of X over n·m (NaN if a
    sample is empty; non-finite values are dropped)."""
    x = [v for v in x if v is not None and math.isfinite(v)]
    y = [v for v in y if v is not None and math.isfinite(v)]
    if not x or not y:
        return math.nan
    return float(_improvement(np.asarray(x, dtype=float), np.asarray(y, dtype=float)))


def improvement_interval(x, y, **kwargs) -> Interval:
    """:func:`probability_of_improvement` of X over Y with its bootstrap interval (the
    seeds of X and of Y resampled independently)."""
    x = [v for v in x if v is not None and math.isfinite(v)]
    y = [v for v in y if v is not None and math.isfinite(v)]
    return bootstrap_interval((x, y), _improvement, **kwargs)
