"""Trading scores against costs after a search: Pareto fronts and tolerance refits.

A search with several scores (``scoring={"accuracy": ..., "bytes":
"neg_model_bytes"}``) leaves one mean test score per candidate and scoring
entry in ``cv_results_``. Every entry is greater-is-better (costs enter
negated, see :mod:`skopt_nn.search.scoring`), so one rule serves them all:

- :func:`pareto_front` keeps the candidates that no other candidate beats on
  every objective at once (``pareto_front_`` on every search holds the front
  over all its scoring entries);
- :func:`within` is a ``refit=`` callable, for the searches of
  :func:`~skopt_nn.make_search` and sklearn's own: the cheapest candidate
  whose score is within a tolerance of the best, under hard limits;
- :func:`non_dominated_sort`, :func:`epsilon_net_order` and
  :func:`crowding_distance` order candidates on several objectives at once,
  the rule by which a multi-objective search (``make_search(...,
  objectives=[...])``) promotes them (:func:`pareto_order`).
"""

from collections.abc import Mapping
import numbers

import numpy as np
from sklearn.utils._param_validation import InvalidParameterError

from .scoring import COST_SCORERS, CostScorer, resolve_scoring

__all__ = [
    "pareto_front", "within", "Within", "non_dominated_sort", "crowding_distance", "epsilon_net_order",
    "pareto_order",
]

TIE_BREAKS = ("epsilon_net", "crowding")


def _metric_names(cv_results):
    """The scoring entries of ``cv_results``, in the order the search wrote them."""
    return [key[len("mean_test_"):] for key in cv_results if key.startswith("mean_test_")]


def _mean(cv_results, name, what):
    key = f"mean_test_{name}"
    if key not in cv_results:
        names = _metric_names(cv_results)
        raise ValueError(
            f"{what} must name scoring entries of the search, one of {names}; got {name!r}."
            + (" A search with one scorer names it 'score'." if names == ["score"] else "")
        )
    return np.asarray(cv_results[key], dtype=float)


def _non_dominated(points):
    """Boolean mask of the rows of ``points`` (maximised) that no other row dominates."""
    n = len(points)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        at_least = np.all(points >= points[i], axis=1)
        better = np.any(points > points[i], axis=1)
        keep[i] = not np.any(at_least & better)
    return keep


def _points(points):
    points = np.asarray(points, dtype=float)
    if points.ndim != 2:
        raise ValueError(f"points must be a 2-D array (candidates x objectives); got shape {points.shape}.")
    return points


def non_dominated_sort(points):
    """The Pareto layer of each candidate: 0 for the front, 1 for the front once it is removed, ...

    Parameters
    ----------
    points : array-like of shape (n_candidates, n_objectives)
        Scores, every objective greater-is-better (sklearn's convention;
        costs enter negated, as ``neg_model_bytes``).

    Returns
    -------
    layers : ndarray of int of shape (n_candidates,)
        A candidate in layer ``k`` is dominated only by candidates of layers
        below ``k``. A row with a NaN (a failed candidate) gets layer ``-1``.

    Examples
    --------
    >>> from skopt_nn.search.pareto import non_dominated_sort
    >>> non_dominated_sort([[0.9, -2], [0.95, -9], [0.8, -9], [0.95, -9]]).tolist()
    [0, 0, 1, 0]
    """
    points = _points(points)
    layers = np.full(len(points), -1, dtype=int)
    left = np.flatnonzero(np.all(np.isfinite(points), axis=1))
    layer = 0
    while len(left):
        front = _non_dominated(points[left])
        layers[left[front]] = layer
        left = left[~front]
        layer += 1
    return layers


def crowding_distance(points):
    """NSGA-II's crowding distance of each candidate within one layer.

    The sum over objectives of the gap between a candidate's two neighbours
    on that objective, in units of the objective's range; the extremes of
    every objective get ``inf``, so a layer's ends are kept first.

    Parameters
    ----------
    points : array-like of shape (n_candidates, n_objectives)

    Returns
    -------
    distance : ndarray of shape (n_candidates,)
    """
    points = _points(points)
    n, m = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(points[:, k], kind="stable")
        values = points[order, k]
        span = values[-1] - values[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def epsilon_net_order(points, layers=None):
    """Candidates layer by layer, each layer farthest point first (an epsilon-net).

    Every objective is scaled to [0, 1] by its smallest and largest finite
    value. The first candidate is the best on the first objective among the
    front (ties by index); then, layer after layer, the next is always the
    one of the current layer farthest (Euclidean, scaled) from every
    candidate already taken, from this layer or an earlier one, ties by
    index. So each pick covers the part of the trade-off that those before
    it left most open, and a candidate close to one already taken waits,
    even in an earlier layer's shadow. Rows with a NaN come last, by index.

    Parameters
    ----------
    points : array-like of shape (n_candidates, n_objectives)
        Scores, every objective greater-is-better.
    layers : array-like of int, default=None
        Their :func:`non_dominated_sort` layers, when already known.

    Returns
    -------
    order : ndarray of int
        Indices into ``points``, first taken first.

    Examples
    --------
    >>> from skopt_nn.search.pareto import epsilon_net_order
    >>> epsilon_net_order([[0.8, -9], [0.9, -2], [0.95, -9], [0.93, -5], [0.94, -8]]).tolist()
    [2, 1, 3, 4, 0]
    """
    points = _points(points)
    layers = non_dominated_sort(points) if layers is None else np.asarray(layers)
    finite = np.flatnonzero(layers >= 0)
    order = []
    if len(finite):
        low, high = points[finite].min(axis=0), points[finite].max(axis=0)
        scaled = (points - low) / np.where(high > low, high - low, 1.0)
        # distance of every candidate to its nearest one taken so far
        gap = np.full(len(points), np.inf)
        for layer in range(layers.max() + 1):
            left = np.flatnonzero(layers == layer)
            while len(left):
                if order:
                    at = np.argmax(gap[left])  # argmax: the lowest index of a tie
                else:  # the front's best on the first objective starts
                    at = np.argmax(points[left, 0])
                pick = left[at]
                order.append(pick)
                left = np.delete(left, at)
                gap = np.minimum(gap, np.sqrt(((scaled - scaled[pick]) ** 2).sum(axis=1)))
    return np.concatenate([np.asarray(order, dtype=int), np.flatnonzero(layers < 0)])


def pareto_order(points, tie_break="epsilon_net"):
    """Candidates best first: by Pareto layer, then by a tie-break within the layer.

    The order in which a multi-objective search promotes: the whole front
    before anything it dominates, and within a layer what spreads over the
    trade-off before what bunches at one spot. Rows with a NaN come last.

    Parameters
    ----------
    points : array-like of shape (n_candidates, n_objectives)
        Scores, every objective greater-is-better.
    tie_break : {"epsilon_net", "crowding"}, default="epsilon_net"
        ``"epsilon_net"``: :func:`epsilon_net_order`, each next candidate
        the farthest from all those before it, earlier layers included
        (MO-ASHA's epsilon-net, Schmucker et al. 2021). ``"crowding"``:
        NSGA-II's rule, a layer's candidates by :func:`crowding_distance`
        within that layer alone (extremes first), then by index.

    Returns
    -------
    order : ndarray of int
        Indices into ``points``, best first.

    Examples
    --------
    >>> from skopt_nn.search.pareto import pareto_order
    >>> pareto_order([[0.8, -9], [0.9, -2], [0.95, -9], [0.93, -5]], tie_break="crowding").tolist()
    [1, 2, 3, 0]
    """
    points = _points(points)
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {list(TIE_BREAKS)}; got {tie_break!r}.")
    layers = non_dominated_sort(points)
    if tie_break == "epsilon_net":
        return epsilon_net_order(points, layers)
    crowd = np.zeros(len(points))
    for layer in np.unique(layers[layers >= 0]):
        rows = np.flatnonzero(layers == layer)
        crowd[rows] = crowding_distance(points[rows])
    index = np.arange(len(points))
    # lexsort sorts by its last key first: the layer (failures last), then the crowd, then the index
    return np.lexsort((index, -crowd, np.where(layers < 0, np.iinfo(int).max, layers)))


def pareto_front(cv_results, objectives):
    """The candidates of a search that no other candidate beats on every objective.

    Parameters
    ----------
    cv_results : dict
        A search's ``cv_results_`` (any engine, sklearn's too).
    objectives : list of str
        Scoring entries to trade, each greater-is-better (``"accuracy"``,
        ``"neg_model_bytes"``); the mean test scores are compared. ``"score"``
        names the score of a search with one scorer.

    Returns
    -------
    front : dict
        A table, one row per candidate on the front, best first on the first
        objective (then the next ones, then candidate order):
        ``"index"`` (the candidates' indices into ``cv_results``),
        ``"params"``, and ``"mean_test_<o>"`` and ``"std_test_<o>"`` for each
        objective. ``pandas.DataFrame(front)`` shows it. Candidates whose fits
        failed (a NaN score) are never on it; candidates with equal scores on
        every objective are kept together.

    Examples
    --------
    >>> from skopt_nn.search import pareto_front
    >>> results = {"params": [{"w": 8}, {"w": 64}, {"w": 256}],
    ...            "mean_test_accuracy": [0.90, 0.95, 0.95],
    ...            "mean_test_neg_model_bytes": [-2e3, -9e3, -4e4]}
    >>> pareto_front(results, ["accuracy", "neg_model_bytes"])["index"].tolist()
    [1, 0]
    """
    if isinstance(objectives, str) or not hasattr(objectives, "__iter__"):
        raise TypeError(f"objectives must be a list of scoring names; got {objectives!r}.")
    objectives = list(objectives)
    if not objectives:
        raise ValueError("objectives must name at least one scoring entry; got an empty list.")
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"objectives must be unique; got {objectives!r}.")
    points = np.column_stack([_mean(cv_results, name, "objectives") for name in objectives])
    finite = np.flatnonzero(np.all(np.isfinite(points), axis=1))
    front = finite[_non_dominated(points[finite])]
    # best first: lexsort sorts by its last key first, ascending
    order = np.lexsort((front, *(-points[front, k] for k in reversed(range(len(objectives))))))
    index = front[order]
    table = {"index": index}
    if "params" in cv_results:
        table["params"] = [cv_results["params"][i] for i in index]
    for name in objectives:
        table[f"mean_test_{name}"] = np.asarray(cv_results[f"mean_test_{name}"], dtype=float)[index]
        std = cv_results.get(f"std_test_{name}")
        if std is not None:
            table[f"std_test_{name}"] = np.asarray(std, dtype=float)[index]
    return table


class ParetoFrontMixin:
    """``pareto_front_`` for a search: the front over all its scoring entries."""

    @property
    def pareto_front_(self):
        """:func:`pareto_front` of ``cv_results_`` over every scoring entry of the search.

        With one scorer, the candidates that share the best mean score.
        """
        try:
            results = self.cv_results_
        except AttributeError:
            raise AttributeError(
                f"This {type(self).__name__} instance is not fitted yet; pareto_front_ "
                "exists after fit."
            ) from None
        return pareto_front(results, _metric_names(results))


def ranking_metric(search, cv_results):
    """The scoring entry a search's results are best read by: ``"score"``, the refit metric,
    the metric a refit policy holds to a tolerance (``within``), else the first objective or entry."""
    names = _metric_names(cv_results)
    if "score" in names or not names:
        return "score"
    refit = getattr(search, "refit", None)
    if isinstance(refit, str) and refit in names:
        return refit
    for name in (getattr(refit, "metric", None), *(getattr(search, "objectives", None) or ())):
        if name in names:
            return name
    return names[0]


def _n_splits(cv_results, name):
    return sum(1 for key in cv_results if key.startswith("split") and key.endswith(f"_test_{name}"))


class Within:
    """Refit policy: the cheapest candidate within ``tol`` of the best score.

    Made by :func:`within`; an instance is the callable that sklearn's
    ``refit=`` takes (``cv_results_ -> best_index_``), and pickles.
    """

    def __init__(self, metric, tol=0.01, minimize=None, constraints=None):
        self.metric = metric
        self.tol = tol
        self.minimize = minimize
        self.constraints = constraints

    def __repr__(self):
        args = [repr(self.metric), f"tol={self.tol!r}"]
        if self.minimize is not None:
            args.append(f"minimize={self.minimize!r}")
        if self.constraints:
            args.append(f"constraints={self.constraints!r}")
        return f"within({', '.join(args)})"

    def _check(self):
        tol = self.tol
        if not (tol == "se" or (isinstance(tol, numbers.Real) and not isinstance(tol, bool)
                                and np.isfinite(tol) and tol >= 0)):
            raise ValueError(
                "The 'tol' parameter of within must be a float in the range [0, inf) or a str "
                f"among {{'se'}}. Got {tol!r} instead."
            )
        if not isinstance(self.metric, str):
            raise TypeError(f"metric must be the name of a scoring entry; got {self.metric!r}.")
        if self.minimize is not None and not isinstance(self.minimize, str):
            raise TypeError(f"minimize must be the name of a scoring entry or None; got {self.minimize!r}.")
        if self.constraints is not None and not isinstance(self.constraints, dict):
            raise TypeError(
                "constraints must be a dict of scoring name -> limit, e.g. "
                f"{{'neg_model_bytes': 50_000}}; got {self.constraints!r}."
            )

    def feasible(self, cv_results):
        """Boolean mask of the candidates that meet every constraint and have finite scores."""
        names = [self.metric] + ([self.minimize] if self.minimize else []) + list(self.constraints or ())
        ok = np.ones(len(cv_results["params"]), dtype=bool)
        for name in names:
            ok &= np.isfinite(_mean(cv_results, name, "within"))
        for name, limit in (self.constraints or {}).items():
            mean = _mean(cv_results, name, "within")
            if not isinstance(limit, numbers.Real) or isinstance(limit, bool):
                raise TypeError(f"The limit of {name!r} in constraints must be a number; got {limit!r}.")
            # a cost (neg_...) is limited from above as the cost itself, a score from below
            ok &= (-mean <= limit) if name.startswith("neg_") else (mean >= limit)
        return ok

    def violations(self, cv_results, index):
        """How far candidate ``index`` is beyond each constraint, in the constraint's units.

        One value per entry of ``constraints``: ``<= 0`` where the candidate
        meets it (as Optuna's ``constraints_func`` reads them); ``inf`` where
        its score is not finite.
        """
        out = []
        for name, limit in (self.constraints or {}).items():
            mean = float(_mean(cv_results, name, "within")[index])
            excess = (-mean - limit) if name.startswith("neg_") else (limit - mean)
            out.append(excess if np.isfinite(excess) else np.inf)
        return out

    def __call__(self, cv_results):
        self._check()
        score = _mean(cv_results, self.metric, "within")
        ok = self.feasible(cv_results)
        if not ok.any():
            limits = f" that meets the constraints {self.constraints}" if self.constraints else ""
            raise ValueError(
                f"No candidate{limits} has a finite mean test score on {self.metric!r}; "
                "within has nothing to choose from."
            )
        candidates = np.flatnonzero(ok)
        best = candidates[np.argmax(score[candidates])]
        if self.tol == "se":
            n = _n_splits(cv_results, self.metric)
            std = np.asarray(cv_results.get(f"std_test_{self.metric}", np.zeros(len(score))), dtype=float)
            tol = std[best] / np.sqrt(max(n, 1))
        else:
            tol = float(self.tol)
        # a hair of slack: fold means of equal scores may differ in the last bit
        close = candidates[score[candidates] >= score[best] - tol - 1e-12]
        if self.minimize is None:
            return int(best)
        cost = _mean(cv_results, self.minimize, "within")
        # greatest cost score (smallest cost) first, then the best score, then candidate order
        order = np.lexsort((close, -score[close], -cost[close]))
        return int(close[order[0]])


def within(metric, tol=0.01, *, minimize=None, constraints=None):
    """A ``refit=`` callable: the cheapest candidate within ``tol`` of the best score.

    Parameters
    ----------
    metric : str
        The scoring entry whose best mean test score sets the bar
        (``"accuracy"``; ``"score"`` for a search with one scorer).
    tol : float or "se", default=0.01
        How far below the best a candidate may score, in the metric's units
        (0.01: one point of accuracy). ``"se"``: one standard error of the
        best candidate's score (its ``std_test_<metric>`` over the square root
        of the number of folds), the "one standard error" rule.
    minimize : str, default=None
        The scoring entry of the cost to minimise, e.g. ``"neg_model_bytes"``.
        Like every sklearn score it is greater-is-better, so the candidate
        with the highest value (the smallest cost) wins; ties go to the best
        ``metric`` score, then to the earlier candidate. ``None``: the best
        ``metric`` score under the constraints.
    constraints : dict, default=None
        Hard limits, ``{scoring name: limit}``. For a cost (a ``neg_`` name)
        the limit is on the cost itself: ``{"neg_model_bytes": 50_000}`` keeps
        the models of at most 50,000 bytes, ``{"neg_predict_latency": 1e-5}``
        those predicting a row in at most 10 microseconds. For any other
        score it is a floor: ``{"sparsity": 0.5}``. The best score is the best
        among the candidates that meet them.

    Returns
    -------
    refit : Within
        Pass it as ``refit=`` (the search's ``scoring`` must hold ``metric``,
        ``minimize`` and the constrained names). ``best_index_`` is then its
        choice; sklearn leaves ``best_score_`` unset with a callable refit.

    Raises
    ------
    ValueError
        When called on a search whose results hold no such scoring entry,
        whose ``tol`` is negative, or where no candidate meets the
        constraints.

    Examples
    --------
    >>> from skopt_nn.search import within
    >>> results = {"params": [{"w": 8}, {"w": 64}, {"w": 256}],
    ...            "mean_test_accuracy": [0.90, 0.945, 0.95],
    ...            "mean_test_neg_model_bytes": [-2e3, -9e3, -4e4]}
    >>> within("accuracy", tol=0.01, minimize="neg_model_bytes")(results)
    1
    """
    policy = Within(metric, tol=tol, minimize=minimize, constraints=constraints)
    policy._check()
    return policy


# -- multi-objective searches: objectives=[...]


def check_objectives(objectives, scoring, owner):
    """``(objectives, scoring)`` checked for a multi-objective search.

    ``objectives`` must be a list of at least two unique scoring names;
    ``scoring`` ``None`` becomes the objectives themselves (cost names
    resolved), otherwise it must be a list or dict holding every objective.
    """
    if (isinstance(objectives, str) or not isinstance(objectives, (list, tuple)) or len(objectives) < 2
            or not all(isinstance(o, str) for o in objectives) or len(set(objectives)) != len(objectives)):
        raise InvalidParameterError(
            f"The 'objectives' parameter of {owner} must be a list of at least two unique scoring names "
            f"(str) or None. Got {objectives!r} instead."
        )
    objectives = list(objectives)
    scoring = resolve_scoring(objectives if scoring is None else scoring)
    if not isinstance(scoring, (Mapping, list, tuple)):
        raise ValueError(
            "objectives trades several scoring entries: scoring must be None (the objectives "
            f"themselves) or a list or dict holding every objective; got scoring={scoring!r}."
        )
    names = list(scoring)
    missing = [o for o in objectives if o not in names]
    if missing:
        raise ValueError(f"objectives must name scoring entries of the search, one of {names}; got {missing[0]!r}.")
    return objectives, scoring


def check_search_objectives(search):
    """Check the ``objectives`` of an sklearn search class, whose ``scoring`` must hold them.

    sklearn's machinery has scored the candidates by ``search.scoring`` by
    then, so ``None`` cannot become the objectives here, as
    :func:`~skopt_nn.make_search` makes it.
    """
    if search.scoring is None:
        raise ValueError(
            "objectives trades several scoring entries: scoring must hold them (pass "
            "scoring=objectives, or build the search with make_search, which does)."
        )
    check_objectives(search.objectives, search.scoring, type(search).__name__)


def default_refit(objectives, scoring):
    """The model a multi-objective search refits when ``refit`` is left at ``True``.

    With a cost among the objectives (a cost scorer such as
    ``neg_model_bytes``, by name or as :func:`~skopt_nn.get_scorer` made
    it) and a score, the tolerance policy
    ``within(score, tol=0.01, minimize=cost)``: the cheapest model within
    one point of the best. Otherwise the best on the first objective, which
    is on the front.

    Parameters
    ----------
    objectives : list of str
        The search's objectives, checked.
    scoring : list or dict
        The search's scoring, holding the objectives.

    Returns
    -------
    refit : Within or str
        What ``refit=`` becomes.

    Examples
    --------
    >>> from skopt_nn.search.pareto import default_refit
    >>> default_refit(["accuracy", "neg_model_bytes"], ["accuracy", "neg_model_bytes"])
    within('accuracy', tol=0.01, minimize='neg_model_bytes')
    >>> default_refit(["f1_macro", "accuracy"], ["f1_macro", "accuracy"])
    'f1_macro'
    """
    def is_cost(name):
        scorer = scoring[name] if isinstance(scoring, Mapping) else name
        return isinstance(scorer, CostScorer) or (isinstance(scorer, str) and scorer in COST_SCORERS)

    costs = [o for o in objectives if is_cost(o)]
    scores = [o for o in objectives if not is_cost(o)]
    if costs and scores:
        return within(scores[0], tol=0.01, minimize=costs[0])
    return objectives[0]
