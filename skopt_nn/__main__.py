"""``python -m skopt_nn`` runs the ``skopt-nn`` command."""

import sys

from .cli._main import main

if __name__ == "__main__":
    sys.exit(main())
