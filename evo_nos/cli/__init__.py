"""Layer 8, the command lines: every ``python -m evo_nos.X`` lives here (``evo_nos/X.py``
only calls ``evo_nos.cli.X.main``).  What they share: ``errors`` (exit statuses, the
one-line error, the parser), ``option_types`` (the ``type=`` checks of one value),
``settings`` (the typed ``--set`` parser), ``options`` (the option groups and the checks
that need several options)."""
import sys

from evo_nos.core import signals

# a command run as ``python -m evo_nos.X``: handle Ctrl+C, SIGTERM and SIGHUP from here on,
# held (recorded, not raised) through the command's imports: its main checks once they are
# done (see evo_nos.core.signals).  Imported by anything else, nothing changes.
if (getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", "") or "") \
        .startswith("evo_nos."):
    signals.install(hold=True)
