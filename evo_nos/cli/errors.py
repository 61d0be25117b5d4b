"""What a command can meet that is not a bug in evo_nos: missing data, an MLflow store
that is down or read-only, a damaged checkpoint, a search another process holds, bad
settings.  The commands report each in one line (its message says what to do) and exit
non-zero; anything else is a bug and keeps its traceback."""
import logging

from evo_nos.fitness.data import DataError
from evo_nos.search import CheckpointError, SearchInUse
from evo_nos.tracking import TrackingError

SEARCH_ERRORS = (DataError, TrackingError, CheckpointError, SearchInUse, ValueError,
                 FileNotFoundError)


def quiet_mlflow_store() -> None:
    """Keep MLflow's SQL store from logging tracebacks of errors that evo_nos reports in
    one line itself (and its notes on creating tables)."""
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
