"""Grid and random searches whose fits train fused, as sklearn search objects.

:class:`FusedGridSearchCV` and :class:`FusedRandomizedSearchCV` are sklearn's
``GridSearchCV`` and ``RandomizedSearchCV``: the same parameters (plus
``fuse_max_members``), the same ``cv_results_``, ``best_*``, ``refit``,
multi-metric scoring and ``return_train_score``. Only the fits of the
candidates differ. Before sklearn evaluates a batch of candidates, every
(candidate, fold) fit is set up here: the steps of a Pipeline before the
network are fitted once per fold and distinct settings, and the networks are
handed to the fused trainer (``training.fused.fit_fused``), which stacks the
members that share an architecture. sklearn's evaluation then runs as
usual, with its per-fit step answered from those fitted members (scored
with sklearn's own scorer); fits that cannot fuse go through sklearn's own
fit-and-score, and the search warns once which and why.
"""

import copy
import inspect
import time
import traceback
import warnings

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs, hash as joblib_hash
from sklearn.base import clone, is_classifier
from sklearn.metrics._scorer import _MultimetricScorer
from sklearn.model_selection import check_cv
from sklearn.model_selection._validation import _score
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing
from sklearn.utils.metaestimators import _safe_split
from sklearn.utils.validation import _check_method_params, _num_samples, indexable

from ..training._find import final_network
from ..training.fused import fit_fused, fusable
from ..training._runtime import worker_share
from ._checkpoint import _Replay, replaying
from ._refit import GridSearchCV, RandomizedSearchCV

__all__ = ["FusedGridSearchCV", "FusedRandomizedSearchCV"]


class _Answer(_Replay):
    """sklearn's per-fit step, answered from members trained fused.

    A record is ``None`` (not fused: sklearn's own fit-and-score runs) or an
    ``Outcome``; a fitted member is scored here with the scorer sklearn
    passes, the way its own step scores.
    """

    def record(self, kwargs):
        # By the candidate's own dict: a wrapper (search_progress) may hand
        # sklearn the candidates in smaller groups, which renumbers them.
        split, _ = kwargs["split_progress"]
        return self.records[id(kwargs["parameters"])][split]

    def answer(self, outcome, args, kwargs):
        if outcome is None:
            return self.real(*args, **kwargs)
        return _result(outcome, *args, **kwargs)


def _result(outcome, estimator, X, y, *, scorer, train, test, parameters, score_params=None,
            return_train_score=False, return_parameters=False, return_n_test_samples=False,
            return_times=False, return_estimator=False, error_score=np.nan, **_):
    """The dict sklearn's ``_fit_and_score`` returns, for a member fitted elsewhere."""
    est = outcome.estimator if outcome.error is None else estimator
    X_train, y_train = _safe_split(est, X, y, train)
    X_test, y_test = _safe_split(est, X, y, test, train)
    score_params = score_params or {}
    result = {}
    start = time.time()
    if outcome.error is not None:
        if error_score == "raise":
            raise outcome.error
        names = scorer._scorers if isinstance(scorer, _MultimetricScorer) else None
        test_scores = {n: error_score for n in names} if names else error_score
        train_scores = dict(test_scores) if names else error_score
        result["fit_error"] = "".join(traceback.format_exception(outcome.error))
    else:
        result["fit_error"] = None
        test_scores = _score(est, X_test, y_test, scorer,
                             _check_method_params(X, score_params, indices=test), error_score)
        if return_train_score:
            train_scores = _score(est, X_train, y_train, scorer,
                                  _check_method_params(X, score_params, indices=train), error_score)
    result["test_scores"] = test_scores
    if return_train_score:
        result["train_scores"] = train_scores
    if return_n_test_samples:
        result["n_test_samples"] = _num_samples(X_test)
    if return_times:
        result["fit_time"] = outcome.fit_time
        result["score_time"] = time.time() - start
    if return_parameters:
        result["parameters"] = parameters
    if return_estimator:
        result["estimator"] = est
    return result


class _FusedMixin:
    """The fused fitting of candidates, shared by the grid and the random search."""

    def fit(self, X, y=None, **params):
        """Run fit with all sets of parameters, fusing the fits that can be.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
        **params : dict
            ``groups`` for the CV splitter, and fit parameters
            (``sample_weight``, with the Pipeline step prefix when the
            network is a step).

        Returns
        -------
        self : object
        """
        groups = params.pop("groups", None)
        Xi, yi = indexable(X, y)
        cv = check_cv(self.cv, yi, classifier=is_classifier(self.estimator))
        # sklearn evaluates the very splits the fused fits trained on.
        splits = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(Xi, yi, groups)]
        saved = self.cv, self.n_jobs
        self._fused_context = (Xi, yi, params, saved[1])
        self.cv, self.n_jobs = splits, 1  # answering sklearn's calls needs no workers
        try:
            return super().fit(X, y, **params)
        finally:
            self.cv, self.n_jobs = saved
            del self._fused_context

    def _run_search(self, evaluate_candidates, callback_ctx=None):
        # sklearn >= 1.9 passes its callback context (it looks for the name
        # in this signature); earlier versions pass nothing.
        kwargs = {}
        if "callback_ctx" in inspect.signature(super()._run_search).parameters:
            kwargs["callback_ctx"] = callback_ctx

        def evaluate_fused(candidate_params, *args, **more):
            candidate_params = list(candidate_params)
            records = dict(zip(map(id, candidate_params), self._fit_candidates(candidate_params)))
            with replaying(self, records, replay_class=_Answer):
                return evaluate_candidates(candidate_params, *args, **more)

        super()._run_search(evaluate_fused, **kwargs)

    def _fit_candidates(self, candidate_params):
        """One ``Outcome`` (or None: not fused) per candidate and split."""
        X, y, fit_params, n_jobs = self._fused_context
        splits = self.cv
        records = [[None] * len(splits) for _ in candidate_params]
        step, _ = final_network(self.estimator)
        weight_key = "sample_weight" if step is None else f"{step}__sample_weight"
        other = sorted(k for k in fit_params if k != weight_key)
        reasons = {}
        jobs, places = [], []
        prepared = {}
        for c, params in enumerate(candidate_params):
            estimator = clone(self.estimator).set_params(**clone(params, safe=False))
            step, net = final_network(estimator)
            reason = "the estimator is not a skopt_nn network or a Pipeline ending in one"
            if net is not None:
                reason = fusable(net)
            if reason is None and other:
                reason = f"fit parameters {other} are not routed into fused fits"
            if reason is not None:
                reasons[reason] = reasons.get(reason, 0) + len(splits)
                continue
            prep = Pipeline(estimator.steps[:-1]) if step is not None and len(estimator.steps) > 1 else None
            prep_key = None if prep is None else joblib_hash(prep)
            for s, (train, test) in enumerate(splits):
                weight = None
                if weight_key in fit_params:
                    weight = _check_method_params(X, {"w": fit_params[weight_key]}, indices=train)["w"]
                key = (s, prep_key)
                if key not in prepared:
                    prepared[key] = _prepare(prep, X, y, train)
                fitted_prep, Xt, yt = prepared[key]
                if Xt is None:
                    reasons["the steps before the network give sparse or non-numeric data"] = (
                        reasons.get("the steps before the network give sparse or non-numeric data", 0) + 1)
                    continue
                jobs.append((clone(net), Xt, yt, weight))
                places.append((c, s, estimator, fitted_prep))
        fallbacks = []
        outcomes = self._run_fused(jobs, n_jobs, fallbacks)
        for (c, s, estimator, fitted_prep), outcome in zip(places, outcomes):
            if outcome.error is None and fitted_prep is not None:
                outcome.estimator = _assemble(estimator, fitted_prep, outcome.estimator)
            if outcome.error is not None and self.error_score == "raise":
                raise outcome.error
            records[c][s] = outcome
        for reason in fallbacks:
            reasons[reason] = reasons.get(reason, 0) + 1
        if reasons:
            total = len(candidate_params) * len(splits)
            detail = "; ".join(f"{n} because {r}" for r, n in reasons.items())
            warnings.warn(
                f"fuse=True: {sum(reasons.values())} of {total} fits could not train fused and "
                f"ran as ordinary fits ({detail}).",
                UserWarning,
                stacklevel=4,
            )
        return records

    def _run_fused(self, jobs, n_jobs, fallbacks):
        if not jobs:
            return []
        workers = effective_n_jobs(n_jobs)
        if workers <= 1 or len(jobs) < 2:
            return fit_fused(jobs, max_members=self.fuse_max_members, fallbacks=fallbacks)
        # Whole groups go to workers, each with its share of the cores.
        order = sorted(range(len(jobs)), key=lambda i: repr(jobs[i][0].get_params()))
        parts = [order[w::workers] for w in range(workers)]
        parts = [p for p in parts if p]
        out = Parallel(n_jobs=len(parts))(
            delayed(_fit_part)([jobs[i] for i in part], self.fuse_max_members) for part in parts
        )
        outcomes = [None] * len(jobs)
        for part, (results, reasons) in zip(parts, out):
            fallbacks.extend(reasons)
            for i, outcome in zip(part, results):
                outcomes[i] = outcome
        return outcomes


def _fit_part(jobs, max_members):
    share = worker_share()
    fallbacks = []
    results = fit_fused(jobs, max_members=max_members, n_threads=share, fallbacks=fallbacks)
    return results, fallbacks


def _prepare(prep, X, y, train):
    """Fit the steps before the network on one fold: ``(fitted, X_train, y_train)``."""
    X_train = _safe_indexing(X, train)  # arrays, frames, sparse matrices, lists of documents
    y_train = None if y is None else _safe_indexing(y, train)
    fitted = None
    if prep is not None:
        fitted = clone(prep)
        X_train = fitted.fit_transform(X_train, y_train)
    if hasattr(X_train, "toarray") or hasattr(X_train, "sparse"):
        return fitted, None, y_train
    if hasattr(X_train, "columns"):  # a DataFrame: its column names reach the network
        return fitted, X_train, y_train
    try:
        # One float32 copy per fold, shared by every member that trains on it.
        X_train = np.ascontiguousarray(np.asarray(X_train), dtype=np.float32)
    except (TypeError, ValueError):
        return fitted, None, y_train
    return fitted, X_train, y_train


def _assemble(estimator, fitted_prep, fitted_net):
    """A copy of the candidate's Pipeline with one fold's fitted steps in place."""
    fitted = copy.copy(estimator)
    fitted.steps = list(fitted_prep.steps) + [(estimator.steps[-1][0], fitted_net)]
    return fitted


_PARAMS = """
    Parameters
    ----------
    estimator : estimator
        A skopt_nn estimator or a Pipeline ending in one; anything else is
        searched with ordinary fits (and the search warns).
    {space}
    fuse_max_members : int or None, default=None
        Most members trained in one stacked group; None chooses from memory
        (about 1 GiB per group) and at most 64.
    **kwargs
        sklearn's other ``{base}`` parameters (``scoring``, ``cv``,
        ``refit``, ``error_score``, ``return_train_score``, ...), with the
        same meaning; ``n_jobs`` spreads the fused groups over workers.

    Attributes
    ----------
    cv_results_, best_estimator_, best_score_, best_params_, best_index_, scorer_, n_splits_, refit_time_
        As in sklearn's ``{base}``: the same keys, a failed fit recorded as
        ``error_score`` with sklearn's ``FitFailedWarning``.
        ``mean_fit_time`` is each fit's share of its fused group's time.

    See Also
    --------
    make_search : builds this search with ``fuse=True``.
"""

_EXAMPLE = """
    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skopt_nn import MLP, NNClassifier
    >>> from skopt_nn.search import {name}
    >>> X, y = load_iris(return_X_y=True)
    >>> pipe = make_pipeline(StandardScaler(), NNClassifier(MLP((8,)), max_epochs=5, random_state=0))
    >>> search = {name}(pipe, {{"nnclassifier__lr": [1e-3, 1e-2, 1e-1]}}, {extra}cv=3).fit(X, y)
    >>> len(search.cv_results_["mean_test_score"])
    3
"""


class FusedGridSearchCV(_FusedMixin, GridSearchCV):
    __doc__ = (
        """sklearn's ``GridSearchCV`` whose fits train fused, as stacked models.

    Every candidate's fits on every fold that share an architecture (and
    batch size, optimizer, device) train together as one stacked model, each
    with its own hyperparameters, rows, seed and stopping; sklearn's own
    evaluation then scores them. Usually built by
    ``make_search(..., method="grid", fuse=True)``.
"""
        + _PARAMS.format(space="param_grid : dict or list of dicts\n        As in ``GridSearchCV``.",
                         base="GridSearchCV")
        + _EXAMPLE.format(name="FusedGridSearchCV", extra="")
    )

    def __init__(self, estimator, param_grid, *, scoring=None, n_jobs=None, refit=True, cv=None,
                 verbose=0, pre_dispatch="2*n_jobs", error_score=np.nan, return_train_score=False,
                 fuse_max_members=None):
        super().__init__(estimator, param_grid, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv,
                         verbose=verbose, pre_dispatch=pre_dispatch, error_score=error_score,
                         return_train_score=return_train_score)
        self.fuse_max_members = fuse_max_members


class FusedRandomizedSearchCV(_FusedMixin, RandomizedSearchCV):
    __doc__ = (
        """sklearn's ``RandomizedSearchCV`` whose fits train fused, as stacked models.

    The sampled candidates' fits are grouped and trained as in
    :class:`FusedGridSearchCV`. Usually built by
    ``make_search(..., method="random", fuse=True)``.
"""
        + _PARAMS.format(
            space="param_distributions : dict or list of dicts\n        As in ``RandomizedSearchCV``.",
            base="RandomizedSearchCV")
        + _EXAMPLE.format(name="FusedRandomizedSearchCV", extra="n_iter=3, random_state=0, ")
    )

    def __init__(self, estimator, param_distributions, *, n_iter=10, scoring=None, n_jobs=None,
                 refit=True, cv=None, verbose=0, pre_dispatch="2*n_jobs", random_state=None,
                 error_score=np.nan, return_train_score=False, fuse_max_members=None):
        super().__init__(estimator, param_distributions, n_iter=n_iter, scoring=scoring, n_jobs=n_jobs,
                         refit=refit, cv=cv, verbose=verbose, pre_dispatch=pre_dispatch,
                         random_state=random_state, error_score=error_score,
                         return_train_score=return_train_score)
        self.fuse_max_members = fuse_max_members
