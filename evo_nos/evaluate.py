"""``python -m evo_nos.evaluate``: the command line lives in :mod:`evo_nos.cli.evaluate`."""
import sys

from evo_nos.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
