"""One fused group trained together: K members stepped as one stacked model.

Each epoch runs the members' own epoch protocol: the schedule sets the
rates of the epoch's optimizer steps (``ScheduleCallback.epoch_rates``),
a recipe (pruning) starts its epoch, every member draws its own shuffled
order from its own generator, and the micro-batches fall into each
member's accumulation windows as the plain loop's ``_EpochPlan`` puts
them. A member's loss is its criterion's stacked form
(``criterion.stacked``): the task's row losses, or distillation's with the
member's own temperature and alpha. After each optimizer step a pruning
member's schedule may select new masks (``fused_step``). The history rows,
the stopping rule (``Plateau``) and the divergence errors are the plain
fit's.
"""

import math
import time

import torch

from ...specs._task import task_of
from .._errors import DivergenceError
from .._loop import autocast_for, steps_in_epoch
from .._stopping import Plateau, loss_diverged
from ._optim import StackedOptimizer
from ._rows import Rows, pad
from ._stack import Stack, write_back

__all__ = ["Member", "train_group"]

_TINY = torch.finfo(torch.float32).tiny


class Member:
    """One estimator's fit inside a group: its fit state and running bookkeeping."""

    def __init__(self, index, estimator, fit, optimizer):
        self.index, self.estimator, self.fit, self.optimizer = index, estimator, fit, optimizer
        self.net = fit.net
        self.schedule = dict(fit.net.callbacks_)["lr_schedule"]
        # callbacks that own a fused protocol (pruning's masks)
        self.recipe = [cb for _, cb in fit.net.callbacks_ if hasattr(cb, "fused_begin")]
        self.criterion = fit.net.criterion_
        self.n_train = len(fit.train)
        self.n_micro = max(1, -(-self.n_train // estimator._setting("batch_size")))
        self.n_steps = steps_in_epoch(self.n_train, estimator._setting("batch_size"), estimator.gradient_accumulation_steps)
        self.plateau = Plateau.of(estimator, validating=fit.valid is not None)
        self.best_state, self.n_run, self.error, self.k, self.stop = None, 0, None, None, False

    @property
    def monitor(self):
        return self.plateau.monitor


class _Windows:
    """Where micro-batch ``s`` falls in each member's accumulation windows (``_EpochPlan``, stacked)."""

    def __init__(self, n_rows, batch_size, k):
        self.n, self.bs, self.k = n_rows, batch_size, k
        self.n_micro = (-(-n_rows // batch_size)).clamp_min(1)

    def at(self, s):
        """``(rows in the micro-batch, rows in its window, window ends here)``, each ``(K,)``."""
        bs, k = self.bs, self.k
        rows = (self.n - s * bs).clamp(0, bs)
        start = (s // k) * k
        stop = torch.clamp(self.n_micro, max=start + k)
        window = (torch.minimum(stop * bs, self.n) - start * bs).clamp_min(1)
        last = (stop - 1 == s) | (s >= self.n_micro - 1)
        return rows, window, last & (rows > 0)


def train_group(plan, members):
    """Train the members together until each has stopped; write their weights back."""
    first = members[0].estimator
    stack = Stack(plan, [m.net.module_ for m in members])
    optimizer = StackedOptimizer(
        [m.optimizer for m in members], stack.flat,
        torch.tensor([float(m.estimator.weight_decay) for m in members]),
        torch.tensor([float(m.estimator.momentum) for m in members]),
    )
    criterion = type(members[0].criterion).stacked([m.criterion for m in members])
    task = task_of(members[0].criterion.task)
    weighted = [m.fit.w_t is not None for m in members]
    train = Rows([m.fit.train for m in members], weighted)
    has_valid = any(m.fit.valid is not None for m in members)
    valid = Rows([m.fit.valid if m.fit.valid is not None else m.fit.train for m in members],
                 weighted) if has_valid else None
    bs, accumulation = int(first._setting("batch_size")), int(first.gradient_accumulation_steps)
    generator = torch.Generator().manual_seed(members[0].fit.seed)  # dropout draws
    autocast = autocast_for(first.precision, members[0].fit.device)
    limits = [m.estimator.max_grad_norm for m in members]
    clipping = any(limit is not None for limit in limits)
    limit = torch.tensor([math.inf if v is None else float(v) for v in limits])
    active = list(members)

    for k, m in enumerate(members):
        m.k = k
        if m.fit.continuing:
            optimizer.load(k, m.net.optimizer_, plan.params_of(m.net.module_), stack.sizes)
        for cb in m.recipe:
            stack.set_masks(k, cb.fused_begin(m.net, lambda name, m=m: stack.weight(m.k, (name, "weight"))))

    def drop(done):
        nonlocal active, limit
        for m in done:
            if m.error is None:
                write_back(plan, m.net.module_, stack.member_state(m.k))
                if m.fit.resume:  # the next call continues from this state
                    optimizer.export(m.k, m.net.optimizer_, plan.params_of(m.net.module_), stack.sizes)
            for cb in m.recipe:
                cb.on_train_end(m.net)
        index = torch.tensor([m.k for m in active if m not in done], dtype=torch.long)
        active = [m for m in active if m not in done]
        for k, m in enumerate(active):
            m.k = k
        if active:
            for part in (stack, optimizer, train, criterion):
                part.keep(index)
            if valid is not None:
                valid.keep(index)
            limit = limit[index]

    epoch = 0
    while active:
        epoch += 1
        tic = time.time()
        K = len(active)
        rates = []
        for m in active:
            h = m.net.history
            h.new_epoch()
            h.record("epoch", len(h))
            m.schedule.on_epoch_begin(m.net)
            rates.append(m.schedule.epoch_rates(m.net, m.n_steps))
            for cb in m.recipe:
                cb.on_epoch_begin(m.net)
        n_max = int(train.n.max())
        lrs = torch.stack([pad(torch.tensor(r, dtype=torch.float32), max(len(x) for x in rates)) for r in rates])
        perms = torch.stack([pad(torch.randperm(m.n_train, generator=m.fit.generator), n_max) for m in active])
        windows = _Windows(train.n, bs, accumulation)
        pruners = [m for m in active if m.recipe]
        n_stepped = torch.zeros(K, dtype=torch.long)
        grad_sum = None
        batch_losses, batch_rows = [], []
        for s in range(-(-n_max // bs)):
            cols = slice(s * bs, (s + 1) * bs)
            xb, yb, extras, wb = train.batch(perms[:, cols])
            wb = wb * train.valid[:, cols]
            rows, window, last = windows.at(s)
            with autocast:
                out = stack.first_forward(xb, generator) if epoch == 1 and s == 0 else stack.forward(xb, True, generator)
                losses = (criterion(out, yb, *extras) * wb).sum(1) / wb.sum(1).clamp_min(_TINY)
            losses = losses.float()
            scale = rows.float() / window.float() if accumulation > 1 else None
            (grad,) = torch.autograd.grad((losses if scale is None else losses * scale).sum(), stack.flat)
            batch_losses.append(losses.detach())
            batch_rows.append(rows)
            if accumulation > 1:
                grad_sum = grad if grad_sum is None else grad_sum + grad
                if not bool(last.any()):
                    continue
                grad = grad_sum
            if clipping:  # each member's global norm, as clip_grad_norm_ computes it
                coef = (limit / (grad.norm(dim=1) + 1e-6)).clamp(max=1.0)
                grad = grad * coef.to(grad.dtype).unsqueeze(1)
            lr = lrs.gather(1, n_stepped.clamp(max=lrs.shape[1] - 1).unsqueeze(1)).squeeze(1)
            optimizer.step(stack.flat, grad, lr, None if bool(last.all()) else last)
            n_stepped += last
            if accumulation > 1:
                grad_sum = None if bool(last.all()) else grad_sum * (~last).unsqueeze(1)
            for m in pruners:
                if bool(last[m.k]):
                    for cb in m.recipe:
                        if cb.fused_step():
                            stack.set_masks(m.k, cb.fused_masks())
        train_loss = _record_batches(active, torch.stack(batch_losses), torch.stack(batch_rows), lrs)
        valid_loss = valid_score = None
        if valid is not None:
            with autocast:
                valid_loss, valid_score = _evaluate(stack, valid, criterion, task, bs)
        done = []
        for m in active:
            if m.error is None:
                _end_epoch(m, stack, train_loss[m.k], valid_loss, valid_score, bs, tic)
            if m.error is not None or m.stop:
                done.append(m)
        if done:
            drop(done)


def _record_batches(active, losses, rows, lrs):
    """Write each member's batch rows into its history; a non-finite loss is its divergence.

    ``losses`` and ``rows`` are ``(n_micro, K)``. Returns each member's epoch
    train loss (the batch losses averaged by their rows, as skorch does).
    """
    values, sizes = losses.double().T.tolist(), rows.T.tolist()
    train_loss = []
    for m in active:
        batches = list.__getitem__(m.net.history, -1)["batches"]
        total = count = 0.0
        for s in range(m.n_micro):
            value, size = values[m.k][s], sizes[m.k][s]
            batches.append({"train_loss": value, "train_batch_size": int(size)})
            if not math.isfinite(value):
                step = min(s // m.estimator.gradient_accumulation_steps, lrs.shape[1] - 1)
                m.error = loss_diverged(len(m.net.history), value, float(lrs[m.k, step]))
                break
            total, count = total + value * size, count + size
        train_loss.append(total / max(count, 1.0))
    return train_loss


def _end_epoch(m, stack, train_loss, valid_loss, valid_score, bs, tic):
    """The epoch's history row and the member's stopping rule (``BaseNN._train``)."""
    h = m.net.history
    h.record("train_batch_count", m.n_micro)
    m.n_run += 1
    h.record("train_loss", train_loss)
    m.fit.loss_curve.append(float(train_loss))
    if m.fit.valid is not None:
        h.record("valid_batch_count", -(-len(m.fit.valid) // bs))
        h.record("valid_loss", valid_loss[m.k])
        h.record("valid_score", valid_score[m.k])
    for cb in m.recipe:
        cb.on_epoch_end(m.net)
    h.record("dur", time.time() - tic)
    m.schedule.on_epoch_end(m.net)
    m.stop = m.n_run >= m.fit.epochs
    try:
        improved, plateau = m.plateau.update(h[-1][m.monitor], epoch=len(h),
                                             busy=getattr(m.net, "recipe_busy_", False))
    except DivergenceError as exc:
        m.error = exc
        return
    if improved and m.monitor == "valid_loss":
        m.best_state = stack.member_state(m.k, masked=False)
    elif getattr(m.net, "recipe_busy_", False):
        m.best_state = None  # no weights from before the recipe finished
    m.stop = m.stop or plateau
    if m.stop and m.best_state is not None:
        stack.set_member_state(m.k, m.best_state)


@torch.no_grad()
def _evaluate(stack, rows, criterion, task, batch_size, chunk=4096):
    """Every member's validation loss (as skorch averages its batches) and score."""
    K, n_max = rows.rows.shape
    outs, losses = [], []
    for start in range(0, n_max, chunk):
        positions = torch.arange(start, min(start + chunk, n_max)).expand(K, -1)
        xb, yb, extras, wb = rows.batch(positions)
        out = stack.forward(xb, False)
        outs.append(out)
        losses.append(criterion(out, yb, *extras).float() * wb)
    out = torch.cat(outs, 1)
    weighted, w = torch.cat(losses, 1), rows.weight
    # each validation batch's weighted mean, averaged by the batches' rows
    n_batches = -(-n_max // batch_size)
    fill = n_batches * batch_size - n_max
    weighted = torch.nn.functional.pad(weighted, (0, fill)).view(K, n_batches, batch_size)
    wsum = torch.nn.functional.pad(w, (0, fill)).view(K, n_batches, batch_size).sum(-1)
    sizes = torch.nn.functional.pad(rows.valid.float(), (0, fill)).view(K, n_batches, batch_size).sum(-1)
    means = weighted.sum(-1) / wsum.clamp_min(_TINY)
    loss = (means * sizes).sum(1) / rows.n.float()
    return loss.double().tolist(), task.score(out, rows.target, w).double().tolist()
