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
"""

import torch
from skorch.callbacks import Callback
from skorch.dataset import get_len
from skorch.history import History

__all__ = ["LeanLoop", "last_batch_value"]

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

    def train_step(self, batch, **fit_params):
        if len(self._cached_hooks("on_grad_computed")) > 1:
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
