"""``python -m evo_nos.campaign``: the command line lives in :mod:`evo_nos.cli.campaign`."""
import sys

from evo_nos.cli.campaign import main

if __name__ == "__main__":
    sys.exit(main())
