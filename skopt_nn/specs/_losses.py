"""Per-sample weighted training losses.

Every fit carries its rows' weights next to their targets, unless all
weights are equal (no ``sample_weight`` and no ``class_weight``, or
constant ones): such a fit runs the plain, fused mean losses, and weights
of ones give the very same model as no weights. The loss of a
batch is the weighted mean of its rows' losses::

    sum(w_i * loss_i) / sum(w_i)

Two consequences the docs rely on: multiplying every weight by one constant
changes nothing, and with one batch per epoch (``batch_size`` at least the
number of rows) an integer weight is the same as repeating the row that many
times, and a zero weight the same as leaving the row out. With smaller
batches the equivalence holds in expectation only: a batch's weights are
normalised within the batch.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ._task import task_of

__all__ = ["weighted_mean", "WeightedLoss"]

# Denominator floor: a batch whose weights are all zero contributes a zero
# loss (and no gradient) instead of 0 / 0.
_TINY = torch.finfo(torch.float32).tiny


def weighted_mean(values, weight=None):
    """``sum(weight * values) / sum(weight)`` over the first axis (the rows).

    ``weight=None`` stands for ones. A batch whose weights sum to zero gives 0.

    Examples
    --------
    >>> import torch
    >>> from skopt_nn.specs._losses import weighted_mean
    >>> float(weighted_mean(torch.tensor([1.0, 3.0]), torch.tensor([3.0, 1.0])))
    1.5
    """
    if weight is None:
        return values.mean()
    weight = weight.to(values.dtype)
    return (weight * values).sum() / weight.sum().clamp_min(_TINY)


class WeightedLoss(nn.Module):
    """Cross-entropy (classification), binary cross-entropy (multilabel) or squared error, weighted per row.

    Called as ``loss(y_pred, (y_true, weight))``, or ``loss(y_pred, y_true)``
    for equal weights; the per-row squared error
    of a multi-output regression is the mean over its outputs, so unit
    weights give ``nn.MSELoss``'s value.

    Parameters
    ----------
    task : {"classification", "multilabel", "regression"}
        ``"multilabel"`` takes a float indicator matrix ``y_true`` and one
        logit per label; a row's loss is the mean of its labels' binary
        cross-entropies, as in sklearn's ``MLPClassifier``.

    Examples
    --------
    >>> import torch
    >>> from skopt_nn.specs._losses import WeightedLoss
    >>> s, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    >>> plain = torch.nn.functional.cross_entropy(s, y)
    >>> bool(torch.isclose(WeightedLoss("classification")(s, (y, torch.ones(2))), plain))
    True
    """

    def __init__(self, task):
        super().__init__()
        self.task = task

    def forward(self, y_pred, target):
        # skorch hands a tuple target over as a list
        y_true, weight = target if isinstance(target, (tuple, list)) else (target, None)
        if weight is None:  # the fused mean kernels: unweighted fits pay nothing
            if self.task == "classification":
                return F.cross_entropy(y_pred, y_true)
            if self.task == "multilabel":
                return F.binary_cross_entropy_with_logits(y_pred, y_true)
            y_true = y_true.reshape(len(y_true), -1)
            return F.mse_loss(y_pred.reshape(y_true.shape), y_true)
        return weighted_mean(task_of(self.task).row_loss(y_pred, y_true), weight)

    # -- the fused trainer's form (training.fused): row losses of K members
    def fused_key(self):
        """Members whose criteria share this key train with one :meth:`stacked` loss."""
        return ("rows", self.task)

    @staticmethod
    def stacked(criteria):
        """The loss of each member's rows, ``(K, rows)``, for the members' ``criteria``."""
        return _StackedRows(task_of(criteria[0].task))


class _StackedRows:
    """Row losses of K members of one task (nothing per member to keep)."""

    def __init__(self, task):
        self.task = task

    def keep(self, index):
        pass

    def __call__(self, out, y):
        return self.task.row_loss(out, y)
