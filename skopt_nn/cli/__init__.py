"""The ``skopt-nn`` command line. Importing it loads neither torch nor scikit-learn."""

from ._main import main

__all__ = ["main"]
