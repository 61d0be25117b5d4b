"""``python -m evo_nos.references``: the command line lives in :mod:`evo_nos.cli.references`."""
import sys

from evo_nos.cli.references import main

if __name__ == "__main__":
    sys.exit(main())
