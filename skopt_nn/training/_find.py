"""Where the skopt_nn network sits inside an estimator, one answer for the whole package.

Searches, cost scorers, plotting and the command line all take a network,
a Pipeline holding one, or another meta-estimator; they find it with these
two functions rather than each with its own walk.
"""

from sklearn.pipeline import Pipeline

from ._base import BaseNN

__all__ = ["shallowest_networks", "final_network"]


def shallowest_networks(estimator):
    """``[(path, network), ...]``: the skopt_nn estimators nearest the top of ``estimator``.

    ``[("", estimator)]`` for a skopt_nn estimator. For a Pipeline or another
    meta-estimator, the networks among its nested parameters (``path`` is the
    parameter name, ``step`` or ``step__inner``) at the smallest depth, in
    ``get_params`` order, so a distillation teacher nested inside the student
    is never among them. ``[]`` when there is none.
    """
    if isinstance(estimator, BaseNN):
        return [("", estimator)]
    if not hasattr(estimator, "get_params"):
        return []
    found = [(name, value) for name, value in estimator.get_params(deep=True).items()
             if isinstance(value, BaseNN)]
    if not found:
        return []
    depth = min(name.count("__") for name, _ in found)
    return [(name, value) for name, value in found if name.count("__") == depth]


def final_network(estimator):
    """``(step name or None, network)`` when the network is ``estimator`` or a Pipeline's final step.

    The form that trains a network after fitting the steps before it, as
    fused searches and ASHA's rungs do; ``(None, None)`` otherwise.
    """
    if isinstance(estimator, BaseNN):
        return None, estimator
    if isinstance(estimator, Pipeline) and isinstance(estimator.steps[-1][1], BaseNN):
        return estimator.steps[-1][0], estimator.steps[-1][1]
    return None, None
