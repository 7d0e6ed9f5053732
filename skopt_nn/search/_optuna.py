"""An sklearn search driven by an Optuna study, for any choice and any storage.

Optuna's storages keep a trial's parameters as JSON, and its categorical
distributions accept only ``None``, bools, ints, floats and strings. A
categorical dimension holding anything else (a tuple such as
``hidden_layer_sizes``, a spec such as ``LRSchedule(...)``) is therefore
given to the study as one string key per choice, and every point is decoded
back to the real values before it reaches the estimator, ``cv_results_``,
``best_params_`` and ``best_estimator_``. The trials are fitted and scored
by sklearn's own search machinery (``BaseSearchCV``), so refitting,
multi-metric scoring and ``n_jobs`` behave as in ``RandomizedSearchCV``.
"""

import numbers
import warnings

import numpy as np
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from ._refit import RefitFallback
from .pareto import check_search_objectives
from .spaces import Categorical, SearchSpace, _choice_keys, as_dimension

__all__ = ["OptunaSearchCV"]


def _json_native(value):
    # What optuna's CategoricalDistribution and its JSON storages hold as is.
    return value is None or type(value) in (bool, int, float, str)


class _Keyed:
    """A categorical dimension shown to Optuna as string keys."""

    def __init__(self, choices):
        self.choices = tuple(choices)
        self.keys = _choice_keys(self.choices)

    def decode(self, key):
        try:
            return self.choices[self.keys.index(key)]
        except ValueError:
            raise ValueError(
                f"The study holds the key {key!r}, which is not one of this space's choices "
                f"{list(self.keys)}; was the study created with another space?"
            ) from None


def _render(space):
    """``(optuna distributions, decoders)`` for a space; decoders only for keyed choices."""
    import optuna

    distributions, decoders = {}, {}
    for name, value in space.items():
        dim = as_dimension(value, name)
        if isinstance(dim, Categorical) and not all(_json_native(c) for c in dim.choices):
            keyed = _Keyed(dim.choices)
            distributions[name] = optuna.distributions.CategoricalDistribution(keyed.keys)
            decoders[name] = keyed
        else:
            distributions[name] = dim.optuna()
    return distributions, decoders


class OptunaSearchCV(RefitFallback, BaseSearchCV):
    """Hyperparameter search driven by an Optuna study, with any choice and storage.

    Each trial asks the study (its sampler, TPE by default) for a point of
    ``param_distributions``, cross-validates the estimator there as
    ``RandomizedSearchCV`` would, and tells the study the mean test score
    (maximised). Tuples, ``None`` and spec objects are valid choices: the
    study stores one string key per choice of such a dimension (keys such
    as ``"(128, 64)"`` or ``"LRSchedule('cosine')"``), so a persistent
    storage (``storage="sqlite:///search.db"``) works, and the keys are
    decoded back to the real values in ``cv_results_``, ``best_params_``
    and ``best_estimator_``.

    A trial whose fits fail, a :class:`~skopt_nn.DivergenceError` included,
    is recorded with ``error_score`` in ``cv_results_`` (with sklearn's
    ``FitFailedWarning``) and told to the study as a failed trial, its
    reason in the trial's ``user_attrs["fail_reason"]`` and
    ``user_attrs["diverged"]`` set when the loss stopped being finite. The
    search goes on; it raises only if every trial failed.

    Parameters
    ----------
    estimator : estimator
        The estimator (or Pipeline) to tune.
    param_distributions : SearchSpace or dict
        Dimensions keyed by parameter name (``Real``, ``Integer``,
        ``Categorical`` or lists of choices), with the full names the
        estimator's ``set_params`` takes. :func:`~skopt_nn.make_search`
        routes short names to a Pipeline's step.
    n_trials : int, default=10
        Number of trials this ``fit`` runs (a study loaded from a storage
        keeps its earlier trials and adds these).
    scoring, n_jobs, refit, cv, verbose, pre_dispatch, return_train_score
        As for ``sklearn.model_selection.RandomizedSearchCV``. With several
        metrics, ``refit`` names the one the study maximises.
    error_score : 'raise' or float, default=np.nan
        Score recorded for a trial whose fit fails.
    random_state : int, RandomState instance or None, default=None
        Seeds the default TPE sampler; ignored when ``sampler`` is given.
    sampler : optuna.samplers.BaseSampler, default=None
        The study's sampler; ``None`` is ``TPESampler(seed=...)``.
    storage : str or optuna.storages.BaseStorage, default=None
        Where the study lives, e.g. ``"sqlite:///search.db"``; ``None``
        keeps it in memory.
    study_name : str, default=None
        Name of the study in ``storage``; an existing study of that name is
        loaded and continued.
    timeout : float, default=None
        Stop starting new trials after this many seconds.
    objectives : list of str, default=None
        Scoring entries to trade (all maximised): a multi-objective study
        (``directions``), each trial told its mean test score on every
        objective. ``scoring`` must hold them (:func:`~skopt_nn.make_search`
        sets it, and ``refit``, for you). The default sampler is then
        Optuna's multi-objective TPE; pass ``NSGAIISampler``, ``GPSampler``
        or another multi-objective sampler as ``sampler``. The study's own
        front is ``study_.best_trials``; ``pareto_front_`` is the same front
        read from ``cv_results_``. With ``refit=within(...,
        constraints={...})`` (one objective or several) each trial records
        how far it is beyond each limit, for a sampler's ``constraints_func``
        (:meth:`constraints_func`, which the default sampler then uses).

    Attributes
    ----------
    study_ : optuna.study.Study
        The study, with this fit's trials (and earlier ones from the
        storage). Its trials' ``params`` hold keys for keyed choices; use
        :meth:`decode` to read the real values.
    cv_results_, best_params_, best_score_, best_index_, best_estimator_, \
scorer_, n_splits_, refit_time_, multimetric_
        As for ``RandomizedSearchCV``, with real values for every choice.

    See Also
    --------
    skopt_nn.make_search : builds this search with ``method="optuna"``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skopt_nn import MLP, NNClassifier, Categorical, LRSchedule, Real, SearchSpace
    >>> from skopt_nn.search import OptunaSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> space = SearchSpace({
    ...     "lr": Real(1e-3, 1e-1, log=True),
    ...     "module__hidden_layer_sizes": Categorical([(8,), (8, 8)]),
    ...     "lr_schedule": Categorical(["constant", LRSchedule("cosine")]),
    ... })
    >>> search = OptunaSearchCV(
    ...     NNClassifier(MLP(), max_epochs=2, random_state=0), space,
    ...     n_trials=3, cv=2, random_state=0,
    ... ).fit(X, y)
    >>> search.best_params_["module__hidden_layer_sizes"] in [(8,), (8, 8)]
    True
    >>> len(search.study_.trials)
    3
    """

    _parameter_constraints = {
        **BaseSearchCV._parameter_constraints,
        "param_distributions": [dict, SearchSpace],
        "n_trials": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "sampler": "no_validation",
        "storage": "no_validation",
        "study_name": [str, None],
        "timeout": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "objectives": "no_validation",  # checked with scoring, in sklearn's wording, by check_objectives
    }

    def __init__(
        self,
        estimator,
        param_distributions,
        *,
        n_trials=10,
        scoring=None,
        n_jobs=None,
        refit=True,
        cv=None,
        verbose=0,
        pre_dispatch="2*n_jobs",
        random_state=None,
        error_score=np.nan,
        return_train_score=False,
        sampler=None,
        storage=None,
        study_name=None,
        timeout=None,
        objectives=None,
    ):
        super().__init__(
            estimator=estimator,
            scoring=scoring,
            n_jobs=n_jobs,
            refit=refit,
            cv=cv,
            verbose=verbose,
            pre_dispatch=pre_dispatch,
            error_score=error_score,
            return_train_score=return_train_score,
        )
        self.param_distributions = param_distributions
        self.n_trials = n_trials
        self.random_state = random_state
        self.sampler = sampler
        self.storage = storage
        self.study_name = study_name
        self.timeout = timeout
        self.objectives = objectives

    def decode(self, params):
        """Real values for a study trial's ``params`` (keys of keyed choices decoded).

        Parameters
        ----------
        params : dict
            A trial's parameters, e.g. ``search.study_.best_trial.params``.

        Returns
        -------
        dict
        """
        _, decoders = _render(self.param_distributions)
        return {name: decoders[name].decode(v) if name in decoders else v for name, v in params.items()}

    def _make_study(self):
        import optuna

        sampler = self.sampler
        if sampler is None:
            seed = self.random_state
            if seed is not None and not isinstance(seed, numbers.Integral):
                seed = int(check_random_state(seed).randint(np.iinfo(np.int32).max))
            constrained = bool(getattr(self.refit, "constraints", None))
            sampler = optuna.samplers.TPESampler(
                seed=seed, constraints_func=self.constraints_func if constrained else None)
        directions = ["maximize"] * (len(self.objectives) if self.objectives is not None else 1)
        return optuna.create_study(
            storage=self.storage, sampler=sampler, study_name=self.study_name,
            directions=directions, load_if_exists=self.study_name is not None,
        )

    @staticmethod
    def constraints_func(trial):
        """Optuna's ``constraints_func``: a trial's excess over the refit's constraints (``<= 0``: met).

        The search records them on each trial when ``refit`` is
        ``within(..., constraints={...})``; pass this to a sampler of your
        own (``NSGAIISampler(constraints_func=OptunaSearchCV.constraints_func)``)
        to have it steer clear of infeasible regions, as the default sampler
        then does.
        """
        return trial.user_attrs.get("constraints", [])

    def _objective_values(self, results):
        """What a trial tells the study: its mean test score, or one per objective."""
        if self.objectives is None:
            return float(results[self._objective_key(results)][-1])
        return [float(results[f"mean_test_{name}"][-1]) for name in self.objectives]

    def _objective_key(self, results):
        if "mean_test_score" in results:
            return "mean_test_score"
        if not isinstance(self.refit, str):
            raise ValueError(
                "With several metrics in scoring, refit must name the metric the study maximises; "
                f"got refit={self.refit!r}."
            )
        return f"mean_test_{self.refit}"

    def _run_search(self, evaluate_candidates):
        import optuna

        if self.objectives is not None:
            check_search_objectives(self)

        distributions, decoders = _render(self.param_distributions)
        verbosity = optuna.logging.get_verbosity()
        if not self.verbose:  # one INFO line per trial otherwise
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            self._trials(optuna, distributions, decoders, evaluate_candidates)
        finally:
            optuna.logging.set_verbosity(verbosity)

    def _trials(self, optuna, distributions, decoders, evaluate_candidates):
        from ._failed_steps import _tolerate_failed_steps

        self.study_ = study = self._make_study()
        scores = []

        def objective(trial):
            # Suggested one by one (not ask(distributions)) so that every
            # sampler works, GridSampler included, inside study.optimize.
            params = {}
            for name, dist in distributions.items():
                value = _suggest(optuna, trial, name, dist)
                params[name] = decoders[name].decode(value) if name in decoders else value
            with warnings.catch_warnings(record=True) as caught, _tolerate_failed_steps():
                warnings.simplefilter("always", FitFailedWarning)
                results = evaluate_candidates([params])
            failures = [str(w.message) for w in caught if issubclass(w.category, FitFailedWarning)]
            for w in caught:  # shown to the user as if not caught
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            values = self._objective_values(results)
            score = float(np.sum(values))  # finite when every value is
            scores.append(score)
            trial.set_user_attr("cv_results_index", len(results["params"]) - 1)
            if getattr(self.refit, "constraints", None):
                trial.set_user_attr("constraints", self.refit.violations(results, len(results["params"]) - 1))
            if not np.isfinite(score):
                reason = failures[-1] if failures else f"the mean test score is {score}"
                trial.set_user_attr("fail_reason", reason[-2000:])
                trial.set_user_attr("diverged", "DivergenceError" in reason)
            return values  # a NaN marks the trial failed

        study.optimize(objective, n_trials=self.n_trials, timeout=self.timeout)
        if scores and not np.isfinite(scores).any():
            raise ValueError(
                f"All the {len(scores)} trials of the Optuna search failed; set error_score='raise' to see why."
            )


def _suggest(optuna, trial, name, dist):
    d = optuna.distributions
    if isinstance(dist, d.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
