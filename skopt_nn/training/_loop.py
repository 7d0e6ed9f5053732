"""A leaner per-batch path through skorch's training loop.

skorch stays the training loop: its ``fit_loop``, ``train_step`` and
callbacks run as they are, and the history holds the same rows. What goes is
work that changes nothing on small batches, where it is a visible share of
the time:

* ``notify`` calls only the callbacks that define the event (skorch calls
  every callback for every event, most of them the base class's no-op);
* setting train/eval mode before every batch sets the flags directly, once
  the flat list of modules is known for the epoch (unless a module defines
  its own ``train``);
* a batch's loss and size are written into the history row without going
  through ``History``'s general index resolution;
* tensors, and tuples of them (targets with weights or teacher outputs),
  skip skorch's general ``to_tensor`` conversion (one ``.to`` each), and
  ``on_grad_computed`` is not announced when no callback listens;
* the log table (``PrintLog``) is left out when nothing would be printed.

It is also where the large-model knobs live, since they change what one
training step is (``configure_steps``): mixed precision (autocast around the
forward pass and the loss; the weights and the optimizer state stay float32;
float16 on CUDA with a gradient scaler), gradient accumulation (a window of
``k`` micro-batches, each loss scaled by its share of the window's rows, then
one optimizer step, so ``k`` batches of ``b`` rows train like one of ``k*b``)
and clipping of the global gradient norm before each optimizer step. A step
that ends a window reports ``stepped=True`` to ``on_batch_end``; the
schedule and pruning callbacks count optimizer steps by it.
"""

import contextlib

import torch
from skorch.callbacks import Callback
from skorch.dataset import get_len, unpack_data
from skorch.history import History

__all__ = ["LeanLoop", "last_batch_value", "PRECISIONS", "autocast_for", "steps_in_epoch"]

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast_for(precision, device):
    """The autocast context of ``precision`` on ``device`` (a null context for float32)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)

_BASE_TRAIN = torch.nn.Module.train


def _is_noop(cb, name):
    """True when ``cb``'s ``name`` event is the base class's no-op."""
    if name in vars(cb):  # set on the instance
        return False
    method = getattr(type(cb), name, None)
    return method is not None and method is getattr(Callback, name, None)


def last_batch_value(history, key):
    """``history[-1]["batches"][-1][key]``, read without index resolution."""
    if type(history) is History:
        return list.__getitem__(history, -1)["batches"][-1][key]
    return history[-1]["batches"][-1][key]


class LeanLoop:
    """Mixin for a skorch ``NeuralNet`` subclass; put it first in the bases."""

    def get_default_callbacks(self):
        callbacks = super().get_default_callbacks()
        if not self.verbose:  # PrintLog formats a table per epoch even when silent
            callbacks = [(name, cb) for name, cb in callbacks if name != "print_log"]
        return callbacks

    def _hooks(self, name):
        """Bound methods to call for the event ``name``: the net's own, then the callbacks'."""
        hooks = [getattr(self, name)]
        hooks += [getattr(cb, name) for _, cb in self.callbacks_ if not _is_noop(cb, name)]
        return hooks

    def _cached_hooks(self, method_name):
        cache = self.__dict__.get("_hook_cache")
        if cache is None or cache[0] is not self.callbacks_:
            cache = (self.callbacks_, {})
            self.__dict__["_hook_cache"] = cache
        hooks = cache[1].get(method_name)
        if hooks is None:
            hooks = cache[1][method_name] = self._hooks(method_name)
        return hooks

    def notify(self, method_name, **cb_kwargs):
        for hook in self._cached_hooks(method_name):
            hook(self, **cb_kwargs)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_hook_cache", None)  # bound methods: rebuilt on first use
        return state

    def initialize_callbacks(self, *args, **kwargs):
        self.__dict__.pop("_hook_cache", None)
        return super().initialize_callbacks(*args, **kwargs)

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        history = self.history
        if type(history) is History:  # History.new_batch, without index resolution
            list.__getitem__(history, -1)["batches"].append({})
        else:
            super().on_batch_begin(net, batch=batch, training=training, **kwargs)

    def infer(self, x, **fit_params):
        if type(x) is torch.Tensor:  # skorch's to_tensor would only call .to
            return self.module_(x.to(self.device), **fit_params)
        return super().infer(x, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if type(y_true) is torch.Tensor:
            return self.criterion_(y_pred, y_true.to(self.device))
        if type(y_true) in (tuple, list) and all(type(t) is torch.Tensor for t in y_true):
            # (y, weight), (y, teacher_out[, weight]): the same .to per part
            return self.criterion_(y_pred, [t.to(self.device) for t in y_true])
        return super().get_loss(y_pred, y_true, X=X, training=training)

    # -- one training step: precision, accumulation, clipping
    precision_ = "float32"
    accumulation_ = 1
    max_grad_norm_ = None
    grad_scaler_ = None

    def configure_steps(self, *, precision="float32", accumulation=1, max_grad_norm=None):
        """Set how a training step runs; called by the estimator before each fit."""
        self.precision_ = precision
        self.accumulation_ = int(accumulation)
        self.max_grad_norm_ = max_grad_norm
        scaler = None
        if precision == "float16" and torch.device(self.device).type == "cuda":
            # float16 gradients underflow without loss scaling; bfloat16 has
            # float32's exponent range and needs none.
            scaler = torch.amp.GradScaler("cuda")
        self.grad_scaler_ = scaler
        return self

    def _plain_steps(self):
        return self.accumulation_ == 1 and self.max_grad_norm_ is None and self.grad_scaler_ is None

    def train_step_single(self, batch, **fit_params):
        if self.precision_ == "float32" and self.__dict__.get("_window") is None:
            return super().train_step_single(batch, **fit_params)
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        with autocast_for(self.precision_, self.device):
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        scaled = loss
        share = self.__dict__.get("_window")
        if share is not None:  # this micro-batch's share of the window's rows
            scaled = loss * share
        if self.grad_scaler_ is not None:
            scaled = self.grad_scaler_.scale(scaled)
        scaled.backward()
        if y_pred.dtype in (torch.bfloat16, torch.float16):
            y_pred = y_pred.float()  # callbacks read predictions as float32
        return {"loss": loss.float(), "y_pred": y_pred}

    def validation_step(self, batch, **fit_params):
        with autocast_for(self.precision_, self.device):
            step = super().validation_step(batch, **fit_params)
        if step["y_pred"].dtype in (torch.bfloat16, torch.float16):
            step["y_pred"] = step["y_pred"].float()
        step["loss"] = step["loss"].float()
        return step

    def train_step(self, batch, **fit_params):
        listened = len(self._cached_hooks("on_grad_computed")) > 1
        if self._plain_steps():
            if listened:
                return super().train_step(batch, **fit_params)
            # skorch's train_step without notifying on_grad_computed, which no
            # callback listens to: the same closure, so LBFGS & co. work alike.
            accumulator = self.get_train_step_accumulator()

            def step_fn():
                self._zero_grad_optimizer()
                step = self.train_step_single(batch, **fit_params)
                accumulator.store_step(step)
                return step["loss"]

            self._step_optimizer(step_fn)
            return accumulator.get_step()
        return self._windowed_step(batch, listened, **fit_params)

    def _windowed_step(self, batch, listened, **fit_params):
        """One micro-batch; the optimizer steps at the end of its window."""
        plan = self.__dict__.get("_epoch_plan")
        if plan is None:  # a step outside run_single_epoch: a window of one batch
            plan = _EpochPlan(_rows(unpack_data(batch)[0]), _rows(unpack_data(batch)[0]), 1)
        first, last, window_rows = plan.next_micro()
        if first:
            self._zero_grad_optimizer()
        # counted before any batch transform (distillation's transfer rows)
        self.__dict__["_window"] = _rows(unpack_data(batch)[0]) / window_rows
        try:
            step = self.train_step_single(batch, **fit_params)
        finally:
            self.__dict__["_window"] = None
        if listened:
            self.notify("on_grad_computed", named_parameters=list(self.get_all_learnable_params()),
                        batch=batch)
        if last:
            scaler = self.grad_scaler_
            optimizers = [getattr(self, name + "_") for name in self._optimizers]
            if self.max_grad_norm_ is not None:
                if scaler is not None:
                    for optimizer in optimizers:
                        scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(
                    [p for _, p in self.get_all_learnable_params()], self.max_grad_norm_
                )
            for optimizer in optimizers:
                if scaler is not None:
                    scaler.step(optimizer)
                else:
                    optimizer.step()
            if scaler is not None:
                scaler.update()
        step["stepped"] = last
        return step

    def _mode_plan(self):
        """Every module whose train/eval flag ``_set_training`` sets, or None.

        None when some module defines its own ``train``: then skorch's
        ``module.train(mode)`` is called as usual.
        """
        flat = []
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_", None)
            if isinstance(module, torch.nn.Module):
                for sub in module.modules():
                    if type(sub).train is not _BASE_TRAIN:
                        return None
                    flat.append(sub)
        return flat

    def _set_training(self, training=True):
        plan = self.__dict__.get("_epoch_modes")
        if plan is None:
            return super()._set_training(training)
        for module in plan:
            if module.training is not training:
                module.training = training

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if iterator is None:
            return
        history = self.history
        if type(history) is not History:
            return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        self.__dict__["_epoch_modes"] = self._mode_plan()
        if training and not self._plain_steps():
            self.__dict__["_epoch_plan"] = _EpochPlan(
                get_len(iterator.dataset), iterator.batch_size, self.accumulation_
            )
        try:
            loss_key, size_key = prefix + "_loss", prefix + "_batch_size"
            begin, end = self._cached_hooks("on_batch_begin"), self._cached_hooks("on_batch_end")
            batch_count = 0
            for batch in iterator:
                for hook in begin:
                    hook(self, batch=batch, training=training)
                step = step_fn(batch, **fit_params)
                row = list.__getitem__(history, -1)["batches"][-1]
                row[loss_key] = step["loss"].item()
                xb = batch[0] if isinstance(batch, (tuple, list)) else batch
                row[size_key] = xb.shape[0] if type(xb) is torch.Tensor else get_len(xb)
                for hook in end:
                    hook(self, batch=batch, training=training, **step)
                batch_count += 1
            history.record(prefix + "_batch_count", batch_count)
        finally:
            self.__dict__.pop("_epoch_modes", None)
            self.__dict__.pop("_epoch_plan", None)


def _rows(X):
    return X.shape[0] if hasattr(X, "shape") else get_len(X)


class _EpochPlan:
    """Where each micro-batch of an epoch falls in its accumulation window.

    The epoch's ``n_rows`` come in micro-batches of ``batch_size`` (the last
    may be short); windows are ``k`` micro-batches, the last may be short.
    ``next_micro`` returns (starts a window, ends a window, rows in the window).
    """

    def __init__(self, n_rows, batch_size, k):
        self.n_rows, self.batch_size, self.k = int(n_rows), int(batch_size), int(k)
        self.n_micro = max(1, -(-self.n_rows // self.batch_size))
        self.index = 0

    def next_micro(self):
        i, k, bs = self.index, self.k, self.batch_size
        self.index += 1
        start = (i // k) * k
        stop = min(start + k, self.n_micro)
        rows = min(stop * bs, self.n_rows) - start * bs
        return i == start, i == stop - 1 or i >= self.n_micro - 1, max(rows, 1)


def steps_in_epoch(n_rows, batch_size, accumulation=1):
    """Optimizer steps in an epoch of ``n_rows`` rows."""
    micro = -(-int(n_rows) // int(batch_size))
    return -(-micro // int(accumulation))
