"""Hyperparameter searches over one ``SearchSpace``.

``make_search`` builds any of them (grid, random, Bayes, successive halving,
Optuna, ASHA); the search classes themselves are importable from here.
"""

from ._engines import OptunaSearchCV, RobustBayesSearchCV, default_space, make_search
from ._fused import FusedGridSearchCV, FusedRandomizedSearchCV
from .asha import ASHASearchCV
from .pareto import pareto_front, within
from .scoring import find_network, get_scorer, get_scorer_names

__all__ = ["make_search", "default_space", "RobustBayesSearchCV", "OptunaSearchCV", "ASHASearchCV",
           "FusedGridSearchCV", "FusedRandomizedSearchCV", "get_scorer", "get_scorer_names", "pareto_front",
           "within", "find_network"]
