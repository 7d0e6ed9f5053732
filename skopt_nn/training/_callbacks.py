"""The skorch callbacks every plain fit runs: the divergence guard and the validation score.

Both are part of the plain epoch loop (``_base``); the fused trainer
(``fused``) checks the same things on its stacked members, with the same
errors from ``_stopping``.
"""

import math

import torch
from skorch.callbacks import Callback

from ..specs._task import task_of
from ._loop import last_batch_value
from ._stopping import loss_diverged

__all__ = ["DivergenceGuard", "ValidScore"]


class DivergenceGuard(Callback):
    """Stop at the first batch whose training loss is not finite."""

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if not training:
            return
        # skorch has just recorded loss.item(); reading it back avoids a
        # second device synchronisation per batch on a GPU.
        loss = last_batch_value(net.history, "train_loss")
        if not math.isfinite(loss):
            group = net.optimizer_.param_groups[0]
            # the estimator's rate: a group with its own share (a head's, a layer's) says it apart
            raise loss_diverged(len(net.history), loss, group["lr"] / group.get("lr_scale", 1.0))


class ValidScore(Callback):
    """Accuracy (subset accuracy if multilabel) or R² on the validation rows, weighted.

    Computed from the predictions skorch already makes for the validation
    loss, so it costs no extra forward pass; recorded as ``valid_score``.
    The rows' sample weights count as in sklearn's ``accuracy_score`` and
    ``r2_score`` with ``sample_weight``.
    """

    def __init__(self, task, weighted=False):
        self.task = task
        self.weighted = weighted

    def on_epoch_begin(self, net, **kwargs):
        self.parts_ = []

    def on_batch_end(self, net, batch=None, training=None, y_pred=None, **kwargs):
        if training or y_pred is None:
            return
        # y, (y, weight), (y, teacher_out) or (y, teacher_out, weight)
        target = batch[1]
        y = target[0] if isinstance(target, (tuple, list)) else target
        w = target[-1].detach() if self.weighted else None
        self.parts_.append((y_pred.detach(), y.detach(), w))

    def on_epoch_end(self, net, **kwargs):
        if not self.parts_:
            return
        pred = torch.cat([p for p, _, _ in self.parts_])
        y = torch.cat([t for _, t, _ in self.parts_])
        w = torch.cat([torch.ones(len(p), device=p.device) if w is None else w for p, _, w in self.parts_])
        self.parts_ = []
        # the task's score, as the fused trainer computes it for its members
        score = task_of(self.task).score(pred, y, w)
        net.history.record("valid_score", float(score))
