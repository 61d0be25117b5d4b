"""Reading evo_nos runs back from MLflow, as plain data.

Every reader returns dataclasses, dicts and lists.  Search runs carry no ``kind`` tag;
the runs evo_nos logs about searches do: ``kind=reference`` (scores of the known rules),
``kind=compare`` (a head-to-head report) and ``kind=transfer`` (a transfer check).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from evo_nos.optim.export import SearchOrigin
from evo_nos.tracking.store import (DEFAULT_EXPERIMENT, KIND_TAG, PARENT_TAG, RUN_KINDS, SEARCH,
                                    default_tracking_uri, open_client)


@dataclass
class RunRecord:
    """One MLflow run as plain data (times in seconds since the epoch)."""

    run_id: str
    name: str
    experiment_id: str
    status: str                     # RUNNING | FINISHED | KILLED | FAILED | SCHEDULED
    start_time: float | None
    end_time: float | None
    params: dict
    tags: dict
    metrics: dict                   # the latest value of every metric

    @property
    def kind(self) -> str:
        return self.tags.get(KIND_TAG) or SEARCH

    @property
    def is_child(self) -> bool:
        return PARENT_TAG in self.tags


def _reader(tracking_uri: str | None) -> MlflowClient:
    return open_client(tracking_uri or default_tracking_uri(), create=False)


def _record(run) -> RunRecord:
    info = run.info
    return RunRecord(
        run_id=info.run_id, name=info.run_name or "", experiment_id=info.experiment_id,
        status=info.status,
        start_time=info.start_time / 1000.0 if info.start_time else None,
        end_time=info.end_time / 1000.0 if info.end_time else None,
        params=dict(run.data.params), tags=dict(run.data.tags),
        metrics=dict(run.data.metrics))


def experiment_id_of(experiment: str, tracking_uri: str | None = None) -> str:
    """The id of an existing experiment; the error lists the experiments there are."""
    client = _reader(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        names = sorted(e.name for e in client.search_experiments())
        raise ValueError(f"no MLflow experiment {experiment!r} in "
                         f"{tracking_uri or default_tracking_uri()}; experiments there: "
                         f"{names or 'none'} (set MLFLOW_TRACKING_URI or --experiment)")
    return found.experiment_id


def find_runs(experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str | None = None, *,
              kind: str | None = SEARCH, tags: dict | None = None,
              parents_only: bool = True) -> list[RunRecord]:
    """The runs of ``experiment`` of one ``kind`` (None: any), oldest first.

    ``tags`` keeps only runs whose tags have exactly these (string) values.
    """
    if kind is not None and kind not in RUN_KINDS:
        raise ValueError(f"kind must be one of {RUN_KINDS} or None, got {kind!r}")
    client = _reader(tracking_uri)
    experiment_id = experiment_id_of(experiment, tracking_uri)
    clauses = []
    if parents_only:
        clauses.append(f"tags.`{PARENT_TAG}` IS NULL")
    if kind not in (None, SEARCH):
        clauses.append(f"tags.`{KIND_TAG}` = '{kind}'")
    for key, value in (tags or {}).items():
        clauses.append(f"tags.`{key}` = '{_quoted(value)}'")
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=" and ".join(clauses),
                                  max_results=1000, order_by=["attributes.start_time ASC"],
                                  page_token=token)
        runs.extend(_record(r) for r in page)
        token = page.token
        if not token:
            break
    if kind == SEARCH:
        runs = [r for r in runs if r.kind == SEARCH]
    return runs


def _quoted(value) -> str:
    return str(value).replace("'", "\\'")


def load_search_runs(experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str | None = None,
                     **tags) -> list[RunRecord]:
    """The parent runs of the searches in ``experiment`` (optionally matching ``tags``)."""
    return find_runs(experiment, tracking_uri, kind=SEARCH, tags=tags or None)


def get_run(run_id: str, tracking_uri: str | None = None) -> RunRecord:
    """One run by id; the error says which store was searched."""
    client = _reader(tracking_uri)
    try:
        return _record(client.get_run(run_id))
    except MlflowException as err:
        raise ValueError(f"no MLflow run {run_id!r} in {tracking_uri or default_tracking_uri()}"
                         " (set MLFLOW_TRACKING_URI, or run from the folder holding "
                         "mlflow.db)") from err


def metric_history(run_id: str, key: str,
                   tracking_uri: str | None = None) -> list[tuple[int, float, float]]:
    """``(step, value, timestamp in seconds)`` of one metric, by step then time."""
    points = _reader(tracking_uri).get_metric_history(run_id, key)
    return sorted((int(m.step), float(m.value), m.timestamp / 1000.0) for m in points)


def list_artifacts(run_id: str, tracking_uri: str | None = None) -> list[str]:
    """The artifact paths at the top of a run's artifact tree."""
    return [f.path for f in _reader(tracking_uri).list_artifacts(run_id)]


def load_artifact_text(run_id: str, path: str, tracking_uri: str | None = None) -> str | None:
    """The text of one artifact, or None when the run has no such artifact.

    Artifacts in a local folder (the default store) are read in place; others are
    downloaded to a temporary folder without MLflow's progress bar.
    """
    client = _reader(tracking_uri)
    artifact_uri = client.get_run(run_id).info.artifact_uri
    parsed = urlparse(artifact_uri)
    if parsed.scheme in ("", "file"):
        local = Path(url2pathname(parsed.path)) / path
        return local.read_text(encoding="utf-8") if local.is_file() else None
    folder, _, name = path.rpartition("/")
    if name not in {Path(f.path).name for f in client.list_artifacts(run_id, folder or None)}:
        return None
    before = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        with tempfile.TemporaryDirectory(prefix="evo_nos_artifact_") as tmp:
            return Path(client.download_artifacts(run_id, path, tmp)).read_text(encoding="utf-8")
    finally:
        if before is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = before


def load_table(run_id: str, path: str, tracking_uri: str | None = None) -> list[dict] | None:
    """A table logged with ``log_table`` as a list of row dicts, or None when absent."""
    text = load_artifact_text(run_id, path, tracking_uri)
    return None if text is None else table_rows(text)


def table_rows(text: str) -> list[dict]:
    """The rows of a table's file (``log_table``'s JSON: columns, then data) as dicts."""
    data = json.loads(text)
    columns = data.get("columns", [])
    return [dict(zip(columns, row)) for row in data.get("data", [])]


def load_hall_of_fame(run_id: str, tracking_uri: str | None = None) -> list[dict]:
    """The hall of fame a search logged (rows: the columns of
    :data:`evo_nos.search.hall_of_fame.COLUMNS`; tables logged before the simplified
    forms lack ``simplified``, ``readable``, ``readable_latex``,
    ``simplified_complexity`` and ``variants``), best first.

    A search still running has logged no table yet: its ``best_rule`` tag is returned
    as the only row.  A run that is no search is refused, saying what it is.
    """
    run = get_run(run_id, tracking_uri)
    if run.kind != SEARCH:
        raise ValueError(f"run {run_id} is a {run.kind!r} run, not a search: give the run "
                         "id of a search (python -m evo_nos.compare lists them)")
    rows = load_table(run_id, "hall_of_fame.json", tracking_uri)
    if rows is not None:
        return sorted(rows, key=lambda r: r.get("rank") or 0)
    best = run.tags.get("best_rule")
    if best:
        fitness = run.tags.get("best_fitness")
        return [{"rank": 1, "rule": best, "fitness": float(fitness) if fitness else None,
                 "status": "ok"}]
    raise ValueError(f"run {run_id} ({run.status}) has no hall of fame yet: no rule was "
                     "scored; wait for the search or resume it")


def hall_of_fame_entry(run_id: str, rank: int = 1, tracking_uri: str | None = None) -> dict:
    """The hall-of-fame row at ``rank`` (1 = best) of a search (see
    :func:`load_hall_of_fame`: rule, fitness, fitness_se, seeds, best_lr, ...), plus
    ``run_id``, the search's run id, and ``preset``, the search's preset (None if it
    logged none).

    The run may also be one of a search's nested hall-of-fame runs: its entry in its
    search's hall of fame (``rank`` must then be 1).
    """
    run = get_run(run_id, tracking_uri)
    if run.is_child and run.tags.get("rule"):
        if rank != 1:
            raise ValueError(f"run {run_id} is the hall-of-fame entry #{run.tags.get('rank')} "
                             f"of search {run.tags[PARENT_TAG]}: it holds one rule; give "
                             "the parent run id with --rank instead")
        entry = hall_of_fame_entry(run.tags[PARENT_TAG], int(run.tags["rank"]), tracking_uri)
        if entry["rule"] != run.tags["rule"]:
            raise ValueError(f"run {run_id} names {run.tags['rule']}, no longer entry "
                             f"#{run.tags['rank']} of search {run.tags[PARENT_TAG]}: give "
                             "the search's run id with --rank")
        return entry
    rows = load_hall_of_fame(run_id, tracking_uri)
    if not 1 <= rank <= len(rows):
        raise ValueError(f"run {run_id}'s hall of fame has {len(rows)} rule(s): the rank must "
                         f"be 1..{len(rows)}, got {rank}")
    preset = run.tags.get("preset") or run.params.get("preset")
    return {**rows[rank - 1], "run_id": run.run_id, "preset": preset}


def hall_of_fame_rule(run_id: str, rank: int = 1, tracking_uri: str | None = None) -> str:
    """The rule string at ``rank`` (1 = best) of a search's hall of fame (see
    :func:`hall_of_fame_entry`)."""
    return hall_of_fame_entry(run_id, rank, tracking_uri)["rule"]


def export_origin(run_id: str, rank: int = 1, tracking_uri: str | None = None) -> SearchOrigin:
    """What an export of the hall-of-fame entry at ``rank`` records about its search (run,
    preset, rank, rule, fitness ± SE, seeds, best lr; see :func:`hall_of_fame_entry`), as
    ``python -m evo_nos.export --run`` records it.  The best optimizer a search logs
    records the same, made from the hall of fame in memory (:meth:`Tracker.finish
    <evo_nos.tracking.writer.Tracker.finish>`)."""
    entry = hall_of_fame_entry(run_id, rank, tracking_uri)
    return SearchOrigin.from_entry(entry, run_id=entry["run_id"], preset=entry["preset"])


def experiment_name(experiment_id: str, tracking_uri: str | None = None) -> str:
    """The name of the experiment with this id."""
    return _reader(tracking_uri).get_experiment(experiment_id).name

