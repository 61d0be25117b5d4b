"""Reference scores: the hand-designed optimizers, scored like any candidate.

Every comparison needs the known rules beside the searched ones (the paper's point is
that its rules beat SGD, momentum, Adam and RMSProp under the same protocol).  The rules
of :data:`evo_nos.core.known.REFERENCE_NAMES` are scored by the *same* fitness backend, with
the same task and the same backend seed as a search, so a reference's score is exactly
what a search with that seed would have given the rule (the backend derives every
candidate's training seed from its own seed and the rule's fingerprint).

The baselines people pick (:mod:`evo_nos.fitness.baselines`: torch's Adam, AdamW, SGD
with momentum and with Nesterov momentum, Lion) can stand beside them (``baselines``): the
real backend scores each by the same protocol -- lr sweep, final run, the task's schedule
-- and they are listed under their names (``torch-adam``, ``lion``, ...).

Each (preset, seed) is scored once and logged as one MLflow run tagged
``kind=reference`` with the tags ``preset``, ``seed`` and ``fitness_key`` (a hash of
the backend's scoring settings, see :func:`fitness_key`), a metric ``fitness.<name>``
per rule and a ``references.json`` table.  :func:`score_references` reuses such a run
when it already holds the rules asked for: a budget or a strategy does not change a
reference score, so one set serves every comparison on that preset and seed.

Command line (campaigns call :func:`score_references` themselves)::

    python -m evo_nos.references --preset cpu --data imagefolder:/data/cifar10 --seeds 0 1 2
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import pandas as pd

from evo_nos.core import tables
from evo_nos.core.known import REFERENCE_NAMES, resolve
from evo_nos.fitness.baselines import baseline_factory, is_baseline
from evo_nos.fitness.tasks import NEUTRAL_KEYS
from evo_nos.tracking import (DEFAULT_EXPERIMENT, KIND_TAG, NOTE_TAG, ReportTracker, find_runs,
                              load_table)

KIND = "reference"
TABLE = "references.json"
# the columns of ReferenceSet.to_frame() and of a reference run's references.json
COLUMNS = ("name", "rule", "fitness", "status", "best_lr", "lr_scores")
# Which settings define a score.  A backend's describe() is logged among a search's
# params (beside the search's own), so the scoring settings are picked from both by a
# positive rule: the task's fields (``task.*``) and the changed settings of the primitive
# set (``rule.*``) for the real backend, the probe and the target for the stand-in; minus
# the fields that change how a score is computed, not what it is (threads, evaluation
# batch size, pack size, the preset's name).
_SCORING_PREFIXES = ("task.", "probe_", "rule.")
_SCORING_KEYS = ("target",)
EXECUTION_KEYS = tuple(f"task.{key}" for key in NEUTRAL_KEYS)
# the references drawn as lines in reports (the others are listed in the tables)
HEADLINE = ("sgd", "momentum", "adam", "rmsprop", "signsgd", "powersign", "addsign")


def scoring_settings(described: dict) -> dict:
    """The settings that define a score, from a backend's ``describe()`` or a search
    run's params (``fitness.``-prefixed or not), with string values as MLflow keeps them."""
    if any(str(k).startswith("fitness.") for k in described):
        described = {k[len("fitness."):]: v for k, v in described.items()
                     if str(k).startswith("fitness.")}
    return {str(k): str(v) for k, v in sorted(described.items())
            if (str(k).startswith(_SCORING_PREFIXES) or k in _SCORING_KEYS)
            and k not in EXECUTION_KEYS}


def fitness_key(described: dict) -> str:
    """A short hash of :func:`scoring_settings`: equal keys, comparable scores."""
    text = json.dumps(scoring_settings(described), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]



@dataclass
class ReferenceScore:
    name: str
    rule: str
    fitness: float
    status: str
    best_lr: float | None = None
    lr_scores: dict = field(default_factory=dict)

    def row(self) -> dict:
        return {"name": self.name, "rule": self.rule, "fitness": self.fitness,
                "status": self.status, "best_lr": self.best_lr,
                "lr_scores": json.dumps({repr(float(k)): v for k, v in self.lr_scores.items()})}

    @classmethod
    def from_row(cls, row: dict) -> "ReferenceScore":
        scores = row.get("lr_scores") or "{}"
        scores = json.loads(scores) if isinstance(scores, str) else scores
        best_lr = row.get("best_lr")
        return cls(name=row["name"], rule=row["rule"], fitness=float(row["fitness"]),
                   status=row.get("status") or "ok",
                   best_lr=None if best_lr is None or _nan(best_lr) else float(best_lr),
                   lr_scores={float(k): v for k, v in scores.items()})


def _nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


@dataclass
class ReferenceSet:
    """The reference scores of one preset and seed."""

    preset: str
    seed: int
    key: str                        # fitness_key of the backend that scored them
    scores: dict                    # name -> ReferenceScore
    run_id: str | None = None       # the MLflow run holding them
    scored: list = field(default_factory=list)   # names trained now (not reused)

    def fitness(self, name: str) -> float | None:
        score = self.scores.get(name)
        return None if score is None else score.fitness

    def to_frame(self) -> pd.DataFrame:
        """The scores as a DataFrame, one row per reference (:data:`COLUMNS`;
        ``lr_scores`` is the JSON text of {lr: score}, as in references.json)."""
        return pd.DataFrame([s.row() for s in self.scores.values()], columns=list(COLUMNS))

    def markdown(self) -> str:
        """The scores as a markdown table (reference, fitness, best lr, status, rule)."""
        shown = self.to_frame()[["name", "fitness", "best_lr", "status", "rule"]]
        return tables.markdown(shown, formats={"fitness": ".4f"}, code=("rule",),
                               headers={"name": "reference", "best_lr": "best lr"})

    def table_text(self) -> str:
        lines = [f"{'reference':<14} {'fitness':>8} {'best lr':>8}  rule"]
        for row in tables.records(self.to_frame()):
            lr = "" if row["best_lr"] is None else f"{row['best_lr']:g}"
            lines.append(f"{row['name']:<14} {row['fitness']:>8.4f} {lr:>8}  {row['rule']}"
                         + ("" if row["status"] == "ok" else f"  ({row['status']})"))
        return "\n".join(lines)


def _existing(preset: str, seed: int, key: str, experiment: str,
              tracking_uri: str | None) -> tuple[str | None, dict]:
    """The newest finished reference run for (preset, seed, key) and its scores."""
    try:
        runs = find_runs(experiment, tracking_uri, kind=KIND,
                         tags={"preset": preset, "seed": str(seed), "fitness_key": key})
    except ValueError:                       # no such experiment yet
        return None, {}
    for run in reversed(runs):
        if run.status != "FINISHED":
            continue
        rows = load_table(run.run_id, TABLE, tracking_uri) or []
        return run.run_id, {r["name"]: ReferenceScore.from_row(r) for r in rows}
    return None, {}


def score_references(backend, *, preset: str, seed: int, names=REFERENCE_NAMES,
                     baselines=(), experiment: str = DEFAULT_EXPERIMENT,
                     tracking_uri: str | None = None, log: bool = True,
                     force: bool = False) -> ReferenceSet:
    """Scores of the reference rules ``names`` and the ``baselines`` under ``backend``
    (with seed ``seed``).

    Reuses the newest matching reference run; only the names it lacks are trained, and
    then a new run holding all of them is logged (unless ``log`` is False).  ``force``
    re-scores everything.
    """
    for name in names:                       # an unknown name fails before any training
        resolve(name)
    for name in baselines:
        baseline_factory(name)
    names = tuple(names) + tuple(baselines)
    if baselines and not hasattr(backend, "score_baselines"):
        raise ValueError(f"{type(backend).__name__} scores rules only: the baselines "
                         f"({', '.join(baselines)}) need the real fitness (--preset)")
    key = fitness_key(backend.describe())
    run_id, known = (None, {}) if force else _existing(preset, seed, key, experiment,
                                                       tracking_uri)
    missing = [n for n in names if n not in known]
    if not missing:
        return ReferenceSet(preset, seed, key, {n: known[n] for n in names}, run_id)
    rules = [n for n in missing if not is_baseline(n)]
    torch_ones = [n for n in missing if is_baseline(n)]
    evaluations = dict(zip(rules, backend.evaluate([resolve(n) for n in rules])))
    if torch_ones:
        evaluations.update(zip(torch_ones, backend.score_baselines(torch_ones)))
    scores = dict(known)
    for name in missing:
        ev = evaluations[name]
        fitness = float(ev.fitness) if math.isfinite(float(ev.fitness)) else 0.0
        rule = name if is_baseline(name) else resolve(name).canonical
        scores[name] = ReferenceScore(name, rule, fitness, ev.status, ev.best_lr,
                                      dict(ev.lr_scores))
    ordered = {n: scores[n] for n in list(names) + [n for n in scores if n not in names]}
    result = ReferenceSet(preset, seed, key, ordered, None, scored=missing)
    if log:
        result.run_id = _log(result, backend.describe(), experiment, tracking_uri)
    result.scores = {n: ordered[n] for n in names}
    return result


def _log(refs: ReferenceSet, described: dict, experiment: str,
         tracking_uri: str | None) -> str:
    tracker = ReportTracker(experiment=experiment, tracking_uri=tracking_uri)
    params = {"preset": refs.preset, "seed": refs.seed, "references": ",".join(refs.scores)}
    params.update({f"fitness.{k}": v for k, v in described.items()})
    markdown = refs.markdown()
    run_id = tracker.start(run_name=f"references {refs.preset} seed {refs.seed}", params=params,
                           tags={KIND_TAG: KIND, "preset": refs.preset, "seed": refs.seed,
                                 "fitness_key": refs.key, NOTE_TAG: markdown})
    tracker.log_metrics([(f"fitness.{n}", s.fitness, 0) for n, s in refs.scores.items()])
    tracker.log_table(refs.to_frame(), TABLE)
    tracker.log_text(markdown, "references.md")
    tracker.end("FINISHED")
    return run_id


def load_references(experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str | None = None, *,
                    preset: str | None = None, key: str | None = None) -> list[ReferenceSet]:
    """Every finished reference run (newest per preset, seed and key), as ReferenceSets."""
    tags = {"preset": preset} if preset else {}
    if key:
        tags["fitness_key"] = key
    try:
        runs = find_runs(experiment, tracking_uri, kind=KIND, tags=tags)
    except ValueError:
        return []
    newest: dict = {}
    for run in runs:                                      # oldest first: the last one wins
        if run.status == "FINISHED":
            newest[(run.tags.get("preset"), run.tags.get("seed"),
                    run.tags.get("fitness_key"))] = run
    out = []
    for (p, s, k), run in newest.items():
        rows = load_table(run.run_id, TABLE, tracking_uri) or []
        out.append(ReferenceSet(p, int(s), k, {r["name"]: ReferenceScore.from_row(r)
                                               for r in rows}, run.run_id))
    return out
