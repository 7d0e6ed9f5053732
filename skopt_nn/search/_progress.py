"""Progress feedback for a search: a bar over its candidates.

:func:`search_progress` wraps any sklearn search for the length of a
``with`` block. It patches the search's candidate loop and so depends on the
search module; the per-epoch bar of a single fit is in ``_progress``.
"""

import contextlib
import math
import sys
from inspect import signature

import numpy as np
from joblib import effective_n_jobs

from ..training._progress import _tqdm
from ._failed_steps import _tolerate_failed_steps
from .pareto import ranking_metric

__all__ = ["search_progress"]


def _best_score(results, search):
    """Best mean test score so far, for the bar's label (NaN when unknown)."""
    scores = np.asarray(results.get(f"mean_test_{ranking_metric(search, results)}", []), dtype=float)
    if not np.isfinite(scores).any():
        return math.nan
    return float(np.nanmax(scores))


def _n_candidates(search):
    """Candidates the search will evaluate, when that is known before fitting."""
    total = getattr(search, "total_iterations", None)  # BayesSearchCV
    if isinstance(total, int):
        return total
    if hasattr(search, "param_grid"):
        from sklearn.model_selection import ParameterGrid

        return len(ParameterGrid(search.param_grid))
    if hasattr(search, "n_candidates"):  # halving: known only once it runs
        return None
    n_iter = getattr(search, "n_iter", getattr(search, "n_trials", None))  # n_trials: Optuna
    return n_iter if isinstance(n_iter, int) else None


@contextlib.contextmanager
def search_progress(search, *, desc="search", file=None):
    """Show a progress bar over the candidates of ``search`` inside the block.

    Works with every sklearn search (grid, random, halving) and with
    scikit-optimize's ``BayesSearchCV``. Candidates are handed to the
    search's fitting machinery in groups as large as its ``n_jobs``, so the
    bar moves as each group finishes while every worker stays busy; the
    results (``cv_results_``, ``best_params_``) are the same as without the
    bar. The bar's label shows the best mean test score so far.

    Parameters
    ----------
    search : BaseSearchCV
        The search to watch; call its ``fit`` inside the block.
    desc : str, default="search"
        Text before the bar.
    file : file-like or None, default=None
        Where to draw; standard error when None.

    Yields
    ------
    search : BaseSearchCV
        The same object.

    Examples
    --------
    >>> import io
    >>> from sklearn.datasets import load_iris
    >>> from skopt_nn import NNClassifier, Real, make_search, search_progress
    >>> X, y = load_iris(return_X_y=True)
    >>> search = make_search(NNClassifier(max_epochs=2, random_state=0),
    ...                      {"lr": Real(1e-3, 1e-1, log=True)},
    ...                      method="random", n_iter=3, cv=2, random_state=0)
    >>> out = io.StringIO()
    >>> with search_progress(search, file=out):
    ...     _ = search.fit(X, y)
    >>> "3/3" in out.getvalue()
    True
    """
    original = search._run_search
    takes_ctx = "callback_ctx" in signature(original).parameters
    bar = _tqdm()(
        total=_n_candidates(search),
        desc=desc,
        unit="candidate",
        file=file if file is not None else sys.stderr,
        dynamic_ncols=True,
        leave=True,
    )

    def run_search(evaluate_candidates, **kwargs):
        def evaluate(candidate_params, cv=None, more_results=None, callback_ctx=None):
            candidates = list(candidate_params)
            if bar.total is None and bar.n == 0:
                bar.total = _halving_total(search, len(candidates))
            if bar.total is not None and bar.n + len(candidates) > bar.total:
                bar.total = bar.n + len(candidates)
            group = max(1, effective_n_jobs(getattr(search, "n_jobs", None)))
            results = None
            for start in range(0, max(len(candidates), 1), group):
                part = candidates[start : start + group]
                extra = None
                if more_results is not None:
                    extra = {k: list(v)[start : start + group] for k, v in more_results.items()}
                results = _evaluate_group(evaluate_candidates, part, cv, extra, len(candidates))
                best = _best_score(results, search)
                if math.isfinite(best):
                    bar.set_postfix(best=f"{best:.4g}", refresh=False)
                bar.update(len(part))
            # A Bayesian search tells failed steps to its optimizer and goes on.
            if len(candidates) > group and not _is_bayes(search):
                _check_not_all_failed(results, search, len(candidates))
            return results

        if takes_ctx:
            return original(evaluate, callback_ctx=kwargs.get("callback_ctx"))
        return original(evaluate)

    search._run_search = _Wrapped(run_search, signature(original))
    try:
        yield search
    finally:
        del search._run_search  # the class's method shows through again
        if bar.total != bar.n and not sys.exc_info()[0]:
            bar.total = bar.n  # an estimate was off: end the bar full
            bar.refresh()
        bar.close()


def _halving_total(search, n_first):
    """Candidates a successive-halving search will evaluate over all its rounds.

    Known only once its first round is drawn; follows sklearn's own count
    of rounds (without ``aggressive_elimination``).
    """
    factor = getattr(search, "factor", None)
    low, high = getattr(search, "min_resources_", None), getattr(search, "max_resources_", None)
    if not factor or not low or not high or n_first < 1:
        return None
    required = 1 + math.floor(math.log(n_first, factor))
    possible = 1 + math.floor(math.log(high // low, factor))
    rounds = required if getattr(search, "aggressive_elimination", False) else min(required, possible)
    total, n = 0, n_first
    for _ in range(rounds):
        total += n
        n = math.ceil(n / factor)
    return total


class _Wrapped:
    """The search's ``_run_search`` for the length of the block.

    sklearn hands the search itself to its workers (``caller=``), so the
    wrapper must pickle: it goes as nothing, as workers never run the search
    loop. It shows the original signature, which sklearn reads to decide
    whether to pass ``callback_ctx``.
    """

    def __init__(self, run, sig):
        self.run = run
        self.__signature__ = sig

    def __call__(self, *args, **kwargs):
        return self.run(*args, **kwargs)

    def __reduce__(self):
        return (_nothing, ())


def _nothing():
    return None


def _evaluate_group(evaluate_candidates, part, cv, more_results, n_requested):
    """Evaluate one group of candidates, keeping sklearn's all-failed check per request.

    sklearn raises when every fit of one call fails; splitting a request in
    groups must not turn one failed group among good ones into an error.
    """
    if len(part) == n_requested:
        return evaluate_candidates(part, cv, more_results=more_results)
    with _tolerate_failed_steps():
        return evaluate_candidates(part, cv, more_results=more_results)


def _check_not_all_failed(results, search, n_requested):
    """Raise as sklearn does when a whole request failed, though it ran in groups."""
    key = f"mean_test_{ranking_metric(search, results)}"
    scores = np.asarray(results.get(key, [np.nan]), dtype=float)[-n_requested:]
    error_score = getattr(search, "error_score", np.nan)
    if isinstance(error_score, float) and math.isnan(error_score) and np.isnan(scores).all():
        raise ValueError(
            f"All the {n_requested} candidates failed to fit; "
            "set error_score='raise' on the search to see why."
        )


def _is_bayes(search):
    from skopt import BayesSearchCV

    return isinstance(search, BayesSearchCV)
