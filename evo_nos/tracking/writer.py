"""MLflow tracking of searches: everything evo_nos writes to MLflow.  This module,
``store`` (where runs go) and ``reader`` (runs back as plain data) are the only modules
of evo_nos that import mlflow.

Where runs go.  The tracking URI is ``tracking_uri`` if given, else
``$MLFLOW_TRACKING_URI``, else MLflow's own default (SQLite ``mlflow.db`` in the working
directory), so a plain ``mlflow ui`` started in the same folder shows the runs.  The
experiment (``evo_nos`` by default) is created with an explicit artifact location: an
absolute ``mlartifacts/`` folder beside the SQLite file (MLflow would otherwise put
artifacts under whatever directory the process happened to start in).

The experiment is tagged ``mlflow.experimentKind = custom_model_development`` (created
so, or tagged when a Tracker opens it): the UI of earlier MLflow 3 releases reads it to
open the experiment in its model-training view (runs table and metric charts) rather
than its GenAI view.  MLflow 3.17's UI picks the view from its own GenAI / Model
training switch instead (kept per browser, GenAI at first), which the
``?workflowType=machine_learning`` of :meth:`Tracker.ui_url`'s links sets.

What a search logs.  One parent run per search, named ``--run-name`` when given, else
:func:`default_run_name` (``<strategy>-<preset>-seed<S>-<YYYYmmdd-HHMMSS>``, with ``-2``,
``-3`` ... added when the experiment already has a run of that name), so no two searches
share a name in the runs table or a chart legend:

* params (:meth:`Tracker.search_params`): strategy, seed, preset and its settings, the
  space, the strategy's settings, the search's own (batch size, funnel, ...), what the
  backend describes;
* tags: ``strategy``, ``budget`` (a param could not grow with a resumed search),
  ``preset``, ``best_rule``/``best_fitness`` (kept current), and at
  the end ``stop_reason`` and the description (``mlflow.note.content``): the best rule
  in its readable form, the one-line :func:`protocol_note` (what fitness is: the final
  run's epochs against the sweep's, from the task's params) and the hall of fame;
* metrics, all with ``step`` = the compute spent so far (optimizer steps of child
  training, or child trainings with a backend that does not count steps; the param
  ``steps_per_training`` converts) so every strategy shares one x-axis:
  ``best_fitness`` (the hall of fame's best mean: the run's headline, logged first so
  the metrics table lists it at the top, and at the end equal to the hall of fame's
  best), ``candidate_fitness`` (every candidate), ``compute`` (in child trainings),
  ``evaluations``, ``cache_hits``, ``invalid``, ``diverged``, ``hurdled``, ``rescored``,
  ``candidates_per_min``, ``final_trainings``.  Timestamps only grow within a Tracker,
  so of two values at one step the later one is the run's latest;
* artifacts at the end (also when interrupted): ``hall_of_fame.json`` (a table of
  :meth:`HallOfFame.to_frame <evo_nos.search.HallOfFame.to_frame>`: rank, rule, name,
  math, latex, simplified, readable, readable_latex, fitness (the mean over seeds),
  fitness_se, seeds, best_lr, complexity, simplified_complexity, variants, status) and
  the same as
  ``hall_of_fame.csv``, ``pareto_front.json``, ``hall_of_fame.md``, ``evaluations.json``
  (every candidate), ``best_fitness.png``, and the best rule exported as
  ``best_optimizer/<Class>.py`` plus its JSON spec;
* one nested child run per hall-of-fame member (finished searches), named ``#<rank>
  <name or rule>``, with its rule, its fitness and its score at every learning rate of
  the sweep (``score_lr_<lr>``), and a description: its readable form and the
  :func:`protocol_note`.  They are created from the last rank to the first, each
  starting later than the one before, so MLflow's default order (newest first) lists
  #1 first.

An interrupted search's run is marked KILLED; :meth:`Tracker.resume` reopens the same
run (its params are not logged again).  Only the driver process talks to MLflow.
"""
from __future__ import annotations

import functools
import json
import math
import time
from urllib.parse import urlparse

import pandas as pd
from matplotlib.figure import Figure   # no pyplot: no global figure state or GUI
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from evo_nos.optim.export import SearchOrigin, default_class_name, export_source, export_spec
from evo_nos.search import Search, SearchResult
from evo_nos.tracking.reader import table_rows
from evo_nos.tracking.store import (DEFAULT_EXPERIMENT, EXPERIMENT_KIND, EXPERIMENT_KIND_TAG,
                                    NOTE_TAG, PARENT_TAG, SEARCH_ID_TAG, TRAINING_VIEW,
                                    UI_ADDRESS, TrackingError,
                                    default_artifact_location, default_tracking_uri,
                                    first_line, open_client)

_BATCH = 100          # params / tags per log_batch call (MLflow's limit)
_METRIC_BATCH = 1000  # metrics per log_batch call (MLflow's limit)
HEADLINE = "best_fitness"   # a search's headline metric: its hall of fame's best so far


def _store_errors(method):
    """Turn what a failing store raises (MLflow's errors, a read-only artifact folder)
    into one :class:`TrackingError` naming the store."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (MlflowException, OSError) as err:
            raise TrackingError(f"the MLflow store {self.tracking_uri} refused a write "
                                f"({first_line(err)})") from err
    return wrapper


def _param_value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(
        value, (list, dict)) else str(value)
    return text[:6000]


def default_run_name(tags: dict, params: dict, when: float | None = None) -> str:
    """``<strategy>-<preset>-seed<S>-<YYYYmmdd-HHMMSS>`` (local time ``when``, default
    now) from a search's tags and params; parts it lacks are left out."""
    parts = [str(tags[key]).replace(" ", "_") for key in ("strategy", "preset")
             if tags.get(key)]
    if params.get("seed") is not None:
        parts.append(f"seed{params['seed']}")
    parts.append(time.strftime("%Y%m%d-%H%M%S", time.localtime(when)))
    return "-".join(parts)[:250]


def _epochs(value) -> str:
    count = float(value)
    return f"{count:g} epoch{'' if count == 1 else 's'}"


def protocol_note(params: dict) -> str:
    """One line on what a search's fitness is, from its task's params (``task.lrs``,
    ``task.sweep_epochs``, ``task.final_epochs``); empty for a backend without them."""
    sweep, final = params.get("task.sweep_epochs"), params.get("task.final_epochs")
    if sweep is None or final is None:
        return ""
    lrs = [lr.strip() for lr in str(params.get("task.lrs", "")).split(",") if lr.strip()]
    grid = f"each of {len(lrs)} learning rates ({', '.join(lrs)})" if lrs else \
        "each learning rate of the grid"
    lower = ", so they are usually below it" if float(final) > float(sweep) else ""
    return (f"**Fitness** = validation accuracy after the final run, {_epochs(final)} at the "
            f"sweep's best learning rate (mean over the seeds scored); the sweep trains "
            f"{_epochs(sweep)} at {grid}: those are the `score_lr_*` scores{lower}.")


class Tracker:
    """Logs one search to MLflow through ``MlflowClient`` (no global active run)."""

    def __init__(self, experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str | None = None,
                 artifact_location: str | None = None):
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.client = open_client(self.tracking_uri)
        self.experiment_name = experiment
        self.artifact_location = artifact_location or default_artifact_location(
            self.tracking_uri)
        self.experiment_id = self._experiment()
        self.run_id: str | None = None
        # the run's name, params and tags as the store holds them: logged by start(), or
        # read by resume() (kept current by set_tags())
        self.run_name: str | None = None
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self._last_ms = 0           # the latest timestamp this Tracker gave (see _clock)

    def _clock(self, count: int = 1) -> int:
        """The first of ``count`` millisecond timestamps, each after every one this
        Tracker gave before (MLflow's latest value of a metric at one step is the one
        with the latest timestamp; two batches may come within a millisecond)."""
        now = max(int(time.time() * 1000), self._last_ms + 1)
        self._last_ms = now + max(count, 1) - 1
        return now

    @_store_errors
    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is None:
            try:
                return self.client.create_experiment(
                    self.experiment_name, artifact_location=self.artifact_location,
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            except MlflowException:
                found = self.client.get_experiment_by_name(self.experiment_name)  # a race
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            raise ValueError(f"MLflow experiment {self.experiment_name!r} is deleted in "
                             f"{self.tracking_uri}: restore it (mlflow experiments restore "
                             f"--experiment-id {found.experiment_id}) or choose another "
                             "--experiment")
        if found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:   # made before, or by hand
            self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG,
                                           EXPERIMENT_KIND)
        return found.experiment_id

    @property
    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {self.tracking_uri}"

    def ui_url(self, run_id: str | None = None) -> str:
        """The page of the experiment (or of run ``run_id``) in MLflow's model-training
        view: on the tracking server, else where :attr:`ui_command` serves it."""
        server = urlparse(self.tracking_uri).scheme in ("http", "https")
        base = self.tracking_uri.rstrip("/") if server else UI_ADDRESS
        page = f"#/experiments/{self.experiment_id}" + (f"/runs/{run_id}" if run_id else "")
        return f"{base}/{page}?{TRAINING_VIEW}"

    # -- what a search logs -------------------------------------------------------------
    @staticmethod
    def search_params(search: Search) -> dict:
        """A search's params, flat (MLflow params are one level): its own settings, its
        strategy's (``strategy.<key>``), its space's (``space.<key>``, lists joined by
        commas), what its backend describes, then its ``config``; None values left out.
        The budget is a tag (:meth:`search_tags`): a resumed search may grow it."""
        params = {"strategy": search.strategy.name,
                  "batch_size": search.batch_size, "time_limit": search.time_limit,
                  "hall_of_fame_size": search.hall_of_fame.size,
                  "free_limit": search.free_limit,
                  "funnel_top": search.funnel_top, "funnel_seeds": search.funnel_seeds,
                  "final_top": search.final_top, "final_seeds": search.final_seeds,
                  "steps_per_training": search.unit}
        for key, value in getattr(search.strategy, "settings", {}).items():
            params[f"strategy.{key}"] = value
        space = getattr(search.strategy, "space", None)
        if space is not None:
            for key, value in space.as_dict().items():
                params[f"space.{key}"] = ",".join(value) if isinstance(value, list) else value
        for key, value in search.backend.describe().items():
            params[key] = value
        params.update(search.config)
        return {k: v for k, v in params.items() if v is not None}

    @staticmethod
    def search_tags(search: Search) -> dict:
        """A search's first tags: its strategy, its budget and its preset (if any)."""
        tags = {"strategy": search.strategy.name, "budget": search.budget}
        if "preset" in search.config:
            tags["preset"] = search.config["preset"]
        return tags

    # -- run lifecycle ------------------------------------------------------------------
    @_store_errors
    def start(self, *, run_name: str | None = None, params: dict | None = None,
              tags: dict | None = None, search_id: str | None = None) -> str:
        """Create the parent run of a search; returns its run id.  ``search_id`` (tagged)
        lets :meth:`find_search` find the run before its id was saved anywhere.  Without
        ``run_name`` the run is named :func:`default_run_name`, made unique."""
        tags = {k: str(v) for k, v in (tags or {}).items()}
        if search_id:
            tags[SEARCH_ID_TAG] = search_id
        name = run_name or self._unused_name(default_run_name(tags, params or {}))
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags,
                                     start_time=self._clock())
        self.run_id, self.run_name, self.tags, self.params = run.info.run_id, name, tags, {}
        items = [Param(k, _param_value(v)) for k, v in (params or {}).items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + _BATCH])
            self.params.update((p.key, p.value) for p in items[i:i + _BATCH])
        return self.run_id

    def _unused_name(self, name: str) -> str:
        """``name``, or ``name-2``, ``name-3`` ... : the first no run of the experiment has."""
        candidate, n = name, 1
        while True:
            quoted = candidate.replace("'", "\\'")
            if not self.client.search_runs([self.experiment_id], max_results=1,
                                           filter_string=f"attributes.run_name = '{quoted}'"):
                return candidate
            n += 1
            candidate = f"{name}-{n}"

    @_store_errors
    def resume(self, run_id: str) -> None:
        """Reopen the run of an interrupted search (same run id, status RUNNING)."""
        try:
            run = self.client.get_run(run_id)
        except MlflowException as err:
            raise ValueError(f"MLflow run {run_id} is not in {self.tracking_uri}: resume with "
                             "the same MLFLOW_TRACKING_URI / working directory") from err
        if run.info.experiment_id != self.experiment_id:
            self.experiment_id = run.info.experiment_id
        self.run_id, self.run_name = run_id, run.info.run_name
        self.params, self.tags = dict(run.data.params), dict(run.data.tags)
        self.client.update_run(run_id, status="RUNNING")

    @_store_errors
    def find_search(self, search_id: str) -> str | None:
        """The id of the run :meth:`start` made for ``search_id`` (None if none)."""
        runs = self.client.search_runs([self.experiment_id],
                                       filter_string=f"tags.`{SEARCH_ID_TAG}` = '{search_id}'")
        return runs[0].info.run_id if runs else None

    @_store_errors
    def discard(self) -> None:
        """Delete the run (a search that failed before it trained anything)."""
        if self.run_id is not None:
            self.client.delete_run(self.run_id)
            self.run_id = None

    @_store_errors
    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)

    # -- during the search --------------------------------------------------------------
    @_store_errors
    def log_metrics(self, metrics: list[tuple[str, float, int]]) -> None:
        """``(key, value, step)`` triples, in as few requests as MLflow allows; the
        :data:`HEADLINE` metric first (a run's metrics table lists metrics in the order
        they were first logged)."""
        metrics = sorted(metrics, key=lambda m: m[0] != HEADLINE)     # stable
        # one millisecond apart: MLflow merges metrics equal in key, step, value and
        # timestamp, and two candidates of a batch may well score the same
        now = self._clock(len(metrics))
        items = [Metric(k, float(v), now + i, int(step)) for i, (k, v, step) in
                 enumerate(metrics) if math.isfinite(float(v))]
        for i in range(0, len(items), _METRIC_BATCH):
            self.client.log_batch(self._id(), metrics=items[i:i + _METRIC_BATCH])

    @_store_errors
    def set_tags(self, tags: dict) -> None:
        items = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self._id(), tags=items[i:i + _BATCH])
            self.tags.update((t.key, t.value) for t in items[i:i + _BATCH])

    def log_table(self, table, path: str, columns: list[str] | None = None) -> None:
        """Log ``table`` (a DataFrame, or row dicts) as the MLflow table ``path``,
        replacing an earlier one; ``columns`` picks and orders them (default: all, as
        they first appear)."""
        frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
        if columns is not None:
            frame = frame.reindex(columns=list(columns))
        self._replace_table(self._id(), path, frame)

    def _id(self) -> str:
        if self.run_id is None:
            raise RuntimeError("no MLflow run: call start() or resume() first")
        return self.run_id

    # -- the end of a search ------------------------------------------------------------
    @_store_errors
    def finish(self, result: SearchResult, *, status: str = "FINISHED",
               children: bool = True) -> None:
        """Log the search's artifacts (see the module docstring), then end the run.

        ``result`` is the search's :class:`~evo_nos.search.SearchResult` (its hall of
        fame, history, stop reason, budget, strategy and export settings are logged).
        """
        run_id = self._id()
        hof = result.hall_of_fame
        frame = hof.to_frame()
        self._replace_table(run_id, "hall_of_fame.json", frame)
        self.client.log_text(run_id, frame.to_csv(index=False), "hall_of_fame.csv")
        self._replace_table(run_id, "pareto_front.json", hof.pareto_frame())
        history = pd.DataFrame(list(result.history), columns=list(_HISTORY_COLUMNS))
        self._replace_table(run_id, "evaluations.json", history)
        markdown = hof.markdown()
        self.client.log_text(run_id, markdown, "hall_of_fame.md")
        self._log_curve(run_id, result.best_curve, result.budget, result.strategy)
        note = protocol_note(self.params)
        rows = hof.rows()
        best = hof.best
        head = []
        if best is not None:
            top = rows[0]
            named = f" ({top['name']})" if top["name"] else ""
            head.append(f"**Best rule:** `{top['readable']}`{named}, fitness "
                        f"{top['fitness']:.4f}; scored as `{top['rule']}`.")
        if note:
            head.append(note)
        tags = {"stop_reason": result.status,
                NOTE_TAG: "\n\n".join(head + [markdown])}
        if best is not None:
            tags.update(best_rule=best.rule, best_fitness=f"{best.fitness:.6g}")
            self._log_export(run_id, best.rule, result.export_settings, frame)
            latest = self.client.get_run(run_id).data.metrics.get(HEADLINE)
            if latest != float(best.fitness):
                # (a batch logged, then dropped by an interrupt): the headline is the
                # hall of fame's best, at the last step logged
                steps = [m.step for m in self.client.get_metric_history(run_id, HEADLINE)]
                self.log_metrics([(HEADLINE, best.fitness, max(steps, default=0))])
        self.set_tags(tags)
        if children:
            self._log_children(run_id, hof, rows, self.run_name, note)
        self.end(status)

    def _replace_table(self, run_id: str, artifact_file: str, frame: pd.DataFrame) -> None:
        """``log_table`` appends to an existing file; a refreshed table replaces it."""
        existing = [f.path for f in self.client.list_artifacts(run_id)]
        if artifact_file in existing:
            repo = get_artifact_repository(self.client.get_run(run_id).info.artifact_uri)
            repo.delete_artifacts(artifact_file)
        self.client.log_table(run_id, data=frame, artifact_file=artifact_file)

    def _log_curve(self, run_id: str, curve: list, budget: int, strategy: str) -> None:
        fig = Figure(figsize=(6, 3.6), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
        points = [(s, b) for s, b in curve if math.isfinite(b)]
        if points:
            ax.step([p[0] for p in points], [p[1] for p in points], where="post")
        ax.set_xlim(0, max(budget, 1))
        ax.set_xlabel("child trainings")
        ax.set_ylabel("best fitness so far")
        ax.set_title(f"{strategy} search" if strategy else "search")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        self.client.log_figure(run_id, fig, "best_fitness.png")

    def _log_export(self, run_id: str, rule: str, settings, frame: pd.DataFrame) -> None:
        """The best rule (rank 1 of the hall of fame ``frame``) as an exported class and
        its spec, recording its search exactly as ``export --run`` does: from the row as
        ``hall_of_fame.json`` holds it and the run's preset tag, else param."""
        name = default_class_name(rule)
        origin = SearchOrigin.from_entry(
            _stored_rows(frame)[0], run_id=run_id,
            preset=self.tags.get("preset") or self.params.get("preset"))
        self.client.log_text(run_id, export_source(rule, class_name=name, settings=settings,
                                                   origin=origin),
                             f"best_optimizer/{name}.py")
        spec = export_spec(rule, class_name=name, settings=settings, origin=origin)
        spec["source_file"] = f"{name}.py"
        self.client.log_dict(run_id, spec, f"best_optimizer/{name}.json")

    def _log_children(self, run_id: str, hof, rows: list, parent_name: str,
                      note: str) -> None:
        """One nested run per hall-of-fame member (replacing earlier ones), the last
        rank first: MLflow lists runs newest first, so #1 comes at the top."""
        old = self.client.search_runs([self.experiment_id],
                                      filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'")
        for run in old:
            self.client.delete_run(run.info.run_id)
        members = list(zip(hof.top, rows))
        for evaluation, row in reversed(members):
            rank = row["rank"]
            child = self.client.create_run(
                self.experiment_id, run_name=f"#{rank} {row['name'] or row['rule']}"[:250],
                start_time=self._clock(),
                tags={PARENT_TAG: run_id, "rank": str(rank), "rule": row["rule"],
                      "math": row["math"],
                      NOTE_TAG: _member_note(row, len(members), parent_name, note)})
            cid = child.info.run_id
            params = [Param("rule", row["rule"]), Param("complexity", str(row["complexity"])),
                      Param("best_lr", str(row["best_lr"])), Param("status", row["status"])]
            metrics = [Metric("fitness", float(row["fitness"]), 0, 0),
                       Metric("seeds", float(row["seeds"]), 0, 0)]
            if row["fitness_se"] is not None:
                metrics.append(Metric("fitness_se", float(row["fitness_se"]), 0, 0))
            for lr, score in sorted(evaluation.lr_scores.items()):
                if score is not None and math.isfinite(float(score)):
                    metrics.append(Metric(f"score_lr_{float(lr):g}", float(score), 0, 0))
            self.client.log_batch(cid, metrics=metrics, params=params)
            self.client.set_terminated(cid, status="FINISHED", end_time=self._clock())


def _member_note(row: dict, size: int, parent_name: str, note: str) -> str:
    """A hall-of-fame run's description (markdown): its readable rule, its numbers, the
    protocol note."""
    named = f" ({row['name']})" if row["name"] else ""
    se = f" ± {row['fitness_se']:.4f}" if row["fitness_se"] is not None else ""
    lr = f", best learning rate {row['best_lr']:g}" if row["best_lr"] is not None else ""
    seeds = f"{row['seeds']} seed{'' if row['seeds'] == 1 else 's'}"
    lines = [f"**#{row['rank']} of {size}** in search `{parent_name}`: `{row['readable']}`{named}",
             f"fitness {row['fitness']:.4f}{se} over {seeds}{lr}; scored as `{row['rule']}`."]
    if note:
        lines.append(note)
    return "\n\n".join(lines)


def _stored_rows(frame: pd.DataFrame) -> list[dict]:
    """``frame``'s rows as a reader reads them back from the file ``log_table`` writes
    (``to_json(orient="split")``: floats to pandas' default 10 digits, NaN as null)."""
    return table_rows(frame.to_json(orient="split", index=False, date_format="iso"))


# the columns of a search's evaluations.json (one row per candidate, in order)
_HISTORY_COLUMNS = ("index", "kind", "step", "compute", "elapsed", "rule", "fitness",
                    "fitness_se", "seeds", "best", "status", "best_lr", "trainings", "steps",
                    "seconds", "reason")


class ReportTracker(Tracker):
    """A Tracker for runs that are not searches: artifacts logged one by one."""

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self._id(), text, path)

    def log_dict(self, data: dict, path: str) -> None:
        self.client.log_dict(self._id(), data, path)

    def log_figure(self, figure, path: str) -> None:
        self.client.log_figure(self._id(), figure, path)
