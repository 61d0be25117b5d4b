"""``python -m evo_nos.metavalidate``: the command line lives in :mod:`evo_nos.cli.metavalidate`."""
import sys

from evo_nos.cli.metavalidate import main

if __name__ == "__main__":
    sys.exit(main())
