"""``python -m evo_nos.compare``: the command line lives in :mod:`evo_nos.cli.compare`."""
import sys

from evo_nos.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
