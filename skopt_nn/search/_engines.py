"""Configured searches over skopt_nn estimators, and a robust Bayesian search.

:func:`make_search` turns one :class:`~skopt_nn.SearchSpace` into a grid,
random, Bayesian or successive-halving search; :func:`default_space` proposes
a space for an estimator; :class:`RobustBayesSearchCV` is scikit-optimize's
``BayesSearchCV`` made to accept any categorical choice and to survive fits
that fail.
"""

import contextlib
import numbers
from collections.abc import Mapping

import numpy as np
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils import check_random_state
from skopt import BayesSearchCV
from skopt.space import Categorical as _SkoptCategorical
from skopt.space import Dimension, check_dimension
from skopt.callbacks import check_callback
from skopt.utils import eval_callbacks, point_asdict

from ..training._base import BaseNN
from ..training._find import shallowest_networks
from ._checkpoint import SearchCheckpoint, fingerprint, replaying
from ._failed_steps import _tolerate_failed_steps
from ._fused import FusedGridSearchCV, FusedRandomizedSearchCV
from ._optuna import OptunaSearchCV
from ._refit import GridSearchCV, HalvingRandomSearchCV, RandomizedSearchCV, RefitFallback
from .pareto import check_objectives, check_search_objectives, default_refit
from .scoring import resolve_scoring
from .spaces import Categorical, Integer, KeyedCategorical, Real, SearchSpace, _is_plain

__all__ = ["make_search", "default_space", "RobustBayesSearchCV", "OptunaSearchCV"]

_METHODS = ("asha", "bayes", "grid", "halving", "optuna", "random")
_FUSED_METHODS = ("asha", "grid", "random")
_MULTI_OBJECTIVE_METHODS = ("asha", "bayes", "grid", "optuna", "random")


# -- finding the skopt_nn estimator inside a Pipeline or meta-estimator -------


def _find_target(estimator):
    """Return ``(prefix, nn_estimator)`` for the skopt_nn estimator to tune.

    The shallowest skopt_nn estimator among the nested parameters wins, so a
    distillation teacher nested inside the student is never picked. Without
    one, a Pipeline's final step (or the estimator itself) is the target, so
    spaces also aim at plain sklearn estimators.
    """
    if isinstance(estimator, BaseNN):
        return "", estimator
    shallowest = shallowest_networks(estimator)
    if shallowest:
        if len(shallowest) > 1:
            names = sorted(n for n, _ in shallowest)
            raise ValueError(
                f"{type(estimator).__name__} holds several skopt_nn estimators "
                f"{names}; pass prefix= to say which one the space is for."
            )
        name, target = shallowest[0]
        return name + "__", target
    steps = getattr(estimator, "steps", None)
    if steps:
        name, final = steps[-1]
        if hasattr(final, "get_params"):
            return name + "__", final
    return "", estimator


def _route(space, estimator, prefix, target):
    """Aim each name of ``space`` at ``target`` unless it already has a home.

    A name that starts with ``prefix`` is kept as written; one whose first
    part names a parameter of the target gets ``prefix``; one naming only a
    parameter of the outer estimator (another Pipeline step, say) is kept.
    Anything else is refused now rather than at the first fit.
    """
    target_params = set(target.get_params(deep=False))
    # Step names only show up among the deep parameters.
    outer_heads = {key.partition("__")[0] for key in estimator.get_params(deep=True)}
    routed = {}
    for name, dim in space.items():
        head = name.partition("__")[0]
        if prefix and name.startswith(prefix):
            routed[name] = dim
        elif head in target_params:
            routed[prefix + name] = dim
        elif prefix and head in outer_heads:
            routed[name] = dim
        else:
            step = f" (step {prefix[:-2]!r})" if prefix else ""
            raise ValueError(
                f"Invalid parameter {name!r} for estimator {type(target).__name__}"
                f"{step}; valid parameters are {sorted(target_params)}."
            )
    return SearchSpace(routed)


def _as_space(space):
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, Mapping):
        return SearchSpace(space)
    raise TypeError(
        f"space must be a SearchSpace or a dict of dimensions; got {type(space).__name__}."
    )


# -- default_space ------------------------------------------------------------


def default_space(estimator):
    """Propose a search space for the active parts of a skopt_nn estimator.

    The space reads the estimator's parameters (``get_params``) and covers
    what a first search usually tunes:

    - ``lr`` (log scale, 1e-4 to 1e-1) and ``weight_decay`` (log, 1e-6 to 1e-2);
    - ``batch_size`` (16 to 256, log) and ``optimizer`` (``sgd``, ``adam``,
      ``adamw``) when it is given by name;
    - ``lr_schedule`` (``constant``, ``cosine``, ``onecycle``) when it is
      given by name;
    - the network: width and depth (``module__width``,
      ``module__n_layers``) or the dense head of a CNN (``module__hidden``),
      and ``module__dropout``. A ``module=None`` estimator gets the default
      ``MLP()`` pinned in the space so these have an object to land on;
    - ``pruning__amount`` and ``pruning__schedule`` when ``pruning`` is set,
      ``distillation__temperature`` and ``distillation__alpha`` when
      ``distillation`` is set.

    Parameters
    ----------
    estimator : estimator
        A skopt_nn estimator, or a Pipeline or meta-estimator holding one
        (the names then carry its step's prefix).

    Returns
    -------
    SearchSpace

    See Also
    --------
    make_search : use the space (or a narrowed copy of it).

    Examples
    --------
    >>> from skopt_nn import NNClassifier, MLP, default_space
    >>> space = default_space(NNClassifier(MLP()))
    >>> space["lr"]
    Real(0.0001, 0.1, log=True)
    >>> "pruning__amount" in space
    False
    """
    prefix, target = _find_target(estimator)
    if not isinstance(target, BaseNN):
        raise TypeError(
            "default_space needs a skopt_nn estimator (NNClassifier, NNRegressor) "
            f"or a Pipeline holding one; got {type(target).__name__}."
        )
    params = target.get_params(deep=True)
    dims = {}

    def offer(name, dim):
        if name in params:
            dims[name] = dim

    offer("lr", Real(1e-4, 1e-1, log=True))
    offer("batch_size", Integer(16, 256, log=True))
    if isinstance(params.get("optimizer"), str):
        offer("optimizer", Categorical(["sgd", "adam", "adamw"]))
    offer("weight_decay", Real(1e-6, 1e-2, log=True))
    if isinstance(params.get("lr_schedule"), str):
        offer("lr_schedule", Categorical(["constant", "cosine", "onecycle"]))

    if "module" in params and params["module"] is None:
        from ..specs.modules import MLP

        # set_params applies module=MLP() before module__*, so the nested
        # values land on the pinned spec within the same candidate.
        dims["module"] = Categorical([MLP()])
        params.update({f"module__{k}": v for k, v in MLP().get_params().items()})
    if "module__width" in params and "module__n_layers" in params:
        dims["module__width"] = Integer(16, 256, log=True)
        dims["module__n_layers"] = Integer(1, 3)
    offer("module__hidden", Integer(32, 256, log=True))
    offer("module__dropout", Real(0.0, 0.5))

    if params.get("pruning") is not None:
        offer("pruning__amount", Real(0.3, 0.9))
        offer("pruning__schedule", Categorical(["one_shot", "gradual"]))
    if params.get("distillation") is not None:
        offer("distillation__temperature", Real(1.0, 10.0, log=True))
        offer("distillation__alpha", Real(0.1, 0.9))

    return SearchSpace(dims).prefixed(prefix)


# -- the robust Bayesian search -----------------------------------------------

def _to_skopt_dimension(value, name):
    """Render one entry of a Bayes subspace as a skopt dimension."""
    if isinstance(value, (Real, Integer, Categorical)):
        return value.skopt(name)
    if isinstance(value, _SkoptCategorical) and not isinstance(value, KeyedCategorical):
        if not all(_is_plain(c) for c in value.categories):
            return KeyedCategorical(value.categories, prior=value.prior, name=name)
        return value
    if isinstance(value, Dimension):
        return value
    if isinstance(value, list) and not all(_is_plain(c) for c in value):
        return KeyedCategorical(value, name=name)
    # Plain lists and tuples keep scikit-optimize's own reading: (low, high)
    # is a range, a list of strings is categorical.
    return check_dimension(value)


def _subspaces(search_spaces):
    """``[(dims, n_iter or None)]`` with every value a skopt dimension."""
    if isinstance(search_spaces, Mapping):
        search_spaces = [search_spaces]
    if not isinstance(search_spaces, list) or not search_spaces:
        raise TypeError(
            "search_spaces must be a SearchSpace, a dict of dimensions or a "
            f"non-empty list of them (or of (dict, n_iter) tuples); got {search_spaces!r}."
        )
    subspaces = []
    for entry in search_spaces:
        n_iter = None
        if isinstance(entry, tuple):
            if len(entry) != 2 or not isinstance(entry[1], numbers.Integral) or entry[1] < 0:
                raise ValueError(
                    "A (space, n_iter) entry of search_spaces must hold a dict and a "
                    f"non-negative int; got {entry!r}."
                )
            entry, n_iter = entry
        if not isinstance(entry, Mapping) or not entry:
            raise TypeError(
                f"Each search space must be a non-empty dict of dimensions; got {entry!r}."
            )
        dims = {name: _to_skopt_dimension(value, name) for name, value in entry.items()}
        subspaces.append((dims, n_iter))
    return subspaces


def _decode(dims, point):
    """Map an optimizer point (list, sorted by name) to estimator parameters."""
    native = [np.asarray(value).item() for value in point]
    params = dict(point_asdict(dims, native))
    for name, value in params.items():
        if isinstance(dims[name], KeyedCategorical):
            params[name] = dims[name].decode(value)
    return params, native


class _BayesSearchCV(BayesSearchCV):
    """``BayesSearchCV`` that takes a callable ``refit`` when it has objectives.

    skopt refuses a callable refit because the optimizer would have no score
    to minimise; with ``objectives`` it has one (their scalarisation).
    """

    def fit(self, X, y=None, *, groups=None, callback=None, **fit_params):
        if getattr(self, "objectives", None) is None or not callable(self.refit):
            return super().fit(X, y, groups=groups, callback=callback, **fit_params)
        self._callbacks = check_callback(callback)
        self.optimizer_kwargs_ = dict(self.optimizer_kwargs or {})
        return BaseSearchCV.fit(self, X, y, groups=groups, **fit_params)

    def _check_refit_for_multimetric(self, scores):
        if getattr(self, "objectives", None) is not None and callable(self.refit):
            return BaseSearchCV._check_refit_for_multimetric(self, scores)
        return super()._check_refit_for_multimetric(scores)


class RobustBayesSearchCV(RefitFallback, _BayesSearchCV):
    """scikit-optimize's ``BayesSearchCV`` for any choices and failing fits.

    Same parameters and attributes as :class:`skopt.BayesSearchCV`. Two
    differences:

    - **Any categorical choice.** Tuples (``module__hidden_layer_sizes``),
      ``None`` and spec objects work as categories: the optimizer sees one
      string key per choice (:class:`~skopt_nn.search.spaces.KeyedCategorical`)
      and the estimator, ``cv_results_['params']``, ``best_params_`` and
      ``best_estimator_`` see the real values. ``search_spaces`` may also be
      a :class:`~skopt_nn.SearchSpace`.
    - **Failed fits do not end the search.** With a non-``'raise'``
      ``error_score``, a candidate whose fits fail is recorded as sklearn
      records it (``error_score``, NaN by default, with a
      ``FitFailedWarning``), and the optimizer is told the worst finite
      score measured so far for it, so it learns to avoid the region
      without a huge value distorting its surrogate model. Points that
      failed before any finite score existed are updated once one does.

    - **Checkpoints.** With ``checkpoint=path`` every evaluated candidate
      is written to a JSON file after each step; a search started again
      with the same path replays those points instead of refitting them
      (the optimizer is told them, as skopt's ``x0``/``y0`` would) and
      evaluates only the rest of its ``n_iter``. ``cv_results_`` covers
      every point. The file is refused if the space, the number of CV
      splits or the scoring changed. Resume with the same estimator and
      data: the file cannot tell.

    - **Several objectives.** With ``objectives`` (scoring entries, all
      maximised; ``scoring`` must hold them, as :func:`make_search` sets
      it) the search is ParEGO's (Knowles 2006): before each step a weight
      vector is drawn on the simplex, every point so far is told the
      augmented Chebyshev scalarisation of its objectives (each scaled to
      [0, 1] over the points measured, weight ``0.05`` on the weighted
      sum), and the surrogate is refitted on them, so that successive
      steps aim at different parts of the front (``objective_weights_``
      lists the weights, one vector a step). ``pareto_front_`` holds the
      front found.

    ``optimizers_`` and ``optimizer_results_`` hold the optimizer's view:
    keys for keyed categories, penalties for failed points.
    ``error_score`` keeps scikit-optimize's default ``'raise'``;
    :func:`skopt_nn.make_search` sets ``np.nan``.

    See Also
    --------
    make_search : builds this search from a SearchSpace.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from skopt_nn import MLP, NNClassifier, Categorical, Real, SearchSpace
    >>> from skopt_nn.search import RobustBayesSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> space = SearchSpace({
    ...     "lr": Real(1e-3, 1e-1, log=True),
    ...     "module__hidden_layer_sizes": Categorical([(8,), (8, 8)]),
    ... })
    >>> search = RobustBayesSearchCV(
    ...     NNClassifier(MLP(), max_epochs=2, random_state=0), space,
    ...     n_iter=3, cv=2, error_score=np.nan, random_state=0,
    ... ).fit(X, y)
    >>> search.best_params_["module__hidden_layer_sizes"] in [(8,), (8, 8)]
    True
    """

    def __init__(
        self,
        estimator,
        search_spaces,
        optimizer_kwargs=None,
        n_iter=50,
        scoring=None,
        fit_params=None,
        n_jobs=1,
        n_points=1,
        iid="deprecated",
        refit=True,
        cv=None,
        verbose=0,
        pre_dispatch="2*n_jobs",
        random_state=None,
        error_score="raise",
        return_train_score=False,
        checkpoint=None,
        objectives=None,
    ):
        super().__init__(
            estimator, search_spaces, optimizer_kwargs=optimizer_kwargs, n_iter=n_iter,
            scoring=scoring, fit_params=fit_params, n_jobs=n_jobs, n_points=n_points, iid=iid,
            refit=refit, cv=cv, verbose=verbose, pre_dispatch=pre_dispatch,
            random_state=random_state, error_score=error_score,
            return_train_score=return_train_score,
        )
        self.checkpoint = checkpoint
        self.objectives = objectives

    def _check_search_space(self, search_space):
        _subspaces(search_space)

    def _format_results(self, candidate_params, n_splits, out, more_results=None):
        # The per-split results of every candidate so far, for the checkpoint.
        self._split_results = out
        return super()._format_results(candidate_params, n_splits, out, more_results)

    @property
    def total_iterations(self):
        """Number of candidates ``fit`` evaluates over all subspaces."""
        return sum(
            self.n_iter if n_iter is None else n_iter
            for _, n_iter in _subspaces(self.search_spaces)
        )

    def _score_key(self, results):
        if isinstance(self.scoring, str) or self.scoring is None:
            return "mean_test_score"
        if callable(self.scoring):
            names = [k[len("mean_test_"):] for k in results if k.startswith("mean_test_")]
            if len(names) == 1:
                return f"mean_test_{names[0]}"
            self._check_refit_for_multimetric(names)
        return f"mean_test_{self.refit}"

    def _scores(self, results, weights):
        """Every candidate's score to maximise: the metric's, or the objectives' scalarisation."""
        if self.objectives is None:
            return np.asarray(results[self._score_key(results)], dtype=float)
        return chebyshev(np.column_stack([results[f"mean_test_{name}"] for name in self.objectives]), weights)

    def _run_search(self, evaluate_candidates):
        weights_rng = check_random_state(self.random_state)
        self.objective_weights_ = []
        if self.objectives is not None:
            check_search_objectives(self)
        self.optimizer_kwargs_["random_state"] = check_random_state(self.random_state)
        callbacks = getattr(self, "_callbacks", None) or []
        subspaces = _subspaces(self.search_spaces)
        self.optimizers_ = [self._make_optimizer(dims) for dims, _ in subspaces]
        self._optim_results = []
        results = scores = None
        checkpoint = None
        if self.checkpoint is not None:
            checkpoint = SearchCheckpoint(self.checkpoint, fingerprint(self, subspaces))

        for index, ((dims, n_iter), optimizer) in enumerate(zip(subspaces, self.optimizers_)):
            n_iter = self.n_iter if n_iter is None else n_iter
            failed = []  # positions in optimizer.yi that stand in for failures
            result = None
            done = checkpoint.points(index)[:n_iter] if checkpoint is not None else []
            while n_iter > 0:
                replay = contextlib.nullcontext()
                if done:  # one step that replays the checkpoint's points
                    points = [p["x"] for p in done]
                    replay = replaying(self, [p["out"] for p in done])
                    n_points = len(points)
                else:
                    n_points = min(n_iter, self.n_points)
                    points = optimizer.ask(n_points=n_points)
                n_iter -= n_points
                decoded = [_decode(dims, p) for p in points]
                with _tolerate_failed_steps(), replay:
                    results = evaluate_candidates([params for params, _ in decoded])
                if checkpoint is not None and not done:
                    outs = self._split_results[-n_points * self.n_splits_ :]
                    checkpoint.record(index, [native for _, native in decoded], outs, self.n_splits_)
                done = []
                weights = None
                if self.objectives is not None:
                    weights = weights_rng.dirichlet(np.ones(len(self.objectives)))
                    self.objective_weights_.append(weights)
                scores = self._scores(results, weights)
                finite = scores[np.isfinite(scores)]
                # The optimizer minimises; a failure costs as much as the
                # worst score seen, or 0 until any score is seen.
                penalty = -float(finite.min()) if finite.size else 0.0
                start = len(optimizer.yi)
                told = []
                for offset, score in enumerate(scores[-n_points:]):
                    if np.isfinite(score):
                        told.append(-float(score))
                    else:
                        failed.append(start + offset)
                        told.append(penalty)
                if self.objectives is not None:  # this step's weights rescore every earlier point
                    earlier = scores[len(scores) - n_points - start: len(scores) - n_points]
                    for position, score in enumerate(earlier):
                        if np.isfinite(score):
                            optimizer.yi[position] = -float(score)
                # Earlier stand-ins follow the worst score as it moves; the
                # surrogate is refitted on them by the tell below.
                for position in failed:
                    if position < start:
                        optimizer.yi[position] = penalty
                result = optimizer.tell([native for _, native in decoded], told)
                if eval_callbacks(callbacks, result):
                    break
            self._optim_results.append(result)
        self.__dict__.pop("_split_results", None)
        if results is not None and not np.isfinite(scores).any():
            # As sklearn's searches do when nothing fits: no best point exists.
            raise ValueError(
                f"All the {scores.size} candidates of the Bayesian search failed; "
                "set error_score='raise' to see why."
            )


def chebyshev(points, weights, rho=0.05):
    """ParEGO's augmented Chebyshev scalarisation of maximised objectives, greater-is-better.

    Each objective is scaled to [0, 1] over the finite rows (1: the best
    measured), its shortfall ``1 - scaled`` weighted; the score is minus the
    largest weighted shortfall minus ``rho`` times their sum. Rows with a NaN
    score NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from skopt_nn.search._engines import chebyshev
    >>> points = np.array([[0.9, -2e3], [0.95, -9e3], [0.8, -9e3]])
    >>> chebyshev(points, np.array([0.5, 0.5])).round(3).tolist()
    [-0.175, -0.525, -0.55]
    """
    points = np.asarray(points, dtype=float)
    finite = np.all(np.isfinite(points), axis=1)
    scores = np.full(len(points), np.nan)
    if not finite.any():
        return scores
    low, high = points[finite].min(axis=0), points[finite].max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    shortfall = weights * (high - points[finite]) / span
    scores[finite] = -(shortfall.max(axis=1) + rho * shortfall.sum(axis=1))
    return scores


# -- make_search --------------------------------------------------------------


def make_search(estimator, space=None, method="bayes", *, prefix=None, grid_points=None, fuse=False,
                objectives=None, **kwargs):
    """Build a configured search over ``estimator`` from one search space.

    Parameters
    ----------
    estimator : estimator
        A skopt_nn estimator, or a Pipeline (or other meta-estimator) holding
        one; the space's names are then prefixed with that step's name.
    space : SearchSpace or dict, default=None
        Dimensions keyed by parameter name. A plain dict may hold
        :class:`~skopt_nn.Real`, :class:`~skopt_nn.Integer`,
        :class:`~skopt_nn.Categorical` or lists of choices. ``None`` uses
        :func:`default_space`.
    method : {"bayes", "grid", "random", "halving", "optuna", "asha"}, default="bayes"
        ``"bayes"``: :class:`RobustBayesSearchCV` (a ``skopt.BayesSearchCV``);
        ``"grid"``: ``GridSearchCV`` over ``space.grid(grid_points)``;
        ``"random"``: ``RandomizedSearchCV`` over ``space.distributions()``;
        ``"halving"``: ``HalvingRandomSearchCV`` over the same distributions
        with the epochs as the resource (``resource="max_epochs"``,
        ``max_resources`` the estimator's ``max_epochs``); it restarts each
        rung from scratch;
        ``"optuna"``: :class:`OptunaSearchCV` over the space itself, an
        Optuna study (TPE) whose ``storage`` may be persistent; ``n_iter``
        is taken as its ``n_trials``.
        ``"asha"``: :class:`~skopt_nn.search.ASHASearchCV`, asynchronous
        successive halving whose candidates continue training from rung to
        rung up to ``max_epochs`` (``min_epochs``, ``reduction_factor``,
        ``backend="ray"`` for Ray Tune).
    prefix : str, default=None
        Prefix for the names of ``space``; ``None`` finds the skopt_nn
        estimator's step, ``""`` uses the names as written.
    grid_points : int, default=None
        Points per range dimension for ``method="grid"`` (3 when None).
    fuse : bool, default=False
        For ``"grid"``, ``"random"`` and ``"asha"``: train the candidates that
        share an architecture, on all their CV folds, together as one stacked
        model (:class:`~skopt_nn.search.FusedGridSearchCV`,
        :class:`~skopt_nn.search.FusedRandomizedSearchCV`, or the rungs of
        :class:`~skopt_nn.search.ASHASearchCV` in waves; ``fuse_max_members``
        caps a group). The result is the same kind of search object; fits
        that cannot fuse run as ordinary fits, with one warning.
    objectives : list of str, default=None
        Scoring entries to trade against each other, all greater-is-better
        as sklearn's scores are (``["accuracy", "neg_model_bytes"]``; costs
        enter negated): a multi-objective search. ``scoring`` defaults to the
        objectives themselves, or must hold them; ``refit`` defaults to
        ``within(score, tol=0.01, minimize=cost)`` when a cost is among them
        (the cheapest model within one point of the best), else to the first
        objective; ``pareto_front_`` holds the trade-off found. For
        ``"asha"`` the promotions rank candidates by non-dominated sorting
        (ties by crowding distance) instead of by one score; ``"grid"`` and
        ``"random"`` score every candidate on every objective anyway.
    **kwargs
        Passed to the search class, e.g. ``n_iter``, ``cv``, ``scoring``,
        ``n_jobs``, ``random_state``; they override the defaults here.
        ``error_score`` defaults to ``np.nan`` for every method, so a fit
        that fails (a :class:`~skopt_nn.DivergenceError`, say) is recorded
        with a ``FitFailedWarning`` and the search goes on. ``checkpoint``
        (a JSON file path, ``"bayes"`` only) makes a long search resumable;
        see :class:`RobustBayesSearchCV`.

    Returns
    -------
    search : BaseSearchCV or ASHASearchCV
        Unfitted; call ``fit(X, y)``. The grid, random and halving searches
        are subclasses of sklearn's classes of the same names that differ
        in one point, shared by every method: if the refit of the best
        candidate on all the data diverges, the next-best candidate is
        refitted instead, with a warning naming both, and ``best_index_``,
        ``best_params_`` and ``best_score_`` describe the refitted one.

    See Also
    --------
    SearchSpace, default_space, RobustBayesSearchCV

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skopt_nn import MLP, NNClassifier, Categorical, Real, make_search
    >>> X, y = load_iris(return_X_y=True)
    >>> pipe = make_pipeline(
    ...     StandardScaler(), NNClassifier(MLP((8,)), max_epochs=3, random_state=0)
    ... )
    >>> search = make_search(
    ...     pipe,
    ...     {"lr": Real(1e-3, 1e-1, log=True),
    ...      "module__hidden_layer_sizes": Categorical([(8,), (8, 8)])},
    ...     method="grid", grid_points=2, cv=2,
    ... )
    >>> sorted(search.param_grid)
    ['nnclassifier__lr', 'nnclassifier__module__hidden_layer_sizes']
    >>> search.fit(X, y).best_params_["nnclassifier__module__hidden_layer_sizes"] in [(8,), (8, 8)]
    True
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)}; got {method!r}.")
    if grid_points is not None and method != "grid":
        raise ValueError(f"grid_points only applies to method='grid'; got method={method!r}.")
    if space is None:
        space = default_space(estimator)  # already carries the step prefix
    elif prefix is None:
        space = _route(_as_space(space), estimator, *_find_target(estimator))
    elif isinstance(prefix, str):
        space = _as_space(space).prefixed(prefix)
    else:
        raise TypeError(f"prefix must be a string or None; got {prefix!r}.")
    if not space:
        raise ValueError("space must hold at least one dimension; got an empty space.")

    if fuse and method not in _FUSED_METHODS:
        raise ValueError(f"fuse=True applies to method in {list(_FUSED_METHODS)}; got method={method!r}.")
    if "fuse_max_members" in kwargs and not fuse:
        raise ValueError("fuse_max_members applies only with fuse=True.")
    if "checkpoint" in kwargs and method != "bayes":
        raise ValueError(f"checkpoint only applies to method='bayes'; got method={method!r}.")
    kwargs.setdefault("error_score", np.nan)
    if objectives is not None:
        if method not in _MULTI_OBJECTIVE_METHODS:
            raise ValueError(
                f"objectives applies to method in {list(_MULTI_OBJECTIVE_METHODS)}; got method={method!r}."
            )
        objectives, kwargs["scoring"] = check_objectives(objectives, kwargs.get("scoring"), "make_search")
        if kwargs.get("refit", True) is True:
            kwargs["refit"] = default_refit(objectives, kwargs["scoring"])
    if "scoring" in kwargs:  # the cost scorers by name, beside sklearn's
        kwargs["scoring"] = resolve_scoring(kwargs["scoring"])
    if method == "asha":
        from .asha import ASHASearchCV

        return ASHASearchCV(estimator, space, fuse=fuse, objectives=objectives, **kwargs)
    if method == "bayes":
        return RobustBayesSearchCV(estimator, space.skopt(), objectives=objectives, **kwargs)
    if method == "grid":
        n = 3 if grid_points is None else grid_points
        return (FusedGridSearchCV if fuse else GridSearchCV)(estimator, space.grid(n), **kwargs)
    if method == "random":
        return (FusedRandomizedSearchCV if fuse else RandomizedSearchCV)(
            estimator, space.distributions(), **kwargs)
    if method == "optuna":
        if "n_iter" in kwargs:  # the other methods' name for the number of candidates
            if "n_trials" in kwargs:
                raise TypeError("Pass n_trials or n_iter for method='optuna', not both.")
            kwargs["n_trials"] = kwargs.pop("n_iter")
        return OptunaSearchCV(estimator, space, objectives=objectives, **kwargs)

    if "resource" not in kwargs:
        epochs_name = _epochs_param(estimator)
        if epochs_name is not None:
            kwargs["resource"] = epochs_name
            kwargs.setdefault("max_resources", estimator.get_params()[epochs_name])
    resource = kwargs.get("resource", "n_samples")
    if resource in space:
        raise ValueError(
            f"{resource!r} is the halving resource and cannot also be searched; "
            "drop it from the space or pass another resource=."
        )
    return HalvingRandomSearchCV(estimator, space.distributions(), **kwargs)


def _epochs_param(estimator):
    """The estimator's epoch budget as a halving resource name, if it has one."""
    prefix, target = _find_target(estimator)
    if "max_epochs" in target.get_params(deep=False):
        return prefix + "max_epochs"
    return None
