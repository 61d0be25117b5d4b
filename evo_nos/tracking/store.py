"""Where MLflow runs go, and the names evo_nos gives them (shared by writer and reader).

Every MLflow client evo_nos makes comes from :func:`open_client`, which makes opening a
store safe and quick to fail:

* a SQLite store is created or migrated under a file lock (``<db>.lock`` beside it):
  MLflow builds the schema of a new database without one, and two processes doing it at
  once leave a database that no later process can open;
* an HTTP tracking server is asked for ``/health`` with a short timeout first: MLflow
  itself retries an unreachable server for minutes without a word;
* either failure is a :class:`TrackingError` whose message says what to do;
* a reader (``create=False``: the read-only commands) never creates a store: where there
  is none, a :class:`TrackingError` says so (and MLflow prints nothing).
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from alembic.util.exc import CommandError
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import SQLAlchemyError

from evo_nos.core.files import FileLock

DEFAULT_EXPERIMENT = "evo_nos"      # the experiment every command uses unless told
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
KIND_TAG = "kind"
SEARCH_ID_TAG = "evo_nos.search_id"  # set on a search's run as it is created
SEARCH = "search"
RUN_KINDS = (SEARCH, "reference", "compare", "transfer")
# MLflow 3's UI opens an experiment in its GenAI view unless this tag says it holds model
# training runs; every experiment evo_nos creates or logs to is tagged so
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# ... but MLflow 3.17's UI picks the view from its GenAI / Model training switch (kept per
# browser, GenAI at first), which a page's URL sets with this query
TRAINING_VIEW = "workflowType=machine_learning"
UI_ADDRESS = "http://127.0.0.1:5000"   # where a plain `mlflow ui` serves


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else MLflow's default for this working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()


SERVER_TIMEOUT = 5.0                # seconds to wait for a tracking server's /health
_OPENED: set[str] = set()           # stores this process has opened (and so created)


class TrackingError(RuntimeError):
    """The MLflow store cannot be reached, opened or written; the message says why."""


class NoStore(TrackingError, ValueError):
    """A reader found no store where it looked (a ValueError too: like an experiment
    that does not exist yet, there is nothing to read)."""


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for in-memory or other stores)."""
    if urlparse(tracking_uri).scheme != "sqlite":
        return None
    db_path = tracking_uri[len("sqlite:///"):]
    return None if db_path in ("", ":memory:") else Path(db_path).expanduser()


def open_client(tracking_uri: str | None = None, *, create: bool = True) -> MlflowClient:
    """An MlflowClient on ``tracking_uri`` (default :func:`default_tracking_uri`) whose
    store exists and answers; raises :class:`TrackingError` otherwise.  ``create=False``:
    a store that does not exist yet is an error too, and is not made."""
    uri = tracking_uri or default_tracking_uri()
    if uri in _OPENED:
        return MlflowClient(tracking_uri=uri)
    if urlparse(uri).scheme in ("http", "https"):
        _check_server(uri)
    db = sqlite_path(uri)
    if not create:
        _check_exists(uri, db)
    try:
        # the client builds its store (and a new database's schema) as it is made
        with FileLock(db.with_name(db.name + ".lock")) if db is not None else nullcontext():
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
    except (MlflowException, OSError, SQLAlchemyError, CommandError) as err:
        hint = (f"; if the database is damaged, move it aside (mv {db} {db}.broken) and "
                "start again") if db is not None else ""
        raise TrackingError(f"cannot open the MLflow store {uri}: {first_line(err)}{hint}") \
            from err
    _OPENED.add(uri)
    return client


NO_STORE_HINT = ("run the command in the folder where the searches ran, or give "
                 "--tracking-uri (or MLFLOW_TRACKING_URI)")


def _check_exists(uri: str, db: Path | None) -> None:
    """Refuse a local store that does not exist (a reader must not create one)."""
    parsed = urlparse(uri)
    if db is not None:
        missing = not db.is_file()
        where = db
    elif parsed.scheme in ("", "file"):
        where = Path(parsed.path if parsed.scheme else uri).expanduser()
        missing = not where.is_dir()
    else:
        return
    if missing:
        raise NoStore(f"no MLflow store at {where} (so no runs to read): "
                            f"{NO_STORE_HINT}")


def _check_server(uri: str) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=SERVER_TIMEOUT):
            return
    except urllib.error.HTTPError:
        return                      # it answered: not our health check's business
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(f"cannot reach the MLflow tracking server {uri} ({reason}): "
                            "start it (mlflow server ...), or unset MLFLOW_TRACKING_URI / "
                            "--tracking-uri to log to ./mlflow.db") from None


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first line (MLflow's carry whole tracebacks)."""
    lines = [line.strip() for line in str(err).strip().splitlines()]
    # SQLAlchemy prefixes the error that matters with a note on how it was raised
    lines = [line for line in lines if line and not line.startswith("(raised as a result")]
    return lines[0] if lines else type(err).__name__


def default_artifact_location(tracking_uri: str) -> str | None:
    """``<folder of the SQLite file>/mlartifacts`` as a file URI; None for servers."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        db = sqlite_path(tracking_uri)
        return None if db is None else (db.resolve().parent / "mlartifacts").as_uri()
    if parsed.scheme in ("", "file"):
        folder = Path(parsed.path if parsed.scheme else tracking_uri).expanduser().resolve()
        return (folder.parent / "mlartifacts").as_uri()
    return None
