"""The distillation loss, for one student and for the members of a stacked group.

:class:`DistillationLoss` is the criterion of a plain fit; its
:meth:`~DistillationLoss.stacked` form computes the same loss row by row for
the members of a fused group at once, each with its own temperature and
alpha (``training.fused``).
"""

import torch
import torch.nn.functional as F
from torch import nn

from ._losses import _TINY, weighted_mean
from ._task import rows_inner, task_of

__all__ = ["DistillationLoss"]

# Label given to synthetic rows of a classification batch: they carry no
# hard label, so the cross-entropy term skips them.
_NO_LABEL = -1
# torch's code for reduction="sum", for its kernel called without the wrapper.
_SUM = torch.nn._reduction.get_enum("sum")


class DistillationLoss(nn.Module):
    """Loss of a student learning from a teacher's outputs and the true targets.

    Classification (Hinton et al. 2015)::

        alpha * T**2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(y, s)

    Multilabel (one sigmoid per label; ``BCE`` averaged over the labels)::

        alpha * T**2 * BCE(sigmoid(s / T), sigmoid(t / T)) + (1 - alpha) * BCE(sigmoid(s), y)

    Regression::

        alpha * MSE(s, t) + (1 - alpha) * MSE(s, y)

    where ``s`` are the student's outputs and ``t`` the teacher's. The loss
    is called as ``loss(s, (y, t))`` or, with one weight per row,
    ``loss(s, (y, t, w))``: the KL term is the weighted mean over all rows,
    the hard term the weighted mean over the rows that have a label
    (synthetic rows are marked by the label ``-1`` for classification and
    ``NaN`` for regression), each ``sum(w * l) / sum(w)``.

    Parameters
    ----------
    task : {"classification", "multilabel", "regression"}
        What the student predicts.
    temperature : float, default=4.0
        Softmax temperature ``T``; ignored for regression.
    alpha : float, default=0.5
        Weight of the teacher term.
    log_target : bool, default=False
        For classification: the teacher outputs ``t`` are given already
        softened, as ``log_softmax(t / T)`` (see ``soften``), so that a fit
        computes them once rather than in every batch.

    Examples
    --------
    >>> import torch
    >>> from skopt_nn.specs.distillation import DistillationLoss
    >>> loss = DistillationLoss("classification", temperature=2.0, alpha=0.0)
    >>> s, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    >>> bool(torch.isclose(loss(s, (y, torch.zeros(1, 2))), torch.nn.functional.cross_entropy(s, y)))
    True
    """

    def __init__(self, task, temperature=4.0, alpha=0.5, *, log_target=False):
        super().__init__()
        self.task = task
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.log_target = bool(log_target)

    def soften(self, teacher):
        """The teacher's log-probabilities at the temperature, ``log_softmax(t / T)``.

        What ``log_target=True`` expects in place of the teacher's scores:
        computed once for a fit's rows, it spares every batch this step.
        """
        return F.log_softmax(teacher / self.temperature, dim=1)

    def forward(self, y_pred, target):
        y_true, teacher, *rest = target
        weight = rest[0] if rest else None  # None: equal weights
        soft = hard = 0.0
        if self.task == "classification":
            if self.alpha > 0:
                T = self.temperature
                log_p = teacher if self.log_target else self.soften(teacher)
                log_q = F.log_softmax(y_pred / T, dim=1)
                if weight is None:
                    # torch's kernel with a sum, scaled once below: F.kl_div's
                    # "batchmean" costs a Python wrapper and a division per batch
                    soft = torch.kl_div(log_q, log_p, reduction=_SUM, log_target=True)
                    soft_scale = T * T / len(y_pred)
                else:
                    per_row = F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(dim=1)
                    soft = weighted_mean(per_row, weight)
                    soft_scale = T * T
            if self.alpha < 1:
                if weight is None:
                    # the mean over the labelled rows; every batch has some (its real rows)
                    hard = F.cross_entropy(y_pred, y_true, ignore_index=_NO_LABEL)
                else:
                    per_row = F.cross_entropy(y_pred, y_true, ignore_index=_NO_LABEL, reduction="none")
                    labelled = (y_true != _NO_LABEL).to(per_row.dtype)
                    hard = weighted_mean(per_row, weight * labelled)
            if self.alpha == 1:
                return soft * soft_scale
            if self.alpha == 0:
                return hard
            # one fused multiply-add
            return torch.add(hard * (1 - self.alpha), soft, alpha=self.alpha * soft_scale)
        elif self.task == "multilabel":
            if self.alpha > 0:
                T = self.temperature
                per_row = F.binary_cross_entropy_with_logits(
                    y_pred / T, torch.sigmoid(teacher / T), reduction="none"
                ).mean(dim=1)
                soft = weighted_mean(per_row, weight) * (T * T)
            if self.alpha < 1:
                labelled = ~torch.isnan(y_true[:, 0])
                per_row = F.binary_cross_entropy_with_logits(
                    y_pred, torch.nan_to_num(y_true), reduction="none"
                ).mean(dim=1)
                mask = labelled.to(per_row.dtype)
                hard = weighted_mean(per_row, mask if weight is None else weight * mask)
        else:
            y_pred = y_pred.reshape(teacher.shape)
            n = len(y_pred)
            if self.alpha > 0:
                if weight is None:
                    soft = F.mse_loss(y_pred, teacher)
                else:
                    soft = weighted_mean((y_pred - teacher).pow(2).reshape(n, -1).mean(dim=1), weight)
            if self.alpha < 1:
                y_true = y_true.reshape(teacher.shape)
                labelled = (~torch.isnan(y_true)).reshape(n, -1)
                diff = torch.where(labelled, (y_pred - torch.nan_to_num(y_true)).reshape(n, -1), 0.0)
                # Each labelled value counts once, weighted by its row.
                hard = weighted_mean(diff.pow(2).sum(dim=1), weight) / weighted_mean(
                    labelled.sum(dim=1).to(diff.dtype), weight
                ).clamp_min(_TINY)
        if self.alpha == 1:
            return soft
        if self.alpha == 0:
            return hard
        return self.alpha * soft + (1 - self.alpha) * hard

    # -- the fused trainer's form (training.fused): row losses of K members
    def fused_key(self):
        """Members whose criteria share this key train with one :meth:`stacked` loss."""
        return ("distillation", self.task, self.log_target)

    @staticmethod
    def stacked(criteria):
        """The loss of each member's rows, ``(K, rows)``, for the members' ``criteria``."""
        return _StackedDistillation(criteria)


class _StackedDistillation:
    """Row losses of K students, each with its own temperature and alpha.

    The same terms as :class:`DistillationLoss` without synthetic rows
    (fused training refuses a transfer set), per row so that a member's
    loss is the (weighted) mean of its rows as in a plain fit.
    """

    def __init__(self, criteria):
        first = criteria[0]
        self.task, self.log_target = first.task, first.log_target
        self.temperature = torch.tensor([c.temperature for c in criteria]).view(-1, 1)
        self.alpha = torch.tensor([c.alpha for c in criteria]).view(-1, 1)

    def keep(self, index):
        self.temperature, self.alpha = self.temperature[index], self.alpha[index]

    def __call__(self, out, y, teacher):
        T, alpha = self.temperature.to(out.dtype), self.alpha.to(out.dtype)
        if self.task == "classification" and rows_inner(out):
            # Every term laid out (K, classes, rows), from one copy of the
            # outputs: the gradients flowing back keep that layout, so both
            # softmax backward passes take torch's fast kernel too.
            T3 = T.unsqueeze(-1)
            ot = out.transpose(-1, -2).contiguous()
            log_p = teacher.transpose(-1, -2)
            log_p = log_p.contiguous() if self.log_target else torch.log_softmax(log_p / T3, -2)
            log_q = torch.log_softmax(ot / T3, -2)
            soft = (log_p.exp() * (log_p - log_q)).sum(-2) * (T * T)
            hard = -torch.log_softmax(ot, -2).gather(-2, y.unsqueeze(-2)).squeeze(-2)
            return alpha * soft + (1 - alpha) * hard
        if self.task == "classification":
            T3 = T.unsqueeze(-1)
            log_p = teacher if self.log_target else torch.log_softmax(teacher / T3, -1)
            log_q = torch.log_softmax(out / T3, -1)
            soft = (log_p.exp() * (log_p - log_q)).sum(-1) * (T * T)
        elif self.task == "multilabel":
            T3 = T.unsqueeze(-1)
            soft = F.binary_cross_entropy_with_logits(
                out / T3, torch.sigmoid(teacher / T3), reduction="none").mean(-1) * (T * T)
        else:
            soft = (out - teacher.reshape(out.shape)).pow(2).mean(-1)
        hard = task_of(self.task).row_loss(out, y)
        return alpha * soft + (1 - alpha) * hard
