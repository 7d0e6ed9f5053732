"""Deep ensembles (``n_ensemble=K``): K seeds of one network trained fused, outputs averaged.

The members differ only in their ``random_state`` (initial weights,
shuffling, dropout), so they are one fused group (``_fused``) and train in
about the time of a few. The fitted network is an :class:`Ensemble` module
whose output is the members' average: for a classifier, the logarithm of
the mean of their class probabilities (so ``softmax`` of it, what
``predict_proba`` computes, is the mean probability), for a regressor the
mean prediction.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.utils import check_random_state
from torch import nn

from .fused import fit_fused, fusable

__all__ = ["Ensemble", "fit_members"]


class Ensemble(nn.Module):
    """The average of several networks of one task.

    Parameters
    ----------
    members : list of nn.Module
        Networks with the same inputs and outputs.
    task : {"classification", "multilabel", "regression"}
        Classification averages probabilities and returns their logarithm
        (logits whose softmax is the mean probability); multilabel returns
        the logit of each label's mean probability; regression averages the
        outputs.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skopt_nn.training._ensemble import Ensemble
    >>> a, b = nn.Linear(2, 3), nn.Linear(2, 3)
    >>> x = torch.randn(4, 2)
    >>> mean = (a(x).softmax(1) + b(x).softmax(1)) / 2
    >>> bool(torch.allclose(Ensemble([a, b], "classification")(x).softmax(1), mean, atol=1e-6))
    True
    """

    def __init__(self, members, task):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.task = task

    def forward(self, x):
        outs = torch.stack([member(x) for member in self.members])
        k = math.log(len(self.members))
        if self.task == "classification":
            return torch.logsumexp(torch.log_softmax(outs, dim=-1), dim=0) - k
        if self.task == "multilabel":  # the logit of each label's mean probability
            log_p = torch.logsumexp(F.logsigmoid(outs), dim=0) - k
            log_q = torch.logsumexp(F.logsigmoid(-outs), dim=0) - k
            return log_p - log_q
        return outs.mean(0)


def member_seeds(random_state, n):
    """The ``random_state`` of each of ``n`` members, drawn from the ensemble's."""
    rng = check_random_state(random_state)
    return [int(s) for s in rng.randint(np.iinfo(np.int32).max, size=n)]


def fit_members(estimator, X, y, sample_weight=None, *, epochs=None, members=None):
    """Fit ``estimator.n_ensemble`` copies of ``estimator`` with their own seeds, fused.

    Returns the fitted members (plain estimators with ``n_ensemble=1``, not
    quantized: the ensemble is quantized whole).
    ``epochs`` trains ``members`` (or new ones) that many more epochs of
    their fit, continuing (``fit_fused(..., epochs=...)``).
    Raises the first member's error if any member's fit fails, and a
    ``ValueError`` if the settings cannot train fused.
    """
    if members is None:
        seeds = member_seeds(estimator.random_state, estimator.n_ensemble)
        members = [clone(estimator).set_params(n_ensemble=1, random_state=seed, quantization=None) for seed in seeds]
    reason = fusable(members[0])
    if reason is not None:
        raise ValueError(
            f"n_ensemble={estimator.n_ensemble} trains its members together as one stacked model, "
            f"which needs settings that fuse; here {reason}. Use n_ensemble=1 with these settings."
        )
    outcomes = fit_fused([(member, X, y, sample_weight) for member in members],
                         epochs=None if epochs is None else [epochs] * len(members))
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    return [outcome.estimator for outcome in outcomes]
