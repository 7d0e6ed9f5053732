"""Many fits of one architecture trained together as one stacked model.

The members of a fused group share a network shape and a batch size; each
has its own rows (a CV fold), weights, initial weights and shuffling (its
``random_state``), learning rate and schedule, weight decay, momentum,
dropout rate, epoch budget and stopping rule. Their parameters are stacked
along a new first axis, so one step of the group is one batched matrix
product per layer for all of them (``baddbmm``) and one optimizer update,
instead of K small steps that leave the cores idle.

Each member is set up and published by the estimator's own fit phases
(``_start_fit``, ``_build_fit``, ``_end_fit``), so a fused member is the same
object a plain fit gives: same initial weights, same batches in the same
order, same history columns, same fitted attributes. Its scores match a
plain fit's up to floating-point summation order (and dropout draws).

Two forward paths share one stacked state:

* ``nn.Sequential`` nets of ``Linear`` layers, parameter-free activations
  and ``Dropout`` (every ``MLP`` without batch norm) run explicit batched
  layers; members may differ in their dropout rates, a rate of zero (no
  ``Dropout`` layer at all) included;
* any other module (``CNN``, ``TorchModule``, batch norm) runs through
  ``torch.func.vmap`` over ``functional_call``; a module ``vmap`` cannot run
  is reported as not fusable and its members fit one by one.

A member whose loss stops being finite gets the plain fit's
``DivergenceError`` and leaves the group; so does a member that stops early
or reaches its ``max_epochs``, which then costs nothing more.
"""

import copy
import math
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..specs.modules import count_params
from ..specs.optim import OPTIMIZERS
from ._errors import DivergenceError
from ._loop import autocast_for
from ._runtime import auto_threads, row_cost, seeded, torch_threads

__all__ = ["fusable", "fuse_key", "fit_fused", "chunk_size", "member_bytes", "Outcome"]

_TINY = torch.finfo(torch.float32).tiny

# Activations that hold no parameters and work on any leading shape.
_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Identity)

_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")


# -- which estimators fuse, and with whom ------------------------------------------


def fusable(estimator):
    """``None`` when ``estimator``'s settings can train fused, else the reason.

    Only the settings are read here; a module that turns out not to run
    under ``vmap`` is found when the group is built.
    """
    if not hasattr(type(estimator), "_start_fit"):  # not a skopt_nn estimator (BaseNN)
        return f"{type(estimator).__name__} is not a skopt_nn estimator"
    reasons = {
        "warm_start": estimator.warm_start,
        "pruning": estimator.pruning is not None,
        "distillation": estimator.distillation is not None,
        # quantization-aware training runs a traced graph of fake-quantized layers
        "quantization='qat_int8'": getattr(estimator.quantization, "method", None) == "qat_int8",
        "callbacks": bool(estimator.callbacks),
        "tensorboard_dir": estimator.tensorboard_dir is not None,
        # an ensemble fuses its own members (n_ensemble=1 each) inside its fit
        "n_ensemble": getattr(estimator, "n_ensemble", 1) != 1,
        # a stacked step is one batch of every member: no micro-batch windows
        "gradient_accumulation_steps": getattr(estimator, "gradient_accumulation_steps", 1) != 1,
    }
    for name, blocked in reasons.items():
        if blocked:
            return f"{name} is set"
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
        str(estimator.optimizer).lower(),
        int(estimator.batch_size),
        str(estimator.device),
        str(getattr(estimator, "precision", "float32")),
    )


def member_bytes(module, batch_size, n_features):
    """Rough memory of one member in a group: weights, gradients, optimizer state, activations."""
    n_params = count_params(module)
    activations = batch_size * (n_features + 4 * max(1, row_cost(module, n_features) // max(n_features, 1)))
    return 4 * (4 * n_params + 2 * activations)


# -- the stacked network -------------------------------------------------------------


class _Plan:
    """How one group's stacked forward pass runs, from its members' modules."""

    def __init__(self, modules):
        self.explicit = _explicit_layers(modules[0]) is not None and all(
            _explicit_layers(m) == _explicit_layers(modules[0]) for m in modules
        )
        if self.explicit:
            self.layers = _explicit_layers(modules[0])
            # The first member's own (parameter-free) activation modules.
            self.acts = [layer for layer in modules[0] if type(layer) is not nn.Dropout]
            self.dropouts = [_dropout_rates(m) for m in modules]
        else:
            self.base = copy.deepcopy(modules[0]).to("meta")
            self.names = [n for n, _ in modules[0].named_parameters()]
            self.buffer_names = [n for n, _ in modules[0].named_buffers()]

    def params_of(self, module):
        if self.explicit:
            out = []
            for layer in (x for x in module if isinstance(x, nn.Linear)):
                out += [layer.weight, layer.bias]
            return out
        return [p for _, p in module.named_parameters()]

    def buffers_of(self, module):
        return [] if self.explicit else [b for _, b in module.named_buffers()]


def _explicit_layers(module):
    """The layer types of a plain Linear/activation/Dropout Sequential, Dropout left out; else None."""
    if type(module) is not nn.Sequential:
        return None
    layers = []
    for layer in module:
        if isinstance(layer, nn.Dropout) and type(layer) is nn.Dropout:
            continue
        if type(layer) is nn.Linear and layer.bias is not None:
            layers.append("linear")
        elif type(layer) in _ELEMENTWISE:
            layers.append(repr(layer))
        else:
            return None
    return tuple(layers)


def _dropout_rates(module):
    """Dropout rate after each non-dropout layer of an explicit Sequential."""
    rates, position = {}, -1
    for layer in module:
        if type(layer) is nn.Dropout:
            rates[position] = rates.get(position, 0.0) + float(layer.p)  # one layer each in practice
        else:
            position += 1
    return rates


class _Stack:
    """The members' parameters (and buffers) stacked on a first axis of size K.

    All parameters of a member live in one row of a ``(K, n_params)`` leaf
    tensor, ``flat``; the layers see views of it. One gradient tensor and
    one optimizer update then cover every layer of every member.
    """

    def __init__(self, plan, modules):
        self.plan = plan
        per_member = [plan.params_of(m) for m in modules]
        self.shapes = [tuple(p.shape) for p in per_member[0]]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        with torch.no_grad():
            self.flat = torch.stack([
                torch.cat([p.detach().reshape(-1) for p in params]) for params in per_member
            ]).requires_grad_()
            self.buffers = [
                torch.stack([b.detach() for b in group]).clone()
                for group in zip(*(plan.buffers_of(m) for m in modules))
            ]
        if plan.explicit:
            n_layers = len(plan.layers)
            rates = [[plan.dropouts[i].get(pos, 0.0) for pos in range(-1, n_layers)] for i in range(len(modules))]
            self.rates = torch.tensor(rates, dtype=torch.float32)  # (K, n_layers + 1)

    @property
    def params(self):
        """Per-layer views ``(K, *shape)`` of ``flat``."""
        K = self.flat.shape[0]
        parts = torch.split(self.flat, self.sizes, dim=1)
        return [part.view(K, *shape) for part, shape in zip(parts, self.shapes)]

    def keep(self, index):
        """Only the members at ``index`` stay (a LongTensor of positions)."""
        with torch.no_grad():
            self.flat = self.flat.detach()[index].requires_grad_()
            self.buffers = [b[index] for b in self.buffers]
        if self.plan.explicit:
            self.rates = self.rates[index]

    def member_state(self, k):
        """``(parameters, buffers)`` of member ``k``, as lists of tensors shaped like its module's."""
        row = self.flat.detach()[k].clone()
        params = [part.view(shape) for part, shape in zip(torch.split(row, self.sizes), self.shapes)]
        return params, [b[k].clone() for b in self.buffers]

    def set_member_state(self, k, state):
        with torch.no_grad():
            self.flat[k] = torch.cat([p.reshape(-1) for p in state[0]])
            for b, v in zip(self.buffers, state[1]):
                b[k] = v

    def forward(self, x, training, generator=None):
        """Outputs ``(K, rows, n_outputs)`` for inputs ``(K, rows, n_features)``."""
        plan = self.plan
        if plan.explicit:
            return self._explicit(x, training, generator)
        plan.base.train(training)
        names, bnames = plan.names, plan.buffer_names

        def one(params, buffers, xb):
            state = dict(zip(names, params))
            state.update(zip(bnames, buffers))
            return torch.func.functional_call(plan.base, state, (xb,))

        return torch.func.vmap(one, randomness="different")(tuple(self.params), self.buffers, x)

    def _explicit(self, x, training, generator):
        params = self.params
        h = self._dropout(x, 0, training, generator)
        linear = 0
        for position, layer in enumerate(self.plan.layers):
            if layer == "linear":
                w, b = params[2 * linear], params[2 * linear + 1]
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
                linear += 1
            else:
                h = self.plan.acts[position](h)
            h = self._dropout(h, position + 1, training, generator)
        return h

    def _dropout(self, h, slot, training, generator):
        if not training:
            return h
        p = self.rates[:, slot]
        if not bool((p > 0).any()):
            return h
        keep = 1.0 - p.view(-1, 1, 1)
        mask = torch.rand(h.shape, generator=generator) < keep
        return h * mask / keep


# -- optimizers with one setting per member ---------------------------------------


class _StackedOptimizer:
    """torch's sgd/adam/adamw/rmsprop/adagrad updates, one lr/decay/momentum per member.

    Works on the ``(K, n_params)`` tensor of a :class:`_Stack`. The
    arithmetic follows torch's single-tensor implementations with their
    default options, so a member takes the steps its own torch optimizer
    would.
    """

    # The names torch's optimizers give the same buffers in their state.
    _STATE = {"sgd": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq"),
              "adamw": ("exp_avg", "exp_avg_sq"), "rmsprop": ("square_avg", "momentum_buffer"),
              "adagrad": ("sum",)}

    def __init__(self, name, flat, weight_decay, momentum):
        self.name = name
        self.weight_decay = weight_decay.view(-1, 1)  # (K, 1)
        self.momentum = momentum.view(-1, 1)
        self.decay = bool((weight_decay != 0).any())
        self.steps = torch.zeros(len(weight_decay), 1)
        self.state = [torch.zeros_like(flat) for _ in self._STATE[name]]

    def keep(self, index):
        self.weight_decay, self.momentum = self.weight_decay[index], self.momentum[index]
        self.decay = bool((self.weight_decay != 0).any())
        self.steps = self.steps[index]
        self.state = [s[index] for s in self.state]

    @torch.no_grad()
    def load(self, k, optimizer, params, sizes):
        """Take member ``k``'s state from its torch ``optimizer`` (a continued fit)."""
        offset = 0
        for p, size in zip(params, sizes):
            state = optimizer.state.get(p, {})
            for buf, key in zip(self.state, self._STATE[self.name]):
                if state.get(key) is not None:
                    buf[k, offset : offset + size] = state[key].reshape(-1)
            if "step" in state:
                self.steps[k] = float(state["step"])
            offset += size

    @torch.no_grad()
    def export(self, k, optimizer, params, sizes):
        """Write member ``k``'s state into its torch ``optimizer``, as torch keeps it."""
        offset = 0
        for p, size in zip(params, sizes):
            state = {key: buf[k, offset : offset + size].reshape(p.shape).clone()
                     for buf, key in zip(self.state, self._STATE[self.name])}
            if self.name != "sgd":
                state["step"] = torch.tensor(float(self.steps[k]))
            optimizer.state[p] = state
            offset += size

    @torch.no_grad()
    def step(self, flat, g, lr, active=None):
        """One update; ``lr`` is ``(K,)``; ``active`` (``(K,)`` bool or None) masks members out."""
        if active is not None:
            mask = active.view(-1, 1)
            old = [flat.detach().clone()] + [s.clone() for s in self.state]
            self.steps += mask
        else:
            self.steps += 1
        name, lr, wd, value = self.name, lr.view(-1, 1), self.weight_decay, flat.detach()
        if name == "adamw":
            value.mul_(1 - lr * wd)
        elif self.decay:
            g = g + wd * value
        if name in ("adam", "adamw"):
            m, v = self.state
            t = self.steps.clamp_min(1)
            m.lerp_(g, 0.1)
            v.mul_(0.999).addcmul_(g, g, value=0.001)
            denom = (v / (1 - 0.999**t)).sqrt_().add_(1e-8)
            value.addcdiv_(m * (lr / (1 - 0.9**t)), denom, value=-1)
        elif name == "sgd":
            (buf,) = self.state
            buf.mul_(self.momentum).add_(g)
            value.sub_(lr * buf)
        elif name == "rmsprop":
            sq, buf = self.state
            sq.mul_(0.99).addcmul_(g, g, value=0.01)
            buf.mul_(self.momentum).add_(g / (sq.sqrt() + 1e-8))
            value.sub_(lr * buf)
        else:  # adagrad
            (acc,) = self.state
            acc.addcmul_(g, g)
            value.sub_(lr * g / (acc.sqrt() + 1e-10))
        if active is not None:
            value.copy_(torch.where(mask, value, old[0]))
            for s, o in zip(self.state, old[1:]):
                s.copy_(torch.where(mask, s, o))


# -- training ---------------------------------------------------------------------------


class _Member:
    """One estimator's fit inside a group: its fit state and running bookkeeping."""

    def __init__(self, index, estimator, fit):
        self.index, self.estimator, self.fit = index, estimator, fit
        self.net = fit.net
        self.schedule = dict(fit.net.callbacks_)["lr_schedule"]
        self.n_train = len(fit.train)
        self.steps = -(-self.n_train // estimator.batch_size)
        self.best, self.best_state, self.stale, self.n_run = math.inf, None, 0, 0
        self.error = None
        self.monitor = "valid_loss" if estimator.early_stopping and fit.valid is not None else "train_loss"


def _gather_rows(data):
    """``(X, target, weight, rows)`` tensors of a ``TensorData`` (rows as an index)."""
    rows = data.rows if data.rows is not None else torch.arange(len(data.X))
    target = data.y
    weight = None
    if isinstance(target, tuple):
        target, weight = target[0], target[-1]
    return data.X, target, weight, rows


class _Rows:
    """Every member's rows (train or validation) as padded ``(K, n_max)`` index tensors.

    The feature rows of members that share their input array are stored
    once; targets and weights are stored per member.
    """

    def __init__(self, datas):
        stores, offsets, rows, targets, weights = [], {}, [], [], []
        for data in datas:
            X, target, weight, r = _gather_rows(data)
            key = (X.data_ptr(), tuple(X.shape))
            if key not in offsets:
                offsets[key] = sum(len(s) for s in stores)
                stores.append(X)
            rows.append(r + offsets[key])
            targets.append(target[r])
            weights.append(torch.ones(len(r)) if weight is None else weight[r].float())
        self.X = stores[0] if len(stores) == 1 else torch.cat(stores)
        self.n = torch.tensor([len(r) for r in rows])
        n_max = int(self.n.max())
        self.rows = torch.stack([_pad(r, n_max) for r in rows])
        self.target = torch.stack([_pad(t, n_max) for t in targets])
        self.weight = torch.stack([_pad(w, n_max) for w in weights])
        self.valid = torch.arange(n_max).unsqueeze(0) < self.n.unsqueeze(1)
        self.weight = self.weight * self.valid

    def keep(self, index):
        self.n, self.rows, self.target = self.n[index], self.rows[index], self.target[index]
        self.weight, self.valid = self.weight[index], self.valid[index]

    def batch(self, positions):
        """Inputs, targets and weights at ``positions`` (``(K, b)`` positions into each member's rows)."""
        rows = self.rows.gather(1, positions)
        xb = self.X[rows.reshape(-1)].reshape(*rows.shape, -1)
        tgt = self.target
        if tgt.dim() == 2:
            yb = tgt.gather(1, positions)
        else:
            yb = tgt.gather(1, positions.unsqueeze(-1).expand(-1, -1, tgt.shape[-1]))
        return xb, yb, self.weight.gather(1, positions)


def _pad(t, n):
    if len(t) == n:
        return t
    pad = t[:1].expand(n - len(t), *t.shape[1:]) if len(t) else torch.zeros(n - len(t), *t.shape[1:], dtype=t.dtype)
    return torch.cat([t, pad])


def _row_losses(task, out, yb):
    """Per-row losses ``(K, b)`` as ``WeightedLoss`` computes them."""
    if task == "classification":
        K, b, c = out.shape
        return F.cross_entropy(out.reshape(K * b, c), yb.reshape(K * b), reduction="none").view(K, b)
    yb = yb.reshape(out.shape)
    if task == "multilabel":  # one sigmoid per label, mean over the labels
        return F.binary_cross_entropy_with_logits(out, yb.to(out.dtype), reduction="none").mean(-1)
    return (out - yb).pow(2).mean(-1)


def _scores(task, out, yb, w):
    """Weighted accuracy (subset accuracy for multilabel) or R² per member, as ``_ValidScore`` records them."""
    if task in ("classification", "multilabel"):
        if task == "classification":
            hit = (out.argmax(-1) == yb).float()
        else:
            hit = ((out > 0) == (yb.reshape(out.shape) > 0.5)).all(-1).float()
        return (w * hit).sum(1) / w.sum(1).clamp_min(1e-12)
    yb = yb.reshape(out.shape)
    wv = w.unsqueeze(-1)
    mean = (wv * yb).sum(1, keepdim=True) / w.sum(1).clamp_min(1e-12).view(-1, 1, 1)
    total = (wv * (yb - mean) ** 2).sum(1).clamp_min(1e-12)
    return (1 - (wv * (yb - out) ** 2).sum(1) / total).mean(-1)


class Outcome:
    """What one job of :func:`fit_fused` gave: a fitted estimator or an error, and its time.

    ``fit_time`` is the member's share of its group's wall time (the group's
    time divided by its members), or its own time when it was fitted alone.
    ``fused`` says which.
    """

    __slots__ = ("estimator", "error", "fit_time", "fused")

    def __init__(self, estimator=None, error=None, fit_time=0.0, fused=True):
        self.estimator, self.error, self.fit_time, self.fused = estimator, error, fit_time, fused


class _CannotStack(Exception):
    """The group's module does not run stacked (``vmap`` refused it)."""


def _signature(module):
    """Members with equal signatures stack into one group."""
    layers = _explicit_layers(module)
    shapes = tuple((n, tuple(t.shape), t.dtype) for n, t in module.state_dict().items())
    if layers is not None:
        # Without names: a Dropout layer shifts the indices of the layers after it.
        return ("explicit", layers, tuple(t[1:] for t in shapes))
    return ("vmap", repr(module), shapes)


def fit_fused(jobs, *, max_members=None, n_threads=None, fallbacks=None, epochs=None):
    """Fit every ``(estimator, X, y, sample_weight)`` of ``jobs``, stacked where they can be.

    Each estimator must pass :func:`fusable`. Members that share
    :func:`fuse_key` and build the same architecture for their data train
    together, ``max_members`` at most at a time (None: as many as
    :func:`chunk_size` allows). A group whose module ``vmap`` cannot run is
    fitted one by one; its reason is appended to ``fallbacks`` (a list) if
    given, else warned.

    Returns one :class:`Outcome` per job: the fitted estimator, or the
    exception its fit raised (set-up errors, divergence) as a plain fit
    would have raised it.

    ``n_threads=None`` chooses torch threads from the work of one stacked
    step, as a plain fit does from its own.

    ``epochs`` (a list, one count per job) trains each member that many
    more epochs of its ``max_epochs``-long fit instead, continuing where its
    last call stopped (weights, optimizer state, schedule position, random
    streams): what ``BaseNN._fit_epochs`` does for one estimator, used by
    the rungs of a fused ASHA search.
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
                fit = est._start_fit(X, y, continuing=False, epochs=est.max_epochs,
                                     sample_weight=sample_weight)
            else:  # BaseNN._fit_epochs
                continuing = hasattr(est, "net_") and getattr(est, "_resume_rng_", None) is not None
                fit = est._start_fit(X, y, continuing=continuing, epochs=epochs[i], resume=True,
                                     sample_weight=sample_weight)
            if fit.device != "cpu" or not isinstance(fit.X_t, torch.Tensor) or fit.X_t.layout != torch.strided:
                raise _CannotStack(f"device={fit.device!r} or input layout")
            with seeded(fit.seed, fit.device):
                est._build_fit(fit)
            member = _Member(i, est, fit)
        except _CannotStack:
            results[i] = _alone(est, X, y, sample_weight, None if epochs is None else epochs[i])
            continue
        except Exception as exc:  # reported like the plain fit's error
            results[i] = Outcome(error=exc, fused=False)
            continue
        key = (fuse_key(est), _signature(fit.net.module_), fit.X.shape[1], _task(est))
        groups.setdefault(key, []).append(member)
    for group in groups.values():
        size = max_members or chunk_size(group[0])
        for start in range(0, len(group), size):
            chunk = group[start : start + size]
            try:
                outcomes = _fit_chunk(chunk, n_threads)
            except _CannotStack as exc:
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


def _task(estimator):
    """The loss a fitted member trains with: the estimator's task, or "multilabel"."""
    task = getattr(estimator, "_fit_task", None)
    return task() if task is not None else estimator._task


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
    per_member = member_bytes(member.net.module_, min(est.batch_size, member.n_train), member.fit.X.shape[1])
    return int(max(1, min(_MAX_MEMBERS, _GROUP_BYTES // max(per_member, 1))))


def _fit_chunk(members, n_threads):
    first = members[0]
    plan = _Plan([m.net.module_ for m in members])
    work = len(members) * min(first.estimator.batch_size, first.n_train) * row_cost(
        first.net.module_, first.fit.X.shape[1], first.fit.device)
    threads = n_threads or first.estimator.n_threads or auto_threads(work)
    start = time.perf_counter()
    with seeded(first.fit.seed, first.fit.device), torch_threads(threads):
        _train_group(plan, members, _task(first.estimator))
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


def _train_group(plan, members, task):
    """Train the members together until each has stopped; write their weights back."""
    modules = [m.net.module_ for m in members]
    stack = _Stack(plan, modules)
    opt_name = OPTIMIZERS.canonical(str(members[0].estimator.optimizer), param="optimizer")
    est_params = [m.estimator for m in members]
    optimizer = _StackedOptimizer(
        opt_name,
        stack.flat,
        torch.tensor([float(e.weight_decay) for e in est_params]),
        torch.tensor([float(e.momentum) for e in est_params]),
    )
    train = _Rows([m.fit.train for m in members])
    has_valid = any(m.fit.valid is not None for m in members)
    valid = _Rows([m.fit.valid if m.fit.valid is not None else m.fit.train for m in members]) if has_valid else None
    batch_size = members[0].estimator.batch_size
    generator = torch.Generator().manual_seed(members[0].fit.seed)
    active = list(members)  # position in the stack == position in this list
    autocast = autocast_for(getattr(members[0].estimator, "precision", "float32"), members[0].fit.device)
    clipping = any(getattr(m.estimator, "max_grad_norm", None) is not None for m in members)

    for k, m in enumerate(members):
        if m.fit.continuing:
            optimizer.load(k, m.net.optimizer_, plan.params_of(m.net.module_), stack.sizes)

    def drop(done):
        nonlocal active
        for m in done:
            k = active.index(m)
            _write_back(plan, m.net.module_, stack.member_state(k))
            if m.fit.resume:  # the next call continues from this state
                optimizer.export(k, m.net.optimizer_, plan.params_of(m.net.module_), stack.sizes)
        index = torch.tensor([i for i, m in enumerate(active) if m not in done], dtype=torch.long)
        active = [m for m in active if m not in done]
        if active:
            stack.keep(index)
            optimizer.keep(index)
            train.keep(index)
            if valid is not None:
                valid.keep(index)

    epoch = 0
    while active:
        epoch += 1
        tic = time.time()
        for m in active:
            m.net.history.new_epoch()
            m.net.history.record("epoch", len(m.net.history))
            m.schedule.on_epoch_begin(m.net)
        n_max = int(train.n.max())
        perms = torch.stack([
            _pad(torch.randperm(m.n_train, generator=m.fit.generator), n_max) for m in active
        ])
        steps = -(-n_max // batch_size)
        sums = torch.zeros(len(active), dtype=torch.float64)
        counts = torch.zeros(len(active), dtype=torch.float64)
        diverged = {}
        for s in range(steps):
            cols = slice(s * batch_size, (s + 1) * batch_size)
            positions = perms[:, cols]
            in_batch = train.valid[:, cols]
            xb, yb, wb = train.batch(positions)
            wb = wb * in_batch
            lr = torch.tensor([m.net.optimizer_.param_groups[0]["lr"] for m in active])
            with autocast:
                out = _first_forward(stack, xb, generator) if epoch == 1 and s == 0 else stack.forward(xb, True, generator)
                losses = (_row_losses(task, out, yb) * wb).sum(1) / wb.sum(1).clamp_min(_TINY)
            losses = losses.float()
            (grad,) = torch.autograd.grad(losses.sum(), stack.flat)
            if clipping:  # each member's global norm, as clip_grad_norm_ computes it
                limit = torch.tensor([m.estimator.max_grad_norm or math.inf for m in active])
                coef = (limit / (grad.norm(dim=1) + 1e-6)).clamp(max=1.0)
                grad = grad * coef.to(grad.dtype).unsqueeze(1)
            n_rows = in_batch.sum(1)
            stepping = n_rows > 0
            optimizer.step(stack.flat, grad, lr, None if bool(stepping.all()) else stepping)
            values = losses.detach().double()
            sums += values * n_rows
            counts += n_rows
            for k, (m, value, rows, on) in enumerate(zip(active, values.tolist(), n_rows.tolist(), stepping.tolist())):
                if not on or m in diverged:
                    continue
                batches = list.__getitem__(m.net.history, -1)["batches"]
                batches.append({"train_loss": value, "train_batch_size": int(rows)})
                if not math.isfinite(value):
                    diverged[m] = DivergenceError(
                        f"Training diverged in epoch {len(m.net.history)}: the training loss became "
                        f"{value} (lr={float(lr[k]):g}). Try a lower lr, a warm-up "
                        "(LRSchedule(..., warmup_epochs=1)), or scaled inputs (StandardScaler)."
                    )
                m.schedule.on_batch_end(m.net, training=True)
        train_loss = (sums / counts.clamp_min(1)).tolist()
        valid_loss = valid_score = None
        if valid is not None:
            with autocast:
                valid_loss, valid_score = _evaluate(stack, valid, task)
        done = []
        for k, m in enumerate(active):
            if m in diverged:
                m.error = diverged[m]
                done.append(m)
                continue
            h = m.net.history
            h.record("train_batch_count", m.steps)
            m.n_run += 1
            h.record("train_loss", train_loss[k])
            m.fit.loss_curve.append(float(train_loss[k]))
            if m.fit.valid is not None:
                h.record("valid_batch_count", -(-len(m.fit.valid) // batch_size))
                h.record("valid_loss", valid_loss[k])
                h.record("valid_score", valid_score[k])
            h.record("dur", time.time() - tic)
            m.schedule.on_epoch_end(m.net)
            if _should_stop(m, stack, k, h[-1]):
                done.append(m)
        if done:
            drop(done)


def _first_forward(stack, xb, generator):
    if stack.plan.explicit:
        return stack.forward(xb, True, generator)
    try:
        return stack.forward(xb, True, generator)
    except RuntimeError as exc:  # vmap's refusals are RuntimeErrors
        raise _CannotStack(str(exc).splitlines()[0]) from exc


def _should_stop(m, stack, k, row):
    """The plain fit's stopping rule for one member (``BaseNN._train``); records divergence."""
    est = m.estimator
    value = float(row[m.monitor])
    if not math.isfinite(value):
        m.error = DivergenceError(
            f"Training diverged in epoch {len(m.net.history)}: {m.monitor} is {value}. "
            "Try a lower lr or scaled inputs (StandardScaler)."
        )
        return True
    m.stale = m.stale + 1 if value > m.best - est.tol else 0
    if value < m.best:
        m.best = value
        if m.monitor == "valid_loss":
            m.best_state = stack.member_state(k)
    stop = m.n_run >= m.fit.epochs or (
        est.n_iter_no_change is not None and m.stale >= est.n_iter_no_change)
    if stop and m.best_state is not None:
        stack.set_member_state(k, m.best_state)
    return stop


@torch.no_grad()
def _evaluate(stack, rows, task, chunk=4096):
    """Weighted validation loss and score of every member, in row chunks."""
    n_max = rows.rows.shape[1]
    outs, losses = [], []
    for start in range(0, n_max, chunk):
        positions = torch.arange(start, min(start + chunk, n_max)).expand(rows.rows.shape[0], -1)
        xb, yb, wb = rows.batch(positions)
        out = stack.forward(xb, False)
        outs.append(out)
        losses.append(_row_losses(task, out, yb) * wb)
    out = torch.cat(outs, 1)
    w = rows.weight
    loss = torch.cat(losses, 1).sum(1) / w.sum(1).clamp_min(_TINY)
    return loss.double().tolist(), _scores(task, out, rows.target, w).double().tolist()


@torch.no_grad()
def _write_back(plan, module, state):
    params, buffers = state
    for p, v in zip(plan.params_of(module), params):
        p.copy_(v)
    for b, v in zip(plan.buffers_of(module), buffers):
        b.copy_(v)
