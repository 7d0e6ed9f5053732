"""What a network's outputs mean: one task object for every training path.

A :class:`Task` knows, for its kind of target, how a row's loss is computed
from the network's outputs, how a set of outputs is scored (weighted
accuracy, subset accuracy or R², as the estimators' ``score``), and which
activation turns outputs into predictions. The plain batch loop, the fused
trainer (many members stacked on a leading axis) and the validation score
all go through it, so they cannot disagree: the functions take any leading
axes, with the rows on the last axis of the weights (``(..., rows)``) and on
the second-to-last of the outputs (``(..., rows, outputs)``).
"""

import torch
import torch.nn.functional as F

__all__ = ["Task", "task_of", "rows_inner"]

_TINY = 1e-12

# torch's CPU softmax over a last axis shorter than one SIMD vector (16 floats
# with AVX-512) runs row by row: over (1536, 10) it takes about 220 us forward
# and 100 us backward, where the same values laid out (10, 1536), the rows
# innermost, take about 10 and 8 us, and a copy into that layout 9 us. From
# about this many values (rows x classes) the copy pays for itself
# (benchmarks/bench_fused.py: a fused group of 12 members steps 1,536 rows).
_ROWS_INNER_MIN = 5000
_VECTOR = 16


def rows_inner(out):
    """Whether a softmax over ``out``'s last axis is faster with the rows laid out innermost."""
    return out.device.type == "cpu" and out.dim() >= 2 and out.shape[-1] < _VECTOR and out.numel() >= _ROWS_INNER_MIN


class Task:
    """One kind of target: ``"classification"``, ``"multilabel"`` or ``"regression"``.

    Examples
    --------
    >>> import torch
    >>> from skopt_nn.specs._task import task_of
    >>> out, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    >>> task_of("classification").row_loss(out, y).shape
    torch.Size([2])
    >>> float(task_of("classification").score(out, y, torch.ones(2)))
    0.5
    """

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Task({self.name!r})"

    def row_loss(self, out, y):
        """Each row's loss, ``(..., rows)``: cross-entropy, mean binary cross-entropy, mean squared error."""
        if self.name == "classification":
            if rows_inner(out):  # laid out (..., classes, rows), gradients included
                log_p = torch.log_softmax(out.transpose(-1, -2).contiguous(), -2)
                return -log_p.gather(-2, y.reshape(out.shape[:-1]).unsqueeze(-2)).squeeze(-2)
            lead = out.shape[:-1]
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none").view(lead)
        y = y.reshape(out.shape)
        if self.name == "multilabel":  # one sigmoid per label, mean over the labels
            return F.binary_cross_entropy_with_logits(out, y.to(out.dtype), reduction="none").mean(-1)
        return (out - y).pow(2).mean(-1)

    def score(self, out, y, w):
        """Weighted accuracy (subset accuracy if multilabel) or R² over the rows, ``(...)``.

        R² is the same in standardised and original units, so a regressor's
        standardised outputs score as its predictions do.
        """
        out, w = out.float(), w.float()
        if self.name != "regression":
            if self.name == "classification":
                hit = out.argmax(-1) == y
            else:
                hit = ((out > 0) == (y.reshape(out.shape) > 0.5)).all(-1)
            return (w * hit).sum(-1) / w.sum(-1).clamp_min(_TINY)
        y = y.float().reshape(out.shape)
        wv = w.unsqueeze(-1)
        total_w = w.sum(-1).clamp_min(_TINY).unsqueeze(-1).unsqueeze(-1)
        mean = (wv * y).sum(-2, keepdim=True) / total_w
        total = (wv * (y - mean) ** 2).sum(-2).clamp_min(_TINY)
        return (1 - (wv * (y - out) ** 2).sum(-2) / total).mean(-1)

    def activation(self, out):
        """Probabilities (softmax, one sigmoid per label) or the outputs themselves."""
        if self.name == "classification":
            return torch.softmax(out, dim=-1)
        if self.name == "multilabel":
            return torch.sigmoid(out)
        return out


_TASKS = {name: Task(name) for name in ("classification", "multilabel", "regression")}


def task_of(name):
    """The :class:`Task` called ``name`` (a Task passes through)."""
    if isinstance(name, Task):
        return name
    try:
        return _TASKS[name]
    except KeyError:
        raise ValueError(f"Invalid task: expected one of {sorted(_TASKS)}, but got {name!r}.") from None
