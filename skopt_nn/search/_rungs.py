"""ASHA's rung machinery, shared by both backends of the search.

What trains a candidate on one fold rung by rung (``_Fold``, fused:
``_advance_fused``), how a fold is scored (``_score_fold``: a float, or
``Scores`` for a multi-metric search), and the promotion bookkeeping
(``_ASHAState``). ``asha`` (joblib, Dask) and ``_asha_ray`` (Ray actors)
both import it, so neither imports the other's machinery.
"""

import math
import warnings

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing
from sklearn.utils.metadata_routing import _routing_enabled, process_routing
from sklearn.utils.validation import _check_method_params

from ..training._find import final_network
from ..training.fused import fit_fused, fusable
from ..training._runtime import torch_threads
from .pareto import pareto_order
from .scoring import CostScorer


def _split_target(estimator):
    """``(step_name or None, network)``: the network the rungs train."""
    step, network = final_network(estimator)
    if network is not None:
        return step, network
    raise ValueError(
        "method='asha' trains a skopt_nn estimator epoch by epoch: the estimator must be "
        f"an NNClassifier/NNRegressor or a Pipeline ending in one; got {type(estimator).__name__}."
    )


def rung_epochs(min_epochs, reduction_factor, max_epochs):
    """Epochs reached at each rung: ``min_epochs * eta**k``, then ``max_epochs``.

    Examples
    --------
    >>> from skopt_nn.search._rungs import rung_epochs
    >>> rung_epochs(1, 3, 27)
    [1, 3, 9, 27]
    >>> rung_epochs(2, 3, 10)
    [2, 6, 10]
    """
    rungs, epochs = [], min_epochs
    while epochs < max_epochs:
        rungs.append(int(epochs))
        epochs = epochs * reduction_factor
    return rungs + [int(max_epochs)]


class _Fold:
    """One candidate on one fold: fitted preprocessing and the net mid-fit.

    ``fit_params`` are the search's fit parameters for the estimator (a
    Pipeline's in its own naming, or as metadata routing gives them);
    those aligned with the rows are cut to the fold's training rows.
    """

    def __init__(self, estimator, train, test, fit_params=None):
        self.estimator, self.train, self.test = estimator, train, test
        self.fit_params = fit_params or {}
        self.prep, self.net, self.data = None, None, None
        self.net_params = {}
        self.epochs = 0

    def advance(self, X, y, epochs, scorer, threads):
        """Train up to ``epochs`` in all; return ``(self, score, error)``."""
        try:
            with torch_threads(threads):
                if self.net is None:
                    self._prepare(X, y)
                Xt, yt, Xv, yv = self.data
                self.net._fit_epochs(Xt, yt, epochs - self.epochs, **self.net_params)
                self.epochs = epochs
                score = _score_fold(scorer, self, X, y)
            if not math.isfinite(score):
                raise ValueError(f"The validation score is {score}.")
            return self, score, None
        except Exception as exc:  # recorded as a failed candidate
            self.data = None  # nothing more to train
            return self, np.nan, f"{type(exc).__name__}: {exc}"

    def _prepare(self, X, y):
        # The steps before the network see this fold's training rows once.
        step, net = _split_target(self.estimator)
        Xt, yt = _take(X, self.train), _take(y, self.train)
        Xv, yv = _take(X, self.test), _take(y, self.test)
        params = _check_method_params(X, params=self.fit_params, indices=self.train)
        net_params = params
        if step is not None:
            prep_params, net_params = _pipeline_params(self.estimator, params)
            self.prep = Pipeline(self.estimator.steps[:-1]) if len(self.estimator.steps) > 1 else None
            if self.prep is not None:
                Xt = self.prep.fit_transform(Xt, yt, **prep_params)
                Xv = self.prep.transform(Xv)
        self.net = net
        self.net_params = net_params
        self.data = (Xt, yt, Xv, yv)


def _pipeline_params(pipeline, params):
    """``(params of the steps before the network, params of the network)``."""
    step = pipeline.steps[-1][0]
    if _routing_enabled():
        routed = process_routing(pipeline, "fit", **params)
        prep = {}
        for name, _ in pipeline.steps[:-1]:
            # The steps before the network route them again, by their own requests.
            for method in ("fit_transform", "fit"):
                prep.update(routed[name].get(method, {}))
        return prep, dict(routed[step]["fit"])
    net = {k.split("__", 1)[1]: v for k, v in params.items() if k.startswith(step + "__")}
    prep = {k: v for k, v in params.items() if not k.startswith(step + "__")}
    return prep, net


def _take(a, index):
    # Rows of arrays, DataFrames, sparse matrices and lists (a text corpus).
    return None if a is None else _safe_indexing(a, index)


class Scores(float):
    """A fold's score to promote by, with every scoring entry of a multi-metric search beside it."""

    def __new__(cls, value, entries):
        obj = super().__new__(cls, value)
        obj.entries = entries
        return obj

    def __reduce__(self):  # joblib workers and Ray actors send it back whole
        return (Scores, (float(self), self.entries))


class _Promoting:
    """A multi-metric scorer whose value is the promotion metric's, the others kept (``Scores``)."""

    def __init__(self, scorer, key):
        self.scorer, self.key = scorer, key

    def __call__(self, estimator, X, y):
        entries = {name: float(value) for name, value in self.scorer(estimator, X, y).items()}
        return Scores(entries[self.key], entries)


def _score_fold(scorer, fold, X, y):
    """The validation score of a fold's network, a float or ``Scores``.

    A multi-metric scorer (which may hold cost scorers) sees the fold's
    fitted preprocessing and network as one Pipeline on the raw rows, the
    model a plain search would score; a single scorer sees the network on
    the transformed rows, as before. A network whose pruning schedule ends
    after this rung is scored as it would finish now (pruned to its final
    amount, see ``BaseNN._as_finished``), so the rung sees what the pruning
    costs and saves.
    """
    net = fold.net
    if "_finish_now_" in vars(net):  # pruning still to come: the model it would finish as now
        net = net._as_finished()
    if isinstance(scorer, (_Promoting, CostScorer)):
        estimator = net
        if fold.prep is not None:
            estimator = Pipeline([*fold.prep.steps, (fold.estimator.steps[-1][0], net)])
        elif fold.net is not fold.estimator and hasattr(fold.estimator, "steps"):
            estimator = Pipeline([(fold.estimator.steps[-1][0], net)])
        return scorer(estimator, _take(X, fold.test), _take(y, fold.test))
    _, _, Xv, yv = fold.data
    return float(scorer(net, Xv, yv))


def _advance_fused(jobs, X, y, rungs, scorer, max_members, fallbacks):
    """``_Fold.advance`` for every ``(candidate, rung, fold)`` job, the networks trained fused."""
    results = [None] * len(jobs)
    ready = []
    for j, (_, rung, fold) in enumerate(jobs):
        if fold.net is None:
            try:
                fold._prepare(X, y)
            except Exception as exc:
                fold.data = None
                results[j] = (fold, np.nan, f"{type(exc).__name__}: {exc}")
                continue
        reason = fusable(fold.net)
        other = sorted(set(fold.net_params) - {"sample_weight"})
        if reason is None and other:
            reason = f"fit parameters {other} are not routed into fused fits"
        if reason is not None:
            fallbacks.append(reason)
            results[j] = fold.advance(X, y, rungs[rung], scorer, None)
            continue
        ready.append(j)
    reasons = []
    outcomes = fit_fused(
        [(jobs[j][2].net, jobs[j][2].data[0], jobs[j][2].data[1], jobs[j][2].net_params.get("sample_weight"))
         for j in ready],
        epochs=[rungs[jobs[j][1]] - jobs[j][2].epochs for j in ready],
        max_members=max_members,
        fallbacks=reasons,
    )
    fallbacks.extend(reasons)
    for j, outcome in zip(ready, outcomes):
        _, rung, fold = jobs[j]
        try:
            if outcome.error is not None:
                raise outcome.error
            fold.epochs = rungs[rung]
            score = _score_fold(scorer, fold, X, y)
            if not math.isfinite(score):
                raise ValueError(f"The validation score is {score}.")
            results[j] = (fold, score, None)
        except Exception as exc:  # recorded as a failed candidate, as in _Fold.advance
            fold.data = None
            results[j] = (fold, np.nan, f"{type(exc).__name__}: {exc}")
    return results


def _advance(fold, X, y, epochs, scorer, threads):
    import torch

    return fold.advance(X, y, epochs, scorer, threads or torch.get_num_threads())


class _ASHAState:
    """The promotion bookkeeping of asynchronous successive halving.

    With ``objectives`` (scoring entries of a multi-metric search), a rung's
    best ``1 / eta`` are taken in :func:`~skopt_nn.search.pareto.pareto_order`
    of the candidates' mean scores on those entries (non-dominated sorting,
    then ``tie_break``) instead of by the one promotion metric.
    """

    def __init__(self, n_candidates, rungs, eta, objectives=None, tie_break="epsilon_net"):
        self.n, self.rungs, self.eta = n_candidates, rungs, eta
        self.objectives = list(objectives) if objectives else None
        self.tie_break = tie_break
        self.next_new = 0
        # per rung: {candidate: mean score} of those that finished it; with objectives also
        # {candidate: mean score on each objective}
        self.done = [dict() for _ in rungs]
        self.vectors = [dict() for _ in rungs]
        self.promoted = [set() for _ in rungs]
        self.records = [{"scores": [], "error": None, "epochs": 0} for _ in range(n_candidates)]

    def next_jobs(self, k):
        """Up to ``k`` ``(candidate, rung)`` jobs, promotions first."""
        picks = []
        for _ in range(k):
            job = self._promotion() or self._new()
            if job is None:
                break
            picks.append(job)
        return picks

    def ranked(self, rung):
        """The candidates that finished ``rung`` with finite scores, best first."""
        done = self.done[rung]
        finite = [c for c in done if math.isfinite(done[c])]
        if self.objectives is None:
            return sorted(finite, key=lambda c: -done[c])
        vectors = self.vectors[rung]
        finite = [c for c in finite if np.all(np.isfinite(vectors[c]))]
        if not finite:
            return []
        order = pareto_order(np.array([vectors[c] for c in finite]), self.tie_break)
        return [finite[i] for i in order]

    def _promotion(self):
        for r in range(len(self.rungs) - 2, -1, -1):
            top = self.ranked(r)[: len(self.done[r]) // self.eta]
            for c in top:
                if c not in self.promoted[r]:
                    self.promoted[r].add(c)
                    return c, r + 1
        return None

    def _new(self):
        if self.next_new >= self.n:
            return None
        self.next_new += 1
        return self.next_new - 1, 0

    def report(self, cand, rung, fold_scores, error):
        rec = self.records[cand]
        if error is not None:
            rec["error"] = error
            self.done[rung][cand] = -math.inf
            return
        rec["scores"].append((rung, list(fold_scores)))
        rec["epochs"] = self.rungs[rung]
        self.done[rung][cand] = float(np.mean(fold_scores))
        if self.objectives is not None:
            self.vectors[rung][cand] = np.array(
                [np.mean([s.entries[name] for s in fold_scores]) for name in self.objectives])

    def best_score(self):
        for done in reversed(self.done):
            finite = [s for s in done.values() if math.isfinite(s)]
            if finite:
                return max(finite)
        return None


def _warn_fallbacks(fallbacks):
    """Say how many fold trainings of a ``fuse=True`` search ran as ordinary fits, and why."""
    if fallbacks:
        warnings.warn(
            f"fuse=True: {len(fallbacks)} fold trainings could not train fused and ran as "
            f"ordinary fits ({'; '.join(sorted(set(fallbacks)))}).",
            UserWarning,
            stacklevel=4,
        )
