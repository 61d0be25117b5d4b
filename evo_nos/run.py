"""``python -m evo_nos.run``: the command line lives in :mod:`evo_nos.cli.run`."""
import sys

from evo_nos.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
