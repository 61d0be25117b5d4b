"""Layer 5, search: the driver every strategy shares (``driver``), what a search is as
plain data (``state``: the checkpoint's state and the result), the hall of fame
(``hall_of_fame``), checkpoints and RNG states (``checkpoint``) and the defaults of a
search (``defaults``)."""
from evo_nos.search.checkpoint import (CHECKPOINT_FILE, PREVIOUS_FILE, SUMMARY_FILE,
                                       CheckpointError, load_checkpoint, new_search_dir,
                                       rng_states, seed_everything, set_rng_states)
from evo_nos.search.driver import (DONE, FINISHED, INTERRUPTED, RUNNING, STALLED, TIME_LIMIT,
                                   SaveError, Search, SearchInUse)
from evo_nos.search.hall_of_fame import HallOfFame
from evo_nos.search.state import FunnelSettings, SearchResult, SearchState

__all__ = ["Search", "SearchResult", "SearchState", "FunnelSettings", "SearchInUse", "SaveError",
           "HallOfFame", "load_checkpoint", "CheckpointError", "new_search_dir",
           "PREVIOUS_FILE", "seed_everything", "rng_states", "set_rng_states",
           "CHECKPOINT_FILE", "SUMMARY_FILE", "DONE", "FINISHED", "INTERRUPTED", "RUNNING",
           "STALLED", "TIME_LIMIT"]
