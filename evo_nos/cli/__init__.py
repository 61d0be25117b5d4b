"""Layer 8, the command lines: every ``python -m evo_nos.X`` lives here (``evo_nos/X.py``
only calls ``evo_nos.cli.X.main``).  What they share: ``errors`` (exit statuses, the
one-line error, the parser), ``option_types`` (the ``type=`` checks of one value),
``settings`` (the typed ``--set`` parser), ``options`` (the option groups and the checks
that need several options)."""
