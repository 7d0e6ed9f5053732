"""Asynchronous successive halving over epochs that continues training.

:class:`ASHASearchCV` draws candidates from a :class:`~skopt_nn.SearchSpace`
and trains each one rung by rung: ``min_epochs``, ``min_epochs * eta``, ...
up to the estimator's ``max_epochs``. A candidate moves up a rung as soon as
it is in the best ``1 / eta`` of the candidates that finished its rung, and
it *continues* from where it stopped (weights, optimizer state, schedule
position, pruning progress): a candidate that reaches the top rung is the
model one ``fit`` with the same ``random_state`` would give. The steps of a
Pipeline before the network are fitted once per candidate and fold.

Work runs through joblib (``n_jobs``, any joblib backend, Dask included) or,
with ``backend="ray"``, on a pool of long-lived Ray actors that this process
drives rung by rung with the same promotion rule.
"""

from collections.abc import Mapping
import numbers
import time

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.metrics import check_scoring
from sklearn.model_selection import ParameterSampler, check_cv
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping, _routing_enabled, process_routing
from sklearn.utils.validation import check_is_fitted, indexable

from ..training._base import DivergenceError
from ._asha_progress import RungProgress
from ._refit import refit_in_rank_order
from .pareto import TIE_BREAKS, ParetoFrontMixin, check_objectives, default_refit
from .scoring import resolve_scoring
from ._rungs import (
    Scores, _ASHAState, _Fold, _Promoting, _advance, _advance_fused, _split_target, _warn_fallbacks,
    rung_epochs,
)

__all__ = ["ASHASearchCV"]


class ASHASearchCV(ParetoFrontMixin, MetaEstimatorMixin, BaseEstimator):
    """Asynchronous successive halving over epochs, continuing each candidate.

    Usually built by ``make_search(estimator, space, method="asha")``.

    Parameters
    ----------
    estimator : NNClassifier, NNRegressor or Pipeline ending in one
        The model to tune; its ``max_epochs`` is the top rung.
    param_distributions : SearchSpace or dict
        Names (with the Pipeline step prefix) mapped to dimensions, or to
        lists / ``rvs`` distributions as in ``RandomizedSearchCV``.
    n_iter : int, default=27
        Candidates drawn.
    min_epochs : int, default=1
        Epochs of the first rung.
    reduction_factor : int, default=3
        ``eta``: each rung has ``eta`` times the epochs of the one below and
        takes the best ``1 / eta`` of its candidates.
    cv : int, cross-validation generator or iterable, default=3
        Folds; a rung's score is the mean validation score over the folds.
    scoring : str or callable, default=None
        sklearn scorer; ``None`` uses the estimator's ``score``.
    n_jobs : int, default=None
        Fold trainings run at once through joblib; with ``backend="ray"``,
        the most Ray actors to start (``None`` or ``-1``: one per CPU Ray
        has free).
    refit : bool, default=True
        Fit the best candidate on all the data as ``best_estimator_``. If
        that fit diverges, the next-best candidate is refitted instead, with
        a warning naming both; ``best_index_``, ``best_params_`` and
        ``best_score_`` then describe the refitted candidate.
    random_state : int, RandomState or None, default=None
        Draws the candidates.
    error_score : 'raise' or float, default=np.nan
        Score of a candidate whose fit fails; ``'raise'`` raises instead.
    backend : {None, "ray"}, default=None
        ``None``: joblib; ``"ray"``: the rungs' fold trainings run on Ray
        actors, one per CPU, which receive the data once through Ray's object
        store and keep their partly trained folds between rungs; the
        promotions are this class's, the same as on joblib with as many
        workers (see "Scaling a search out" in the docs). Uses a running Ray
        as it is; otherwise starts one (quietly unless ``verbose``) and shuts
        it down after the search.
    fuse : bool, default=False
        Train the folds of every candidate waiting for a rung together, as
        stacked models (see "Fused search" in the searching guide): the
        rungs then run in waves, all new candidates first, then the
        promotions of each rung once it is complete, which is successive
        halving with ASHA's promotion rule. Runs in this process (``n_jobs``
        is not used) or, with ``backend="ray"``, each Ray actor trains its
        share of a wave as stacked groups.
    fuse_max_members : int or None, default=None
        Most members in one stacked group with ``fuse=True``; None chooses
        from memory.
    objectives : list of str, default=None
        Scoring entries to trade, all greater-is-better (``["accuracy",
        "neg_model_bytes"]``): multi-objective ASHA. A rung's best ``1 / eta``
        are then its first candidates in
        :func:`~skopt_nn.search.pareto.pareto_order` of their mean scores on
        the objectives (non-dominated sorting, then ``tie_break``), so that
        the promotions follow the whole trade-off rather than one score.
        ``scoring`` ``None`` scores the objectives themselves; otherwise it
        must hold them. ``refit=True`` then refits
        ``within(score, tol=0.01, minimize=cost)`` when a cost is among the
        objectives (see :func:`~skopt_nn.search.pareto.default_refit`), else
        the best on the first objective.
    tie_break : {"epsilon_net", "crowding"}, default="epsilon_net"
        With ``objectives``: the order within a Pareto layer of a rung.
        ``"epsilon_net"`` takes each next candidate farthest from all those
        already taken, so that the promotions cover the trade-off
        (:func:`~skopt_nn.search.pareto.epsilon_net_order`); ``"crowding"``
        is NSGA-II's crowding distance within the layer.
    ray_address : str, default=None
        Ray cluster to join when ``backend="ray"`` and Ray is not running;
        ``None`` starts a local Ray.
    verbose : int, default=0
        ``1`` draws a progress bar over the rungs; with ``backend="ray"`` it
        also lets a Ray started here log to the console.

    Attributes
    ----------
    cv_results_ : dict of arrays
        One row per candidate: ``params``, ``param_<name>``, ``epochs`` (the
        epochs it reached), ``rung``, ``failed``, ``error``,
        ``mean_test_score`` / ``std_test_score`` / ``split<k>_test_score``
        at that rung, ``rank_test_score`` and ``score_history`` (a list of
        ``(epochs, mean score)`` per rung reached).
    best_params_, best_score_, best_index_, best_estimator_
        As in sklearn's searches; the best is taken among the candidates that
        reached the highest rung.
    total_epochs_ : int
        Epochs trained over all candidates and folds (the refit excluded).
    n_candidates_ : int
    rungs_ : list of int
        Epochs at each rung.
    refit_time_ : float

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skopt_nn import MLP, NNClassifier, Real, make_search
    >>> X, y = load_iris(return_X_y=True)
    >>> pipe = make_pipeline(StandardScaler(),
    ...                      NNClassifier(MLP((8,)), max_epochs=9, random_state=0))
    >>> search = make_search(pipe, {"lr": Real(1e-3, 1e-1, log=True)}, method="asha",
    ...                      n_iter=9, cv=2, random_state=0).fit(X, y)
    >>> search.rungs_
    [1, 3, 9]
    >>> int(search.cv_results_["epochs"].max())
    9
    >>> search.total_epochs_ < 9 * 9 * 2
    True
    """

    def __init__(
        self,
        estimator,
        param_distributions,
        *,
        n_iter=27,
        min_epochs=1,
        reduction_factor=3,
        cv=3,
        scoring=None,
        n_jobs=None,
        refit=True,
        random_state=None,
        error_score=np.nan,
        backend=None,
        ray_address=None,
        verbose=0,
        fuse=False,
        fuse_max_members=None,
        objectives=None,
        tie_break="epsilon_net",
    ):
        self.estimator = estimator
        self.param_distributions = param_distributions
        self.n_iter = n_iter
        self.min_epochs = min_epochs
        self.reduction_factor = reduction_factor
        self.cv = cv
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.refit = refit
        self.random_state = random_state
        self.error_score = error_score
        self.backend = backend
        self.ray_address = ray_address
        self.verbose = verbose
        self.fuse = fuse
        self.fuse_max_members = fuse_max_members
        self.objectives = objectives
        self.tie_break = tie_break

    # -- setup shared by both backends
    def _scorer(self):
        """The fold scorer: sklearn's for one metric, ``_Promoting`` for several."""
        net = _split_target(self.estimator)[1]
        self._refit_rule = self.refit
        self._objectives = None
        if self.objectives is None:
            scoring = resolve_scoring(self.scoring)
        else:
            self._objectives, scoring = check_objectives(self.objectives, self.scoring, type(self).__name__)
            if self.refit is True:
                self._refit_rule = default_refit(self._objectives, scoring)
        if not isinstance(scoring, Mapping) and self._objectives is not None:
            scoring = {name: name for name in scoring}  # a list of names, read as sklearn reads it
        if not isinstance(scoring, Mapping):
            self._metric = "score"
            return check_scoring(net, scoring=scoring)
        names = list(scoring)
        refit = self._refit_rule
        if isinstance(refit, str):
            if refit not in names:
                raise ValueError(
                    "For multi-metric scoring, the parameter refit must be set to a scorer key or a "
                    "callable to refit an estimator with the best parameter setting on the whole data "
                    "and make the best_* attributes available for that metric. If this is not needed, "
                    f"refit should be set to False explicitly. {refit!r} was passed."
                )
            key = refit
        elif callable(refit) and getattr(refit, "metric", None) in names:
            key = refit.metric  # within(...): promote by the metric it holds to a tolerance
        elif refit is True:
            raise ValueError(
                "For multi-metric scoring, the parameter refit must be set to a scorer key or a "
                "callable to refit an estimator with the best parameter setting on the whole data "
                "and make the best_* attributes available for that metric. If this is not needed, "
                f"refit should be set to False explicitly. {refit!r} was passed."
            )
        else:
            key = names[0]
        self._metric = key
        return _Promoting(check_scoring(net, scoring=scoring), key)

    def _check(self):
        _, net = _split_target(self.estimator)
        for name, value, low in (("n_iter", self.n_iter, 1), ("min_epochs", self.min_epochs, 1),
                                 ("reduction_factor", self.reduction_factor, 2)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
        if self.tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {list(TIE_BREAKS)}; got {self.tie_break!r}.")
        if self.backend not in (None, "ray"):
            raise ValueError(f"backend must be None or 'ray'; got {self.backend!r}.")
        if self.min_epochs > net._setting("max_epochs"):
            raise ValueError(
                f"min_epochs={self.min_epochs} is more than the estimator's "
                f"max_epochs={net._setting('max_epochs')}."
            )
        if not (self.error_score == "raise" or isinstance(self.error_score, numbers.Real)):
            raise ValueError(f"error_score must be 'raise' or a number; got {self.error_score!r}.")
        epochs_name = self._epochs_name()
        if epochs_name in self.param_distributions:
            raise ValueError(
                f"{epochs_name!r} is the rungs' resource and cannot also be searched; "
                "drop it from the space."
            )
        return rung_epochs(self.min_epochs, self.reduction_factor, net._setting("max_epochs"))

    def _epochs_name(self):
        step, _ = _split_target(self.estimator)
        return "max_epochs" if step is None else f"{step}__max_epochs"

    def _candidates(self):
        space = self.param_distributions
        if hasattr(space, "distributions"):
            space = space.distributions()
        return list(ParameterSampler(space, self.n_iter, random_state=self.random_state))

    def _candidate_estimator(self, params):
        return clone(self.estimator).set_params(**clone(params, safe=False))

    def _candidate_folds(self, params, splits, fit_params=None):
        # Each backend trains these; building them here keeps the Ray
        # backend from importing this module back.
        estimator = self._candidate_estimator(params)
        return [_Fold(clone(estimator), train, test, fit_params) for train, test in splits]

    def fit(self, X, y=None, **fit_params):
        """Run the search on ``X``, ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or list
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        **fit_params
            Passed to the estimator's ``fit`` in every rung (cut to each
            fold's training rows when aligned with them, as ``sample_weight``)
            and in the refit; for a Pipeline as ``<step>__sample_weight``, or
            by sklearn's metadata routing when it is enabled. With both
            backends.

        Returns
        -------
        self : object
        """
        rungs = self._check()
        X, y = indexable(X, y)
        cv = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        splits = list(cv.split(X, y))
        scorer = self._scorer()
        if _routing_enabled():
            fit_params = process_routing(self, "fit", **fit_params).estimator.fit
        candidates = self._candidates()
        progress = RungProgress(rungs, len(candidates), enabled=self.verbose > 0,
                               eta=self.reduction_factor)
        try:
            if self.backend == "ray":
                from ._asha_ray import run_ray

                records = run_ray(self, X, y, candidates, rungs, splits, scorer, progress, fit_params)
            else:
                records = self._run_joblib(X, y, candidates, rungs, splits, scorer, progress, fit_params)
        finally:
            progress.close()
        self._publish(candidates, records, rungs, len(splits))
        if self._refit_rule:
            self._refit(X, y, fit_params)
        return self

    def _refit(self, X, y, fit_params):
        """Fit the best candidate on all the data; the next-best if it diverges."""
        start = time.perf_counter()
        try:
            best = self._candidate_estimator(self.best_params_)
            self.best_estimator_ = best.fit(X, y, **fit_params)
            self.refit_time_ = time.perf_counter() - start
            return
        except DivergenceError as exc:
            error = exc
        if callable(self._refit_rule):  # the user's own choice of the best: no order to fall back on
            raise error
        results, metric = self.cv_results_, self._metric
        ranked = np.argsort(results[f"rank_test_{metric}"], kind="stable")
        order = [self.best_index_] + [
            int(i) for i in ranked
            if i != self.best_index_ and not results["failed"][i]
            and np.isfinite(results[f"mean_test_{metric}"][i])
        ]
        index, estimator, seconds = refit_in_rank_order(
            self._candidate_estimator, lambda est: est.fit(X, y, **fit_params),
            results["params"], order, error,
        )
        self.best_index_ = index
        self.best_params_ = results["params"][index]
        self.best_score_ = float(results[f"mean_test_{metric}"][index])
        self.best_estimator_ = estimator
        self.refit_time_ = seconds

    def get_metadata_routing(self):
        """Metadata routing: the search's fit parameters go to the estimator's ``fit``.

        Returns
        -------
        routing : MetadataRouter
        """
        return MetadataRouter(owner=self).add(
            estimator=self.estimator, method_mapping=MethodMapping().add(caller="fit", callee="fit")
        )

    def _run_joblib(self, X, y, candidates, rungs, splits, scorer, progress, fit_params):
        n_workers = effective_n_jobs(self.n_jobs)
        # One torch thread per worker when fits run side by side.
        threads = 1 if n_workers > 1 else None
        state = _ASHAState(len(candidates), rungs, self.reduction_factor, self._objectives, self.tie_break)
        folds = {}
        fallbacks = []
        with Parallel(n_jobs=1 if self.fuse else self.n_jobs) as parallel:
            while True:
                # Fused: every job that can start now, so that they train together.
                wave = len(candidates) if self.fuse else max(1, -(-n_workers // len(splits)))
                picks = state.next_jobs(wave)
                if not picks:
                    break
                jobs = []
                for cand, rung in picks:
                    if cand not in folds:
                        folds[cand] = self._candidate_folds(candidates[cand], splits, fit_params)
                    for fold in folds[cand]:
                        jobs.append((cand, rung, fold))
                if self.fuse:
                    out = _advance_fused(jobs, X, y, rungs, scorer, self.fuse_max_members, fallbacks)
                else:
                    out = parallel(
                        delayed(_advance)(fold, X, y, rungs[rung], scorer, threads)
                        for _, rung, fold in jobs
                    )
                results = {}
                for (cand, rung, _), (fold, score, error) in zip(jobs, out):
                    results.setdefault((cand, rung), []).append((fold, score, error))
                for (cand, rung), parts in results.items():
                    folds[cand] = [fold for fold, _, _ in parts]
                    errors = [e for _, _, e in parts if e is not None]
                    if errors and self.error_score == "raise":
                        raise ValueError(f"Candidate {candidates[cand]} failed: {errors[0]}")
                    state.report(cand, rung, [s for _, s, _ in parts], errors[0] if errors else None)
                    if errors or rung == len(rungs) - 1:
                        folds[cand] = None  # frees its networks
                    progress.update(rung, state.best_score())
        _warn_fallbacks(fallbacks)
        return state.records

    # -- results
    def _entries(self, records, splits, failed):
        """``{scoring entry: (candidates, folds) scores at the rung each reached}``.

        One entry, ``"score"``, for a single scorer; a multi-metric search's
        entries come from the ``Scores`` of each fold.
        """
        if getattr(self, "_metric", "score") == "score":
            return {"score": splits}
        names = None
        for rec in records:
            for _, fold_scores in rec["scores"][-1:]:
                for value in fold_scores:
                    if isinstance(value, Scores):
                        names = list(value.entries)
                        break
        names = names or [self._metric]
        tables = {name: np.full(splits.shape, np.nan) for name in names}
        for i, rec in enumerate(records):
            if not rec["scores"]:
                continue
            for k, value in enumerate(rec["scores"][-1][1]):
                for name in names:
                    tables[name][i, k] = value.entries.get(name, np.nan) if isinstance(value, Scores) else np.nan
        for name in names:  # a failed candidate scores error_score on every entry
            tables[name][failed] = splits[failed]
        tables[self._metric] = splits
        return tables

    def _publish(self, candidates, records, rungs, n_splits):
        n = len(candidates)
        epochs = np.zeros(n, dtype=int)
        rung_of = np.full(n, -1, dtype=int)
        failed = np.zeros(n, dtype=bool)
        errors = np.empty(n, dtype=object)
        splits = np.full((n, n_splits), np.nan)
        history = np.empty(n, dtype=object)
        total = 0
        for i in range(n):
            rec = records[i]
            history[i] = [(rungs[r], float(np.mean(s))) for r, s in rec["scores"]]
            errors[i] = rec["error"]
            failed[i] = rec["error"] is not None
            if rec["scores"]:
                r, s = rec["scores"][-1]
                rung_of[i], epochs[i], splits[i] = r, rungs[r], s
            total += rec["epochs"] * n_splits
        if failed.any() or np.isnan(splits).any():
            fill = np.nan if self.error_score == "raise" else float(self.error_score)
            splits[failed] = fill
        mean = splits.mean(axis=1)
        results = {
            "params": list(candidates),
            "epochs": epochs,
            "rung": rung_of,
            "failed": failed,
            "error": errors,
            "score_history": history,
        }
        entries = self._entries(records, splits, failed)
        for name, table in entries.items():
            results[f"mean_test_{name}"] = table.mean(axis=1)
            results[f"std_test_{name}"] = table.std(axis=1)
            for k in range(n_splits):
                results[f"split{k}_test_{name}"] = table[:, k]
        for name in sorted({k for p in candidates for k in p}):
            column = np.ma.masked_all(n, dtype=object)
            for i, p in enumerate(candidates):
                if name in p:
                    column[i] = p[name]
            results[f"param_{name}"] = column
        # Rank by the rung reached, then by the score there; failures last.
        key = np.where(failed | ~np.isfinite(mean), -np.inf, mean)
        order = np.lexsort((-key, -np.where(failed, -1, rung_of)))
        rank = np.empty(n, dtype=np.int32)
        rank[order] = np.arange(1, n + 1)
        for name in entries:  # every entry ranked as the promotion metric is: rung first
            key_m = np.where(failed | ~np.isfinite(results[f"mean_test_{name}"]), -np.inf,
                             results[f"mean_test_{name}"])
            order_m = np.lexsort((-key_m, -np.where(failed, -1, rung_of)))
            rank_m = np.empty(n, dtype=np.int32)
            rank_m[order_m] = np.arange(1, n + 1)
            results[f"rank_test_{name}"] = rank_m
        if np.all(failed | ~np.isfinite(mean)):
            raise ValueError(
                f"All the {n} candidates of the ASHA search failed; first error: {errors[0]}. "
                "Set error_score='raise' to see the traceback."
            )
        self.cv_results_ = results
        self.best_index_ = int(order[0])
        if callable(self._refit_rule):
            index = self._refit_rule(results)
            if not isinstance(index, numbers.Integral) or not 0 <= index < n:
                raise IndexError("best_index_ index out of range" if isinstance(index, numbers.Integral)
                                 else "best_index_ returned is not an integer")
            self.best_index_ = int(index)
        self.best_params_ = candidates[self.best_index_]
        if not callable(self._refit_rule):  # as sklearn: a callable refit leaves best_score_ unset
            self.best_score_ = float(mean[self.best_index_])
        self.total_epochs_ = int(total)
        self.n_candidates_ = n
        self.n_splits_ = n_splits
        self.rungs_ = list(rungs)
        self.scorer_ = self.scoring

    # -- the fitted search behaves like its best estimator
    def _best(self):
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_

    def predict(self, X):
        """Predict with ``best_estimator_``."""
        return self._best().predict(X)

    def predict_proba(self, X):
        """Class probabilities from ``best_estimator_``."""
        return self._best().predict_proba(X)

    def score(self, X, y=None):
        """Score of ``best_estimator_`` (its own ``score``, or ``scoring``)."""
        best = self._best()
        if self.scoring is None:
            return best.score(X, y)
        scoring = resolve_scoring(self.scoring)
        if isinstance(scoring, Mapping):  # the metric the search promoted by
            scoring = scoring[self._metric]
        return check_scoring(best, scoring=scoring)(best, X, y)

    @property
    def classes_(self):
        return self._best().classes_
