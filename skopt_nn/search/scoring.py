"""Cost scorers: what a fitted model costs to store and to run, as sklearn scorers.

Every sklearn scorer says how good a model is, greater being better; these
say what it costs, by the same convention: a cost enters negated
(``neg_model_bytes`` is minus the bytes), so a search can rank, a refit can
choose and :func:`~skopt_nn.search.pareto_front` can trade them against
accuracy without being told which way each one points.

=========================  =====================================================
name                       the measure (of the fitted estimator a fold scores)
=========================  =====================================================
``neg_model_bytes``        minus the bytes ``joblib.dump`` writes for it (the
                           whole estimator: a Pipeline with its scaler)
``neg_weight_bytes``       minus the bytes of its network's weights as stored:
                           int8 weights 1 byte each, shrunk layers at their
                           shrunk size, buffers included
``neg_nonzero_params``     minus the number of its network's non-zero weights
``neg_predict_latency``    minus the seconds ``predict`` takes per row of the
                           scored rows: the fastest of 5 timed calls after one
                           untimed call; it depends on the machine and on what
                           else runs on it, so compare it within one search
``sparsity``               its network's ``sparsity_`` (the share of weights
                           pruned), 0.0 for a network that was not pruned
=========================  =====================================================

Every engine of :func:`~skopt_nn.make_search` takes these names in
``scoring=``, alone, in a list or as values of a dict, beside sklearn's own
names. sklearn's own search classes take the scorer objects:
``GridSearchCV(..., scoring={"accuracy": "accuracy", "bytes":
get_scorer("neg_model_bytes")})``.
"""

import copy
import io
import time
from collections.abc import Mapping

import joblib
from sklearn.metrics import get_scorer as _sklearn_get_scorer
from sklearn.metrics import get_scorer_names as _sklearn_scorer_names

from ..specs.quantization import nonzero_params, weight_nbytes
from ..training._find import shallowest_networks

__all__ = ["get_scorer", "get_scorer_names", "resolve_scoring", "find_network", "COST_SCORERS"]

LATENCY_REPEAT = 5


def find_network(estimator):
    """The fitted skopt_nn network of ``estimator``: itself, or the one inside it.

    A Pipeline (or other meta-estimator) is searched through its parameters;
    the shallowest skopt_nn estimator wins, so a distillation teacher inside
    the student is never taken. Returns ``None`` when there is none.
    """
    found = shallowest_networks(estimator)
    return found[0][1] if found else None


def _network_module(estimator, name):
    network = find_network(estimator)
    if network is None or not hasattr(network, "module_"):
        raise ValueError(
            f"The scorer {name!r} measures the network of a fitted skopt_nn estimator "
            "(NNClassifier or NNRegressor, alone or as a step of a Pipeline); "
            f"got {type(estimator).__name__}, which holds none."
        )
    return network, network.module_


def _model_bytes(estimator, X, name):
    network = find_network(estimator)
    if network is not None and hasattr(network, "module_"):
        # A candidate between the rungs of a multi-fidelity search keeps what
        # continuing needs (its optimizer state); measure it as a finished fit.
        finished = network._as_finished()
        if finished is not network:
            if estimator is network:
                estimator = finished
            elif hasattr(estimator, "steps") and estimator.steps[-1][1] is network:
                estimator = copy.copy(estimator)
                estimator.steps = [*estimator.steps[:-1], (estimator.steps[-1][0], finished)]
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getbuffer().nbytes


def _weight_bytes(estimator, X, name):
    return weight_nbytes(_network_module(estimator, name)[1])


def _nonzero_params(estimator, X, name):
    return nonzero_params(_network_module(estimator, name)[1])


def _sparsity(estimator, X, name):
    network, _ = _network_module(estimator, name)
    return float(getattr(network, "sparsity_", 0.0))


def _predict_latency(estimator, X, name):
    n_rows = X.shape[0] if hasattr(X, "shape") else len(X)
    if not n_rows:
        raise ValueError(f"The scorer {name!r} times predict on the scored rows; got 0 rows.")
    estimator.predict(X)  # untimed: first-call costs (thread pools, kernel choice)
    best = float("inf")
    for _ in range(LATENCY_REPEAT):
        start = time.perf_counter()
        estimator.predict(X)
        best = min(best, time.perf_counter() - start)
    return best / n_rows


class CostScorer:
    """An sklearn scorer that measures a fitted model instead of its predictions.

    Called as every scorer is, ``scorer(estimator, X, y)``; ``y`` and sample
    weights are ignored, ``X`` is used by the latency alone. Build one with
    :func:`get_scorer`.
    """

    def __init__(self, name, measure, sign):
        self.name = name
        self._measure = measure
        self._sign = sign

    def __call__(self, estimator, X, y=None, **kwargs):
        return self._sign * float(self._measure(estimator, X, self.name))

    def __repr__(self):
        return f"get_scorer({self.name!r})"


COST_SCORERS = {
    "neg_model_bytes": (_model_bytes, -1),
    "neg_weight_bytes": (_weight_bytes, -1),
    "neg_nonzero_params": (_nonzero_params, -1),
    "neg_predict_latency": (_predict_latency, -1),
    "sparsity": (_sparsity, 1),
}


def get_scorer_names():
    """Every scorer name :func:`get_scorer` knows: sklearn's and the cost scorers."""
    return sorted(set(_sklearn_scorer_names()) | set(COST_SCORERS))


def get_scorer(scoring):
    """The scorer named ``scoring``: a cost scorer, or sklearn's scorer of that name.

    Parameters
    ----------
    scoring : str or callable
        One of :func:`get_scorer_names`; a callable is returned as it is.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, greater is better.

    Examples
    --------
    >>> from skopt_nn.search import get_scorer
    >>> get_scorer("neg_model_bytes")
    get_scorer('neg_model_bytes')
    """
    if isinstance(scoring, str) and scoring in COST_SCORERS:
        measure, sign = COST_SCORERS[scoring]
        return CostScorer(scoring, measure, sign)
    try:
        return _sklearn_get_scorer(scoring)
    except ValueError:
        raise ValueError(
            f"{scoring!r} is not a valid scoring value. Use skopt_nn.get_scorer_names() "
            "to get valid options."
        ) from None


def resolve_scoring(scoring):
    """``scoring`` as sklearn's searches take it, with the cost scorers' names resolved.

    A cost scorer's name becomes its scorer; a list or tuple of names becomes
    a dict keyed by the names (sklearn's own reading of a list); sklearn's
    names, callables and ``None`` are kept as they are, for sklearn to check.
    """
    if isinstance(scoring, str):
        scorer = get_scorer(scoring)  # an unknown name is refused here, listing ours too
        return scorer if scoring in COST_SCORERS else scoring
    if isinstance(scoring, (list, tuple, set, frozenset)):
        names = list(scoring)
        if len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
            raise ValueError(
                "The list/tuple elements must be unique strings of predefined scorers. "
                f"Got {scoring!r}"
            )
        resolved = {name: resolve_scoring(name) for name in names}
        return resolved if any(name in COST_SCORERS for name in names) else scoring
    if isinstance(scoring, Mapping):
        return {key: resolve_scoring(value) if isinstance(value, str) else value
                for key, value in scoring.items()}
    return scoring
