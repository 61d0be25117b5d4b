"""``python -m evo_nos.transfer``: the command line lives in :mod:`evo_nos.cli.transfer`."""
import sys

from evo_nos.cli.transfer import main

if __name__ == "__main__":
    sys.exit(main())
