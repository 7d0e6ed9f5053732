"""A refit that diverges falls back to the next-best candidate, in every engine.

The cross-validated fits of a search run on parts of the data; the refit of
the best candidate runs on all of it, with more rows per epoch, and can
diverge where no fold did (a learning rate at the edge of stability). The
search is not lost then: the candidates are refitted in the order of their
rank until one trains, a warning names the one that diverged and the one
refitted, and ``best_index_``, ``best_params_`` and ``best_score_`` describe
the refitted candidate, so that they agree with ``best_estimator_``.

``RefitFallback`` adds this to sklearn's search classes (the ones
``make_search`` returns are subclasses of sklearn's, with the same names and
behaviour otherwise); ``refit_in_rank_order`` is the rule itself, which the
engines that are not sklearn searches (ASHA) call directly.
"""

import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import GridSearchCV as _GridSearchCV
from sklearn.model_selection import HalvingRandomSearchCV as _HalvingRandomSearchCV
from sklearn.model_selection import RandomizedSearchCV as _RandomizedSearchCV

from ..training._base import DivergenceError
from .pareto import ParetoFrontMixin

__all__ = [
    "RefitFallback", "refit_in_rank_order", "GridSearchCV", "RandomizedSearchCV", "HalvingRandomSearchCV",
]


def refit_in_rank_order(make, fit, params, order, first_error):
    """Refit ``params[i]`` for ``i`` in ``order`` until one does not diverge.

    Parameters
    ----------
    make : callable
        ``make(params) -> unfitted estimator``.
    fit : callable
        ``fit(estimator) -> fitted estimator``.
    params : sequence of dict
        Every candidate's parameters.
    order : sequence of int
        Candidates to try, best first; the first already diverged with
        ``first_error``.
    first_error : DivergenceError

    Returns
    -------
    index, estimator, seconds : int, fitted estimator, float
        The candidate refitted, its model and the time its refit took.
    """
    best = order[0]
    for index in order[1:]:
        start = time.perf_counter()
        try:
            estimator = fit(make(params[index]))
        except DivergenceError:
            continue
        seconds = time.perf_counter() - start
        warnings.warn(
            f"The refit of the best candidate {params[best]} on all the data diverged "
            f"({first_error}); the next-best candidate that trains, {params[index]}, was "
            "refitted instead, and best_index_, best_params_ and best_score_ describe it.",
            UserWarning,
            stacklevel=3,
        )
        return index, estimator, seconds
    raise first_error


def _rank_order(results, metric, best):
    """Candidates with a finite mean score, by rank, ``best`` first."""
    rank = np.asarray(results[f"rank_test_{metric}"])
    mean = np.asarray(results[f"mean_test_{metric}"], dtype=float)
    order = [int(i) for i in np.argsort(rank, kind="stable") if np.isfinite(mean[i]) and i != best]
    return [best] + order


class RefitFallback(ParetoFrontMixin):
    """Mixin for ``BaseSearchCV`` subclasses: survive a refit that diverges (and give ``pareto_front_``)."""

    def _format_results(self, *args, **kwargs):
        # The results of the search so far; sklearn keeps them in a local
        # until after the refit, which is where a divergence stops it.
        results = super()._format_results(*args, **kwargs)
        self._search_results = results
        return results

    def fit(self, X, y=None, **params):
        """Run the search, then refit the best candidate that trains; see ``RefitFallback``."""
        self.__dict__.pop("_search_results", None)
        self.__dict__.pop("best_index_", None)
        try:
            return super().fit(X, y, **params)
        except DivergenceError as exc:
            results = self.__dict__.get("_search_results")
            if results is None or "best_index_" not in self.__dict__ or not self.refit:
                raise  # the search itself failed (error_score="raise"), not its refit
            self._refit_next_best(X, y, params, results, exc)
            return self
        finally:
            self.__dict__.pop("_search_results", None)

    def _refit_next_best(self, X, y, params, results, error):
        metric = "score" if not self.multimetric_ else self.refit
        if callable(self.refit):  # the user's own choice of the best: no order to fall back on
            raise error
        order = _rank_order(results, metric, self.best_index_)
        fit_params = self._get_routed_params_for_fit(params).estimator.fit

        def make(candidate):
            return clone(self.estimator).set_params(**clone(candidate, safe=False))

        def fit(estimator):
            return estimator.fit(X, **fit_params) if y is None else estimator.fit(X, y, **fit_params)

        index, estimator, seconds = refit_in_rank_order(make, fit, results["params"], order, error)
        self.best_index_ = index
        self.best_params_ = results["params"][index]
        self.best_score_ = results[f"mean_test_{metric}"][index]
        self.best_estimator_ = estimator
        self.refit_time_ = seconds
        if hasattr(estimator, "feature_names_in_"):
            self.feature_names_in_ = estimator.feature_names_in_
        scorers, _ = self._get_scorers()
        self.scorer_ = getattr(scorers, "_scorers", scorers)
        self.cv_results_ = results


class GridSearchCV(RefitFallback, _GridSearchCV):
    """sklearn's ``GridSearchCV`` whose refit falls back to the next-best candidate."""


class RandomizedSearchCV(RefitFallback, _RandomizedSearchCV):
    """sklearn's ``RandomizedSearchCV`` whose refit falls back to the next-best candidate."""


class HalvingRandomSearchCV(RefitFallback, _HalvingRandomSearchCV):
    """sklearn's ``HalvingRandomSearchCV`` whose refit falls back to the next-best candidate."""
