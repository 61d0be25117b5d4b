"""Layer 6, tracking: the only layer that imports mlflow.  ``store`` (where runs go,
the tags evo_nos uses), ``writer`` (:class:`Tracker` logs a search, :class:`ReportTracker`
a report) and ``reader`` (runs, tables and halls of fame back as plain data)."""
from evo_nos.tracking.reader import (RunRecord, experiment_id_of, experiment_name,
                                     export_origin, find_runs, get_run, hall_of_fame_entry,
                                     hall_of_fame_rule, list_artifacts,
                                     load_artifact_text, load_hall_of_fame, load_search_runs,
                                     load_table, metric_history)
from evo_nos.tracking.store import (DEFAULT_EXPERIMENT, KIND_TAG, NOTE_TAG, PARENT_TAG,
                                    RUN_KINDS, SEARCH, TrackingError,
                                    default_artifact_location, default_tracking_uri,
                                    open_client)
from evo_nos.tracking.writer import (HEADLINE, ReportTracker, Tracker, default_run_name,
                                     protocol_note)

__all__ = ["Tracker", "ReportTracker", "HEADLINE", "default_run_name", "protocol_note",
           "RunRecord", "find_runs", "get_run", "load_search_runs",
           "load_table", "load_hall_of_fame", "hall_of_fame_entry", "hall_of_fame_rule",
           "export_origin", "metric_history",
           "list_artifacts", "load_artifact_text", "experiment_id_of", "experiment_name",
           "default_tracking_uri", "default_artifact_location", "DEFAULT_EXPERIMENT",
           "KIND_TAG", "NOTE_TAG", "PARENT_TAG", "RUN_KINDS", "SEARCH", "TrackingError",
           "open_client"]
