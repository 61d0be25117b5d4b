"""Layer 6, search: the driver every strategy shares (``driver``), the hall of fame
(``hall_of_fame``), checkpoints and RNG states (``checkpoint``) and the defaults of a
search (``defaults``)."""
from evo_nos.search.checkpoint import (CHECKPOINT_FILE, SUMMARY_FILE, load_checkpoint,
                                       rng_states, seed_everything, set_rng_states)
from evo_nos.search.driver import (DONE, FINISHED, INTERRUPTED, RUNNING, STALLED, TIME_LIMIT, Search,
                                   SearchResult)
from evo_nos.search.hall_of_fame import HallOfFame

__all__ = ["Search", "SearchResult", "HallOfFame", "load_checkpoint", "seed_everything",
           "rng_states", "set_rng_states", "CHECKPOINT_FILE", "SUMMARY_FILE", "DONE", "FINISHED",
           "INTERRUPTED", "RUNNING", "STALLED", "TIME_LIMIT"]
