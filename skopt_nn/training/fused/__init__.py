"""Many fits of one architecture trained together as one stacked model.

The members of a fused group share a network shape, a batch size and an
accumulation length; each has its own rows (a CV fold), weights, initial
weights and shuffling (its ``random_state``), learning rate and schedule,
optimizer settings, dropout rate, pruning masks and schedule, distillation
temperature and alpha, epoch budget and stopping rule. Their parameters are
stacked along a new first axis, so one step of the group is one batched
matrix product per layer for all of them and one optimizer update, instead
of K small steps that leave the cores idle.

Each member is set up and published by the estimator's own fit phases
(``_start_fit``, ``_build_fit``, ``_end_fit``), so a fused member is the same
object a plain fit gives: same initial weights, same batches in the same
order, same history columns, same fitted attributes (a pruned network is
made permanent and shrunk by ``Pruning``'s own finalization). Its scores
match a plain fit's up to floating-point summation order (and dropout
draws).

The package is split by concern: ``_stack`` (the stacked network and its
masks), ``_optim`` (optimizers with per-member settings), ``_rows`` (the
members' rows), ``_group`` (one group's epochs); this module decides who
trains with whom.
"""

import copy
import time
import warnings

import torch

from ...specs.modules import count_params
from ...specs.optim import OPTIMIZERS
from .._runtime import auto_threads, row_cost, seeded, torch_threads
from ._group import Member, train_group
from ._optim import fused_family
from ._stack import CannotStack, Plan, signature

__all__ = ["fusable", "fuse_key", "fit_fused", "chunk_size", "member_bytes", "Outcome"]

_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")


def fusable(estimator):
    """``None`` when ``estimator``'s settings can train fused, else the structural reason.

    Every refusal lives here (the specs say theirs through
    ``_fuse_refusal``); only the settings are read. A module that turns out
    not to run under ``vmap`` is found when its group is built.
    """
    if not hasattr(type(estimator), "_start_fit"):  # not a skopt_nn estimator (BaseNN)
        return f"{type(estimator).__name__} is not a skopt_nn estimator"
    reasons = {
        # continuing a fitted network is the estimator's own fit
        "warm_start": estimator.warm_start and hasattr(estimator, "net_"),
        # the fused loop calls the recipe's hooks, not arbitrary skorch callbacks
        "callbacks": bool(estimator.callbacks),
        "tensorboard_dir": estimator.tensorboard_dir is not None,
        # an ensemble fuses its own members (n_ensemble=1 each) inside its fit
        "n_ensemble": getattr(estimator, "n_ensemble", 1) != 1,
    }
    for name, blocked in reasons.items():
        if blocked:
            return f"{name} is set"
    for name in ("pruning", "distillation", "quantization"):
        refusal = getattr(getattr(estimator, name, None), "_fuse_refusal", None)
        reason = refusal() if refusal is not None else None
        if reason is not None:
            return reason
    if getattr(estimator.module, "accepts_text", False):
        # a pretrained model is neither stacked nor run under vmap
        return "module is a pretrained Transformer"
    opt = estimator.optimizer
    if not (isinstance(opt, str) and opt.lower() in _OPTIMIZERS):
        return f"optimizer={opt!r} is not one of {list(_OPTIMIZERS)}"
    return None


def fuse_key(estimator):
    """What members must share to stack (the rest may differ per member).

    Architecture and data width are compared once the modules are built
    (``fit_fused``); this key groups by the settings that decide them.
    """
    module = estimator.module
    if hasattr(module, "set_params") and "dropout" in module.get_params(deep=False):
        # Dropout rates may differ per member (on the explicit path).
        module = copy.copy(module).set_params(dropout=0.0)
    return (
        type(estimator).__name__,
        repr(module),
        fused_family(str(estimator.optimizer).lower()),
        int(estimator._setting("batch_size")),
        int(estimator.gradient_accumulation_steps),
        str(estimator.device),
        str(getattr(estimator, "precision", "float32")),
    )


def member_bytes(module, batch_size, n_features):
    """Rough memory of one member in a group: weights, gradients, optimizer state, activations."""
    n_params = count_params(module)
    activations = batch_size * (n_features + 4 * max(1, row_cost(module, n_features) // max(n_features, 1)))
    return 4 * (4 * n_params + 2 * activations)


class Outcome:
    """What one job of :func:`fit_fused` gave: a fitted estimator or an error, and its time.

    ``fit_time`` is the member's share of its group's wall time (the group's
    time divided by its members), or its own time when it was fitted alone.
    ``fused`` says which.
    """

    __slots__ = ("estimator", "error", "fit_time", "fused")

    def __init__(self, estimator=None, error=None, fit_time=0.0, fused=True):
        self.estimator, self.error, self.fit_time, self.fused = estimator, error, fit_time, fused


def fit_fused(jobs, *, max_members=None, n_threads=None, fallbacks=None, epochs=None):
    """Fit every ``(estimator, X, y, sample_weight)`` of ``jobs``, stacked where they can be.

    Each estimator must pass :func:`fusable`. Members that share
    :func:`fuse_key`, build the same architecture for their data and train
    with the same kind of loss train together, ``max_members`` at most at a
    time (None: as many as :func:`chunk_size` allows). A group whose module
    ``vmap`` cannot run is fitted one by one; its reason is appended to
    ``fallbacks`` (a list) if given, else warned.

    Returns one :class:`Outcome` per job: the fitted estimator, or the
    exception its fit raised (set-up errors, divergence) as a plain fit
    would have raised it.

    ``n_threads=None`` chooses torch threads from the work of one stacked
    step, as a plain fit does from its own.

    ``epochs`` (a list, one count per job) trains each member that many
    more epochs of its ``max_epochs``-long fit instead, continuing where its
    last call stopped (weights, optimizer state, schedule and pruning
    position, random streams): what ``BaseNN._fit_epochs`` does for one
    estimator, used by the rungs of a fused ASHA search.
    """
    results = [None] * len(jobs)
    groups = {}
    for i, (est, X, y, sample_weight) in enumerate(jobs):
        try:
            reason = fusable(est)
            if reason is not None:
                raise ValueError(f"fit_fused cannot stack this estimator: {reason}.")
            est._validate_params()
            if epochs is None:
                fit = est._start_fit(X, y, continuing=False, epochs=est._setting("max_epochs"),
                                     sample_weight=sample_weight)
            else:  # BaseNN._fit_epochs
                continuing = hasattr(est, "net_") and getattr(est, "_resume_rng_", None) is not None
                fit = est._start_fit(X, y, continuing=continuing, epochs=epochs[i], resume=True,
                                     sample_weight=sample_weight)
            if fit.device != "cpu" or not isinstance(fit.X_t, torch.Tensor) or fit.X_t.layout != torch.strided:
                raise CannotStack(f"device={fit.device!r} or input layout")
            with seeded(fit.seed, fit.device):
                est._build_fit(fit)
            name = OPTIMIZERS.canonical(str(est.optimizer), param="optimizer")
            member = Member(i, est, fit, name)
        except CannotStack:
            results[i] = _alone(est, X, y, sample_weight, None if epochs is None else epochs[i])
            continue
        except Exception as exc:  # reported like the plain fit's error
            results[i] = Outcome(error=exc, fused=False)
            continue
        key = (fuse_key(est), signature(fit.net.module_), fit.X.shape[1], member.criterion.fused_key())
        groups.setdefault(key, []).append(member)
    for group in groups.values():
        size = max_members or chunk_size(group[0])
        for start in range(0, len(group), size):
            chunk = group[start : start + size]
            try:
                outcomes = _fit_chunk(chunk, n_threads)
            except CannotStack as exc:
                reason = f"{type(chunk[0].net.module_).__name__} does not run under torch.func.vmap ({exc})"
                if fallbacks is None:
                    warnings.warn(f"fit_fused: {reason}; its {len(chunk)} fits run one by one.",
                                  UserWarning, stacklevel=2)
                else:
                    fallbacks.append(reason)
                outcomes = [_alone(m.estimator, *jobs[m.index][1:], None if epochs is None else epochs[m.index])
                            for m in chunk]
            for m, outcome in zip(chunk, outcomes):
                results[m.index] = outcome
    return results


def _alone(estimator, X, y, sample_weight, epochs=None):
    start = time.perf_counter()
    try:
        if epochs is None:
            estimator.fit(X, y, sample_weight=sample_weight)
        else:
            estimator._fit_epochs(X, y, epochs, sample_weight=sample_weight)
        return Outcome(estimator, fit_time=time.perf_counter() - start, fused=False)
    except Exception as exc:
        return Outcome(error=exc, fit_time=time.perf_counter() - start, fused=False)


# Memory a group may take for its weights, optimizer state and activations.
_GROUP_BYTES = 1 << 30
_MAX_MEMBERS = 64


def chunk_size(member):
    """How many members like ``member`` train in one stacked group.

    Bounded by memory (weights, gradients, optimizer state and one batch of
    activations per member within ``_GROUP_BYTES``) and by ``_MAX_MEMBERS``:
    past a few dozen members the stacked step is large enough to keep the
    cores busy, and a larger group only delays the first results.
    """
    est = member.estimator
    per_member = member_bytes(member.net.module_, min(est._setting("batch_size"), member.n_train), member.fit.X.shape[1])
    return int(max(1, min(_MAX_MEMBERS, _GROUP_BYTES // max(per_member, 1))))


def _fit_chunk(members, n_threads):
    first = members[0]
    plan = Plan([m.net.module_ for m in members])
    work = len(members) * min(first.estimator._setting("batch_size"), first.n_train) * row_cost(
        first.net.module_, first.fit.X.shape[1], first.fit.device)
    threads = n_threads or first.estimator.n_threads or auto_threads(work)
    start = time.perf_counter()
    with seeded(first.fit.seed, first.fit.device), torch_threads(threads):
        train_group(plan, members)
    share = (time.perf_counter() - start) / len(members)
    outcomes = []
    for m in members:
        if m.error is not None:
            outcomes.append(Outcome(error=m.error, fit_time=share))
            continue
        try:
            m.fit.n_threads = threads
            m.estimator._end_fit(m.fit, m.n_run)
            outcomes.append(Outcome(m.estimator, fit_time=share))
        except Exception as exc:
            outcomes.append(Outcome(error=exc, fit_time=share))
    return outcomes
