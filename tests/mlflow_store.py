"""A fresh MLflow SQLite store per test, copied from one migrated template.

Migrating a new SQLite database takes seconds; copying a migrated one takes
milliseconds.  The template is built once per test session (per process) on first use.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

_TEMPLATE: Path | None = None


def _template() -> Path:
    global _TEMPLATE
    if _TEMPLATE is None:
        from mlflow.tracking import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="evo_nos_mlflow_template_"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        db = folder / "mlflow.db"
        MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()   # migrates
        _TEMPLATE = db
    return _TEMPLATE


def fresh_store(folder: Path) -> str:
    """Copy the template database into ``folder``; returns its tracking URI."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "mlflow.db"
    shutil.copy(_template(), db)
    return f"sqlite:///{db}"
