"""Where MLflow runs go, and the names evo_nos gives them (shared by writer and reader)."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import mlflow

DEFAULT_EXPERIMENT = "evo_nos"      # the experiment every command uses unless told
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
KIND_TAG = "kind"
SEARCH = "search"
RUN_KINDS = (SEARCH, "reference", "compare", "transfer")


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else MLflow's default for this working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()


def default_artifact_location(tracking_uri: str) -> str | None:
    """``<folder of the SQLite file>/mlartifacts`` as a file URI; None for servers."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        db_path = tracking_uri[len("sqlite:///"):]
        if db_path in ("", ":memory:"):
            return None
        folder = Path(db_path).expanduser().resolve().parent
        return (folder / "mlartifacts").as_uri()
    if parsed.scheme in ("", "file"):
        folder = Path(parsed.path if parsed.scheme else tracking_uri).expanduser().resolve()
        return (folder.parent / "mlartifacts").as_uri()
    return None
