"""Layer 8, the command lines: every ``python -m evo_nos.X`` lives here (``evo_nos/X.py``
only calls ``evo_nos.cli.X.main``); ``options`` holds what they share."""
