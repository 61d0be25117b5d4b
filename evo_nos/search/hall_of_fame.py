"""The hall of fame: the best distinct rules of a search, and its Pareto front."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pandas as pd

from evo_nos.core import tables
from evo_nos.core.algebra import readable, readable_latex, simplify
from evo_nos.core.known import name_of
from evo_nos.core.rules import Rule
from evo_nos.fitness.evaluation import Evaluation

# the columns of HallOfFame.to_frame() (and of a search's hall_of_fame.json): ``rule`` is
# the spelling scored, ``math``/``latex`` its literal forms; ``simplified``, ``readable``,
# ``readable_latex`` and ``simplified_complexity`` are those of evo_nos.core.algebra's
# simplification of it; ``variants`` counts the distinct spellings of its behaviour seen
COLUMNS = ("rank", "rule", "name", "math", "latex", "simplified", "readable",
           "readable_latex", "fitness", "fitness_se", "seeds", "best_lr", "complexity",
           "simplified_complexity", "variants", "status")


@dataclass
class _Entry:
    evaluation: Evaluation
    order: int          # when it was first seen (earlier wins ties)
    complexity: int     # node count of the rule as written
    simple: int         # node count of its simplification (the Pareto front's complexity)
    ident: str          # its behaviour (see HallOfFame._identity)

    @property
    def spelling(self) -> tuple:
        """Smaller is simpler: the simplified complexity, then the written one."""
        return (self.simple, self.complexity)


class HallOfFame:
    """The ``size`` best distinct rules, and the best rule per complexity.

    Distinct means a different behaviour: the functional fingerprint when the backend
    gives one, else the structural key of the rule's exact simplification
    (:func:`evo_nos.core.algebra.simplify`: ``keep(g, m)``, ``mul(g, 1)`` and ``g`` are
    one rule).  The simplest spelling seen represents a behaviour (fewest nodes once
    simplified, then as written, then fitter); ``variants`` counts the distinct spellings
    seen while it is here.  Only scored evaluations count (status ok, or cached copies of
    them).  :meth:`pareto` is the front PySR shows: by increasing simplified complexity,
    each rule that beats every simpler one.

    Ranking uses the fitness, which is the mean over the rule's seeds once it has been
    re-scored: an evaluation of a behaviour already here with more seeds replaces the
    numbers of its entry (the representative rule stays).  :meth:`ranks` tells where a
    behaviour stands, for the driver's re-evaluation funnel.
    """

    def __init__(self, size: int = 10):
        if size < 1:
            raise ValueError(f"hall_of_fame_size must be >= 1, got {size}")
        self.size = size
        self._top: dict[str, _Entry] = {}
        self._by_complexity: dict[int, _Entry] = {}
        self._variants: dict[str, set] = {}     # behaviour -> the spellings seen
        self._seen = 0

    @staticmethod
    def _identity(evaluation: Evaluation, rule: Rule) -> str:
        return evaluation.fingerprint or simplify(rule).key

    def _entry(self, evaluation: Evaluation, order: int) -> _Entry:
        rule = Rule.parse(evaluation.rule)
        return _Entry(evaluation, order, rule.complexity, simplify(rule).complexity,
                      self._identity(evaluation, rule))

    def update(self, evaluation: Evaluation) -> bool:
        """Consider one evaluation; True when the hall of fame changed."""
        if not evaluation.scored or not math.isfinite(evaluation.fitness):
            return False
        entry = self._entry(evaluation, self._seen)
        self._seen += 1
        ident = entry.ident
        spellings = self._variants.setdefault(ident, set())
        changed = evaluation.rule not in spellings and (
            ident in self._top or self._on_front(ident))
        spellings.add(evaluation.rule)
        old = self._top.get(ident)
        if old is not None and evaluation.seeds > old.evaluation.seeds:
            self._rescored(ident, evaluation)
            return True
        if old is not None:
            # the same behaviour again: the simpler (then fitter) rule represents it
            if (*entry.spelling, -evaluation.fitness) < (*old.spelling, -old.evaluation.fitness):
                self._top[ident] = entry
                changed = True
        elif len(self._top) < self.size:
            self._top[ident] = entry
            changed = True
        else:
            worst_ident, worst = min(self._top.items(), key=lambda kv: self._rank_key(kv[1]))
            if self._rank_key(entry) > self._rank_key(worst):
                del self._top[worst_ident]
                self._top[ident] = entry
                changed = True
        best = self._by_complexity.get(entry.simple)
        if best is None or (entry.evaluation.fitness, -entry.complexity) > (
                best.evaluation.fitness, -best.complexity):
            self._by_complexity[entry.simple] = entry
            changed = True
        self._forget()
        return changed

    def _on_front(self, ident: str) -> bool:
        return any(e.ident == ident for e in self._by_complexity.values())

    def _forget(self) -> None:
        """Keep the spellings of the behaviours still here, only."""
        kept = set(self._top) | {e.ident for e in self._by_complexity.values()}
        for ident in [i for i in self._variants if i not in kept]:
            del self._variants[ident]

    def variants(self, evaluation: Evaluation) -> int:
        """How many distinct spellings of ``evaluation``'s behaviour were seen while it
        was in the hall of fame or on the front (1: only its own)."""
        ident = self._identity(evaluation, Rule.parse(evaluation.rule))
        return max(len(self._variants.get(ident, ())), 1)

    def _rescored(self, ident: str, evaluation: Evaluation) -> None:
        """New numbers (more seeds) for the behaviour ``ident``, under its rule."""
        for entries in (self._top, self._by_complexity):
            for entry in entries.values():
                if entry.ident == ident:
                    entry.evaluation = dataclasses.replace(evaluation,
                                                           rule=entry.evaluation.rule)

    def rank_of(self, evaluation: Evaluation) -> int | None:
        """1-based rank of ``evaluation``'s behaviour in the hall of fame (None: absent)."""
        rule = Rule.parse(evaluation.rule)
        ident = self._identity(evaluation, rule)
        entries = sorted(self._top.items(), key=lambda kv: self._rank_key(kv[1]), reverse=True)
        for rank, (key, _) in enumerate(entries, 1):
            if key == ident:
                return rank
        return None

    @staticmethod
    def _rank_key(entry: _Entry):
        # larger is better: higher fitness, then simpler, then earlier
        return (entry.evaluation.fitness, -entry.simple, -entry.complexity, -entry.order)

    @property
    def top(self) -> list[Evaluation]:
        entries = sorted(self._top.values(), key=self._rank_key, reverse=True)
        return [e.evaluation for e in entries]

    @property
    def best(self) -> Evaluation | None:
        top = self.top
        return top[0] if top else None

    def pareto(self) -> list[Evaluation]:
        """By increasing simplified complexity, each rule fitter than every simpler one."""
        front, best = [], -math.inf
        for complexity in sorted(self._by_complexity):
            entry = self._by_complexity[complexity]
            if entry.evaluation.fitness > best:
                front.append(entry.evaluation)
                best = entry.evaluation.fitness
        return front

    def __len__(self) -> int:
        return len(self._top)

    # -- views ------------------------------------------------------------------------
    def row(self, evaluation: Evaluation, rank: int | None = None) -> dict:
        """One rule's row of :meth:`to_frame` (without ``rank`` when it is None)."""
        rule = Rule.parse(evaluation.rule)
        simple = simplify(rule)
        out = {} if rank is None else {"rank": rank}
        out.update({
            "rule": rule.canonical, "name": name_of(rule) or name_of(simple) or "",
            "math": rule.math, "latex": rule.latex, "simplified": simple.canonical,
            "readable": readable(rule), "readable_latex": readable_latex(rule),
            "fitness": float(evaluation.fitness), "fitness_se": evaluation.fitness_se,
            "seeds": int(evaluation.seeds), "best_lr": evaluation.best_lr,
            "complexity": rule.complexity, "simplified_complexity": simple.complexity,
            "variants": self.variants(evaluation), "status": evaluation.status,
        })
        return out

    def to_frame(self) -> pd.DataFrame:
        """The hall of fame as a DataFrame, best first, one row per behaviour: the
        columns :data:`COLUMNS` (``best_lr`` is missing where no lr sweep chose one)."""
        return pd.DataFrame([self.row(e, i + 1) for i, e in enumerate(self.top)],
                            columns=list(COLUMNS))

    @property
    def frame(self) -> pd.DataFrame:
        """:meth:`to_frame`, read like PySR's ``equations_``."""
        return self.to_frame()

    def pareto_frame(self) -> pd.DataFrame:
        """The Pareto front (:meth:`pareto`) as a DataFrame: :data:`COLUMNS` less rank."""
        return pd.DataFrame([self.row(e) for e in self.pareto()], columns=list(COLUMNS[1:]))

    def rows(self) -> list[dict]:
        return tables.records(self.to_frame())

    def pareto_rows(self) -> list[dict]:
        return tables.records(self.pareto_frame())

    def markdown(self) -> str:
        """Both tables, read by people: the rule scored, its simplified readable form,
        the simplified complexity and the number of spellings (``variants``)."""
        top = self.to_frame()[["rank", "fitness", "fitness_se", "seeds", "rule", "readable",
                               "best_lr", "simplified_complexity", "variants", "name"]]
        front = self.pareto_frame()[["simplified_complexity", "fitness", "fitness_se",
                                     "seeds", "rule", "readable", "best_lr", "variants"]]
        shown = {"formats": {"fitness": ".4f", "fitness_se": ".4f"}, "code": ("rule",),
                 "headers": {"fitness": "fitness (mean)", "fitness_se": "± SE",
                             "simplified_complexity": "complexity"}}
        return (f"## Hall of fame (top {self.size})\n\n{tables.markdown(top, **shown)}\n"
                f"## Pareto front (best rule per complexity)\n\n"
                f"{tables.markdown(front, **shown)}")

    def table_text(self, width: int = 60) -> str:
        """A plain-text table for the terminal: ``cx`` the simplified complexity, ``var``
        the variants; a rule that simplifies is followed by ``= <readable form>``."""
        lines = [f"{'#':>3}  {'fitness':>8}  {'± SE':>7}  {'seeds':>5}  {'lr':>7}  "
                 f"{'cx':>3}  {'var':>3}  rule"]
        for row in self.rows():
            lr = "" if row["best_lr"] is None else f"{row['best_lr']:g}"
            se = "" if row["fitness_se"] is None else f"{row['fitness_se']:.4f}"
            rule = row["rule"] if len(row["rule"]) <= width else row["rule"][:width - 1] + "…"
            name = f"  ({row['name']})" if row["name"] else ""
            if row["simplified"] != row["rule"]:
                name += f"  = {row['readable']}"
            lines.append(f"{row['rank']:>3}  {row['fitness']:>8.4f}  {se:>7}  "
                         f"{row['seeds']:>5}  {lr:>7}  {row['simplified_complexity']:>3}  "
                         f"{row['variants']:>3}  {rule}{name}")
        return "\n".join(lines)

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        def dump(entries):
            return {k: (e.evaluation.to_dict(), e.order, e.complexity) for k, e in entries.items()}

        return {"size": self.size, "top": dump(self._top),
                "by_complexity": dump(self._by_complexity), "seen": self._seen,
                "variants": {k: sorted(v) for k, v in self._variants.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Load :meth:`state_dict`; also one saved before simplification (no
        ``variants``; the front keyed by written complexity): entries are re-keyed by
        today's identity and the front by simplified complexity, so the table of an old
        checkpoint reads like a new one."""
        self.size = state["size"]
        self._seen = state["seen"]
        self._top, self._by_complexity = {}, {}
        self._variants = {k: set(v) for k, v in state.get("variants", {}).items()}
        for ev, order, _ in state["top"].values():
            entry = self._entry(Evaluation.from_dict(ev), order)
            old = self._top.get(entry.ident)     # two old entries, one behaviour now
            if old is None or (*entry.spelling, -entry.evaluation.fitness) < (
                    *old.spelling, -old.evaluation.fitness):
                self._top[entry.ident] = entry
        for ev, order, _ in state["by_complexity"].values():
            entry = self._entry(Evaluation.from_dict(ev), order)
            best = self._by_complexity.get(entry.simple)
            if best is None or (entry.evaluation.fitness, -entry.complexity) > (
                    best.evaluation.fitness, -best.complexity):
                self._by_complexity[entry.simple] = entry
        for entry in [*self._top.values(), *self._by_complexity.values()]:
            self._variants.setdefault(entry.ident, set()).add(entry.evaluation.rule)
        self._forget()
