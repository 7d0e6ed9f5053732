"""The skorch net a fit trains, and what is left of it once trained.

``_Net`` is skorch's ``NeuralNet`` with the lean batch loop (``LeanLoop``),
an optional per-batch transform of the training inputs (distillation's
augmentation) and a pickle of CPU weights as NumPy arrays. ``make_net``
builds one from an estimator's settings; ``_lean`` drops from a trained net
what only training needs, ``_register_optimizer_setters`` puts skorch's
setters back for the next fit, and ``finished_net`` rebuilds a trained net
around its network (pickles and ``load``).
"""

import functools

import torch
from skorch import NeuralNet
from skorch.setter import optimizer_setter

from ..specs.optim import resolve_optimizer
from ..specs.quantization import quiet_ao
from ._loop import LeanLoop
from ._pickling import dump_compact
from .data import BatchIterator

__all__ = ["make_net", "finished_net"]


class _Holdout:
    """skorch ``train_split`` that returns a validation set chosen in ``fit``."""

    def __init__(self, valid):
        self.valid = valid

    def __call__(self, dataset, y=None, **kwargs):
        return dataset, self.valid


class _Net(LeanLoop, NeuralNet):
    """skorch net with an optional per-batch transform of the training inputs.

    The transform is where distillation's transfer-set augmentation adds
    synthetic rows labelled by the teacher.
    """

    batch_transform_ = None

    _SAME = "<same as module_>"  # the marker of earlier pickles too

    def __getstate__(self):
        if str(self.device) == "cpu":
            # skorch's format with CPU tensors as NumPy arrays (_pickling)
            state = self.__dict__.copy()
            state.pop("_hook_cache", None)  # bound methods: rebuilt on first use (LeanLoop)
            moved = {key: state.pop(key) for key in list(state) if isinstance(key, str)
                     and any(key.startswith(prefix) for prefix in self.cuda_dependent_attributes_)}
            state["__cuda_dependent_attributes__"] = dump_compact(moved)
        else:
            state = super().__getstate__()
        # ``module`` is the very object trained as ``module_`` (and so is the
        # criterion); skorch stores ``module_`` apart (for CPU loading), so
        # keeping both would store every weight twice.
        for name in ("module", "criterion"):
            if self.__dict__.get(name) is self.__dict__.get(name + "_"):
                state[name] = self._SAME
        return state

    def __setstate__(self, state):
        with quiet_ao():
            # torch's unpickler of int8 (quantized) tensors warns that they are
            # deprecated; the warning is torch's, not the user's.
            super().__setstate__(state)
        for name in ("module", "criterion"):
            if isinstance(self.__dict__.get(name), str) and self.__dict__[name] == self._SAME:
                self.__dict__[name] = self.__dict__[name + "_"]

    def get_iterator(self, dataset, training=False):
        iterator = super().get_iterator(dataset, training=training)
        if isinstance(iterator, BatchIterator) and dataset.X.device != torch.device(self.device):
            iterator.device = self.device
        return iterator

    def train_step_single(self, batch, **fit_params):
        if self.batch_transform_ is not None:
            batch = self.batch_transform_(*batch)
        return super().train_step_single(batch, **fit_params)


def make_net(estimator, module, opt_cls, opt_kwargs, *, device, callbacks, criterion,
             train_split=None, iterator_train__generator=None):
    """An initialised skorch net for ``module`` with the estimator's settings."""
    net = _Net(
        module=module,
        criterion=criterion,
        optimizer=opt_cls,
        lr=estimator._setting("lr"),
        batch_size=estimator._setting("batch_size"),
        max_epochs=estimator._setting("max_epochs"),
        train_split=train_split,
        iterator_train=BatchIterator,
        iterator_train__shuffle=True,
        iterator_train__generator=iterator_train__generator,
        iterator_valid=BatchIterator,
        callbacks=callbacks,
        device=device,
        verbose=int(estimator.verbose > 1),  # 1 draws a progress bar instead
        **{f"optimizer__{k}": v for k, v in opt_kwargs.items()},
    )
    return net.initialize()


def finished_net(estimator, module, *, float_module=None):
    """A finished net on the CPU around a trained ``module``, from the estimator's settings.

    What ``fit`` leaves behind (``_lean``) without a history: used where a
    net is rebuilt rather than read, by the pickle of a finished fit
    (``NetRecord``) and by ``load``. skorch's optimizer needs float
    parameters: an int8 ``module`` comes with the ``float_module`` it was
    made from, and its optimizer is left holding no parameters, as
    ``fit`` leaves it.
    """
    opt_cls, opt_kwargs = resolve_optimizer(
        estimator.optimizer, weight_decay=estimator.weight_decay, momentum=estimator.momentum,
        owner=type(estimator).__name__,
    )
    net = make_net(estimator, module if float_module is None else float_module, opt_cls, opt_kwargs,
                   device="cpu", callbacks=[], criterion=estimator._criterion())
    if float_module is not None:
        net.module = net.module_ = module
        forget_float_weights(net)
    _lean(net)
    return net


def forget_float_weights(net):
    """Leave a quantized net's optimizer holding no parameters, as a finished ``fit`` does.

    Its parameter groups still point at the float network the int8 copy was
    made from, which every pickle would otherwise carry beside it.
    """
    for group in net.optimizer_.param_groups:
        group["params"] = []


def _lean(net):
    """Drop what only training needs from a trained net, in place.

    Kept: the module, the history, the optimizer (its state only when the
    estimator continues training), the criterion module and the plain
    settings. Dropped: the callbacks (skorch's defaults hold ``print`` and
    timers), the validation split, the shuffling generator, the batch
    transform and skorch's ``functools.partial`` setters, so a fitted model
    holds no callable that a careful loader would have to trust.
    """
    net.callbacks = []
    net.callbacks_ = []
    net.virtual_params_ = {}
    net.batch_transform_ = None
    net.train_split = None
    net.iterator_train__generator = None
    net.grad_scaler_ = None  # set again by the next fit's configure_steps


def _register_optimizer_setters(net):
    """Register skorch's optimizer setters (``net.set_params(lr=...)``) again."""
    # The patterns skorch's own optimizer initialisation registers.
    setter = functools.partial(optimizer_setter, optimizer_attr="optimizer_", optimizer_name="optimizer")
    for pattern in ("optimizer__param_groups__*__*", "optimizer__*", "lr"):
        net.virtual_params_[pattern] = setter
