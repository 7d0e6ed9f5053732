"""The stopping rule and the divergence reports of every fit.

The plain epoch loop (``_base``) keeps one :class:`Plateau`, the fused
trainer (``fused``) one per member; both raise the errors built here, so a
fit stops, keeps its best weights and fails the same way fused or not.
"""

import math

from ._errors import DivergenceError

__all__ = ["Plateau", "loss_diverged", "monitor_diverged", "outputs_diverged"]

_ADVICE = "Try a lower lr, a warm-up (LRSchedule(..., warmup_epochs=1)), or scaled inputs (StandardScaler)."


def loss_diverged(epoch, loss, lr):
    """The error of a batch whose training loss is not finite."""
    return DivergenceError(
        f"Training diverged in epoch {epoch}: the training loss became {loss} (lr={lr:g}). {_ADVICE}"
    )


def monitor_diverged(epoch, monitor, value):
    """The error of an epoch whose monitored loss is not finite."""
    return DivergenceError(
        f"Training diverged in epoch {epoch}: {monitor} is {value}. "
        "Try a lower lr or scaled inputs (StandardScaler)."
    )


def outputs_diverged(epoch):
    """The error of a trained network whose outputs overflow."""
    return DivergenceError(
        f"Training diverged in epoch {epoch}: the trained network's outputs are no longer finite. "
        f"{_ADVICE}"
    )


class Plateau:
    """sklearn's MLP stopping rule: stop when the monitored loss stops improving by ``tol``.

    ``update`` is called once per epoch with the monitored value; it
    returns ``(improved, stop)``, where ``improved`` says the value is the
    best so far (the caller keeps that epoch's weights when it monitors a
    validation loss). While ``busy`` (a recipe still changing the network,
    such as pruning ramping up its sparsity) nothing counts: the best value
    is forgotten, so no weights from before the recipe finished are kept.

    Examples
    --------
    >>> from skopt_nn.training._stopping import Plateau
    >>> rule = Plateau(tol=0.0, n_iter_no_change=2, monitor="train_loss")
    >>> [rule.update(v, epoch=i + 1)[1] for i, v in enumerate([3.0, 2.0, 2.5, 2.4])]
    [False, False, False, True]
    """

    def __init__(self, *, tol, n_iter_no_change, monitor):
        self.tol, self.n_iter_no_change, self.monitor = tol, n_iter_no_change, monitor
        self.best, self.stale = math.inf, 0

    @classmethod
    def of(cls, estimator, *, validating):
        """The estimator's rule: the held-out loss with early stopping and rows held out, else the training loss."""
        monitor = "valid_loss" if estimator._setting("early_stopping") and validating else "train_loss"
        return cls(tol=estimator.tol, n_iter_no_change=estimator.n_iter_no_change, monitor=monitor)

    def update(self, value, *, epoch, busy=False):
        if busy:
            self.best, self.stale = math.inf, 0
            return False, False
        value = float(value)
        if not math.isfinite(value):
            raise monitor_diverged(epoch, self.monitor, value)
        self.stale = self.stale + 1 if value > self.best - self.tol else 0
        improved = value < self.best
        if improved:
            self.best = value
        stop = self.n_iter_no_change is not None and self.stale >= self.n_iter_no_change
        return improved, stop
