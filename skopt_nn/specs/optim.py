"""Optimizer registry: names such as ``"adamw"`` resolved to torch optimizers."""

import inspect

import torch

from sklearn.utils._param_validation import InvalidParameterError

from ._registry import Registry

__all__ = ["OPTIMIZERS", "resolve_optimizer"]

OPTIMIZERS = Registry("optimizer")
for _name, _cls in {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}.items():
    OPTIMIZERS.register(_name, _cls)


def _accepts(cls, name):
    try:
        return name in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def resolve_optimizer(optimizer, *, weight_decay, momentum, owner=None):
    """Return ``(optimizer_class, extra_kwargs)`` for an estimator's settings.

    ``momentum`` and ``weight_decay`` are passed only to optimizers whose
    constructor takes them, so one search space can mix ``"sgd"`` and
    ``"adam"`` without errors.

    Examples
    --------
    >>> cls, kw = resolve_optimizer("SGD", weight_decay=0.0, momentum=0.9)
    >>> cls.__name__, kw
    ('SGD', {'weight_decay': 0.0, 'momentum': 0.9})
    >>> resolve_optimizer("adam", weight_decay=1e-4, momentum=0.9)[1]
    {'weight_decay': 0.0001}
    """
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        cls = optimizer
    elif isinstance(optimizer, str):
        cls = OPTIMIZERS.get(optimizer, param="optimizer", owner=owner)
    else:
        raise InvalidParameterError(
            OPTIMIZERS.error_message(
                optimizer,
                param="optimizer",
                owner=owner,
                extra=" or a torch.optim.Optimizer subclass",
            )
        )
    kwargs = {}
    if _accepts(cls, "weight_decay"):
        kwargs["weight_decay"] = weight_decay
    if _accepts(cls, "momentum"):
        kwargs["momentum"] = momentum
    return cls, kwargs
