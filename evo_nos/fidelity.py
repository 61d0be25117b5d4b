"""``python -m evo_nos.fidelity``: the command line lives in :mod:`evo_nos.cli.fidelity`."""
import sys

from evo_nos.cli.fidelity import main

if __name__ == "__main__":
    sys.exit(main())
