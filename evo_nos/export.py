"""``python -m evo_nos.export``: the command line lives in :mod:`evo_nos.cli.export`."""
import sys

from evo_nos.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
