"""Network specs: parameter holders that build a ``torch.nn.Module`` at fit time.

A spec stores hyperparameters only; ``build(n_features_in, n_outputs)`` makes
a fresh module sized for the data. Specs are sklearn ``BaseEstimator``
objects, so ``clone``, ``set_params(module__width=64)`` and every search work
on them as on a Pipeline step.
"""

import copy
import inspect
import math
import numbers

from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from ._registry import Registry
from ._spec import LeanParams, OpenParams

__all__ = ["MLP", "CNN", "TorchModule", "ACTIVATIONS", "resolve_module", "accepts_sparse"]

ACTIVATIONS = Registry("activation")
for _name, _cls in {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "logistic": nn.Sigmoid,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}.items():
    ACTIVATIONS.register(_name, _cls)


def _glorot_(layer):
    # sklearn's MLP initialisation: weights and biases uniform in
    # +-sqrt(6 / (fan_in + fan_out)).
    bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
    nn.init.uniform_(layer.weight, -bound, bound)
    nn.init.uniform_(layer.bias, -bound, bound)


def _kaiming_(layer):
    nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)


INITS = Registry("init")
INITS.register("glorot", _glorot_)
INITS.register("kaiming", _kaiming_)
INITS.register("torch", None)  # keep torch's own default initialisation


def _check_int(value, name, owner, low=1):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be an int >= {low}; got {value!r}."
        )
    return int(value)


def _check_fraction(value, name, owner):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be a float in [0, 1); got {value!r}."
        )
    return float(value)


class MLP(LeanParams, BaseEstimator):
    """Fully connected network spec.

    Depth and width can be set as a tuple (``hidden_layer_sizes``, as in
    sklearn's ``MLPClassifier``) or as two scalars (``n_layers``, ``width``)
    that Bayesian search can sample directly. When either scalar is set, it
    wins over the tuple.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(100,)
        Width of each hidden layer; ``()`` gives a linear model.
    activation : str, default="relu"
        ``relu``, ``tanh``, ``logistic``, ``gelu``, ``silu``, ``elu``,
        ``leaky_relu`` or ``identity``.
    dropout : float, default=0.0
        Dropout probability after every hidden layer.
    batch_norm : bool, default=False
        Add ``BatchNorm1d`` after every hidden linear layer.
    n_layers : int, default=None
        Number of hidden layers; overrides the length of ``hidden_layer_sizes``.
    width : int, default=None
        Width of every hidden layer; overrides ``hidden_layer_sizes``.
    init : str, default="glorot"
        Weight initialisation of the linear layers: ``glorot`` (uniform, as
        sklearn's ``MLPClassifier``), ``kaiming`` (He uniform, zero biases)
        or ``torch`` (PyTorch's default).

    Examples
    --------
    >>> from skopt_nn import MLP
    >>> MLP(width=32, n_layers=2).layer_sizes()
    (32, 32)
    >>> net = MLP(hidden_layer_sizes=(8,)).build(4, 3)
    >>> net
    Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=3, bias=True)
    )
    """

    # The first layer is linear: it multiplies torch sparse batches as they are.
    accepts_sparse = True

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        dropout=0.0,
        batch_norm=False,
        n_layers=None,
        width=None,
        init="glorot",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.n_layers = n_layers
        self.width = width
        self.init = init

    def layer_sizes(self):
        """The hidden layer widths this spec builds."""
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise InvalidParameterError(
                "The 'hidden_layer_sizes' parameter of MLP must be a tuple of ints; "
                f"got {self.hidden_layer_sizes!r}."
            ) from None
        for s in sizes:
            _check_int(s, "hidden_layer_sizes", "MLP")
        if self.n_layers is None and self.width is None:
            return tuple(int(s) for s in sizes)
        n = len(sizes) if self.n_layers is None else _check_int(self.n_layers, "n_layers", "MLP", 0)
        default_width = sizes[0] if sizes else 100
        w = default_width if self.width is None else _check_int(self.width, "width", "MLP")
        return (int(w),) * n

    def build(self, n_features_in, n_outputs):
        """Return a fresh ``nn.Sequential`` for the given input and output sizes."""
        sizes = self.layer_sizes()
        act = ACTIVATIONS.get(self.activation, param="activation", owner="MLP")
        dropout = _check_fraction(self.dropout, "dropout", "MLP")
        layers, width_in = [], n_features_in
        for width in sizes:
            layers.append(nn.Linear(width_in, width))
            if self.batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(act())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width_in = width
        layers.append(nn.Linear(width_in, n_outputs))
        init = INITS.get(self.init, param="init", owner="MLP")
        if init is not None:
            for layer in layers:
                if isinstance(layer, nn.Linear):
                    init(layer)
        return nn.Sequential(*layers)


_CONV = {1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d),
         2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d),
         3: (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)}


def _per_dim(value, name, ndim, low):
    """An int or a tuple of ``ndim`` ints, as a tuple of ``ndim`` ints >= ``low``."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * ndim
    if len(values) != ndim:
        raise InvalidParameterError(
            f"The {name!r} parameter of CNN must be an int or a tuple of {ndim} ints for "
            f"{ndim}-D inputs; got {value!r}."
        )
    return tuple(_check_int(v, name, "CNN", low) for v in values)


class CNN(LeanParams, BaseEstimator):
    """Convolutional network spec for signals, images and volumes stored as flat rows.

    Rows of ``X`` are reshaped to ``input_shape`` inside the module, so the
    net works straight after a ``StandardScaler`` in a ``Pipeline``. The
    length of ``input_shape`` picks the convolution: ``(C, L)`` gives
    ``Conv1d`` layers (signals, spectra), ``(C, H, W)`` ``Conv2d`` (images)
    and ``(C, D, H, W)`` ``Conv3d`` (volumes). Each entry of ``channels``
    adds a convolution, an activation and (while every spatial size is at
    least 2) a max-pool of size 2; then a hidden fully connected layer of
    ``hidden`` units and the output layer.

    Parameters
    ----------
    input_shape : tuple of int, default=(1, 28, 28)
        ``(channels, length)``, ``(channels, height, width)`` or
        ``(channels, depth, height, width)`` of one sample; ``(1, 8, 8)``
        for sklearn's digits.
    channels : int or tuple of int, default=(32, 64)
        Output channels of each convolution.
    kernel_size : int or tuple of int, default=3
        Size of every convolution kernel; a tuple gives one size per
        spatial dimension, e.g. ``(3, 5)``.
    hidden : int, default=128
        Units of the fully connected hidden layer.
    dropout : float, default=0.0
        Dropout before the output layer.
    activation : str, default="relu"
        Activation after every convolution and the hidden layer.
    batch_norm : bool, default=False
        Add a batch norm after every convolution.
    stride : int or tuple of int, default=1
        Stride of every convolution.
    padding : {"same", "valid"}, int or tuple of int, default="same"
        Zero padding of every convolution: ``"same"`` pads ``kernel_size // 2``
        on each side (the size is kept for odd kernels at stride 1),
        ``"valid"`` pads nothing, an int or tuple pads that much.

    Examples
    --------
    >>> import torch
    >>> from skopt_nn import CNN
    >>> net = CNN(input_shape=(1, 8, 8)).build(64, 10)
    >>> net(torch.zeros(5, 64)).shape
    torch.Size([5, 10])
    >>> signal_net = CNN(input_shape=(2, 40), channels=(8,), kernel_size=5, stride=2).build(80, 3)
    >>> signal_net[1]
    Conv1d(2, 8, kernel_size=(5,), stride=(2,), padding=(2,))
    """

    # Rows are reshaped into images first, which a sparse batch cannot be.
    accepts_sparse = False

    def __init__(
        self,
        input_shape=(1, 28, 28),
        channels=(32, 64),
        kernel_size=3,
        hidden=128,
        dropout=0.0,
        activation="relu",
        batch_norm=False,
        stride=1,
        padding="same",
    ):
        self.input_shape = input_shape
        self.channels = channels
        self.kernel_size = kernel_size
        self.hidden = hidden
        self.dropout = dropout
        self.activation = activation
        self.batch_norm = batch_norm
        self.stride = stride
        self.padding = padding

    def build(self, n_features_in, n_outputs):
        """Return a fresh ``nn.Sequential`` for the given input and output sizes."""
        try:
            shape = tuple(int(s) for s in self.input_shape)
        except (TypeError, ValueError):
            shape = ()
        if len(shape) - 1 not in _CONV or min(shape) < 1:
            raise InvalidParameterError(
                "The 'input_shape' parameter of CNN must be (channels, length), (channels, height, "
                f"width) or (channels, depth, height, width) of positive ints; got {self.input_shape!r}."
            )
        if math.prod(shape) != n_features_in:
            raise ValueError(
                f"CNN input_shape={shape} needs {math.prod(shape)} features per row, "
                f"but X has {n_features_in} features."
            )
        ndim = len(shape) - 1
        conv, norm, pool = _CONV[ndim]
        act = ACTIVATIONS.get(self.activation, param="activation", owner="CNN")
        k = _per_dim(self.kernel_size, "kernel_size", ndim, 1)
        stride = _per_dim(self.stride, "stride", ndim, 1)
        if isinstance(self.padding, str) and self.padding in ("same", "valid"):
            pad = tuple(kk // 2 for kk in k) if self.padding == "same" else (0,) * ndim
        elif isinstance(self.padding, str):
            raise InvalidParameterError(
                "The 'padding' parameter of CNN must be 'same', 'valid', an int or a tuple of ints; "
                f"got {self.padding!r}."
            )
        else:
            pad = _per_dim(self.padding, "padding", ndim, 0)
        hidden = _check_int(self.hidden, "hidden", "CNN")
        dropout = _check_fraction(self.dropout, "dropout", "CNN")
        chans = (self.channels,) if isinstance(self.channels, numbers.Integral) else tuple(self.channels)
        c_in, size = shape[0], shape[1:]
        layers = [nn.Unflatten(1, shape)]
        for i, c_out in enumerate(chans, 1):
            c_out = _check_int(c_out, "channels", "CNN")
            layers.append(conv(c_in, c_out, k, stride=stride, padding=pad))
            size = tuple((n + 2 * p - kk) // s + 1 for n, p, kk, s in zip(size, pad, k, stride))
            if min(size) < 1:
                raise ValueError(
                    f"CNN kernel_size={self.kernel_size!r} with padding={self.padding!r} is larger than "
                    f"the input of convolution {i} for input_shape={shape}."
                )
            if self.batch_norm:
                layers.append(norm(c_out))
            layers.append(act())
            if min(size) >= 2:
                layers.append(pool(2))
                size = tuple(n // 2 for n in size)
            c_in = c_out
        layers += [nn.Flatten(), nn.Linear(c_in * math.prod(size), hidden), act()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden, n_outputs))
        return nn.Sequential(*layers)


class TorchModule(OpenParams):
    """Spec for any user ``nn.Module`` class; its kwargs become searchable.

    ``build`` calls ``module_class(**kwargs)``, filling in ``n_features_in``
    and ``n_outputs`` when the constructor takes parameters of those names
    and they were not given. The kwargs are reached in searches as
    ``module__<kwarg>``.

    Parameters
    ----------
    module_class : type
        A subclass of ``torch.nn.Module``; its ``forward`` must take one
        float tensor of shape ``(n_samples, n_features)`` and return one
        output per class (logits) or per regression target. A class that
        sets the class attribute ``accepts_sparse = True`` receives sparse
        ``X`` as torch sparse COO batches (a first ``nn.Linear`` multiplies
        them as they are); without it sparse ``X`` is refused.
    **kwargs
        Arguments of ``module_class``.

    Examples
    --------
    >>> from torch import nn
    >>> from skopt_nn import TorchModule
    >>> class Net(nn.Module):
    ...     def __init__(self, n_features_in, n_outputs, hidden=8):
    ...         super().__init__()
    ...         self.body = nn.Sequential(nn.Linear(n_features_in, hidden), nn.ReLU(),
    ...                                   nn.Linear(hidden, n_outputs))
    ...     def forward(self, x):
    ...         return self.body(x)
    >>> spec = TorchModule(Net, hidden=16)
    >>> spec.set_params(hidden=4).build(3, 2).body[0]
    Linear(in_features=3, out_features=4, bias=True)
    """

    _named, _open = ("module_class",), "kwargs"

    def __init__(self, module_class, **kwargs):
        self.module_class = module_class
        self.kwargs = kwargs

    def __repr__(self):
        name = getattr(self.module_class, "__name__", repr(self.module_class))
        args = [name] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"TorchModule({', '.join(args)})"

    def build(self, n_features_in, n_outputs):
        """Instantiate the module class for the given input and output sizes."""
        cls = self.module_class
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise InvalidParameterError(
                f"The 'module_class' parameter of TorchModule must be a torch.nn.Module subclass; got {cls!r}."
            )
        kwargs = dict(self.kwargs)
        try:
            accepted = inspect.signature(cls).parameters
        except (TypeError, ValueError):
            accepted = {}
        for key, value in (("n_features_in", n_features_in), ("n_outputs", n_outputs)):
            if key in accepted and key not in kwargs:
                kwargs[key] = value
        return cls(**kwargs)


def accepts_sparse(spec):
    """Whether the network a spec builds takes torch sparse batches.

    ``MLP`` does, ``CNN`` does not; a ``TorchModule`` or ``nn.Module``
    instance does when its class sets ``accepts_sparse = True``; any other
    spec when it has a true ``accepts_sparse`` attribute.
    """
    if isinstance(spec, TorchModule):
        return bool(getattr(spec.module_class, "accepts_sparse", False))
    if isinstance(spec, _Instance):
        return bool(getattr(spec.module, "accepts_sparse", False))
    return bool(getattr(spec, "accepts_sparse", False))


def resolve_module(module, owner=None):
    """Turn an estimator's ``module`` parameter into a spec with ``build``."""
    if module is None:
        return MLP()
    if isinstance(module, type) and issubclass(module, nn.Module):
        return TorchModule(module)
    if isinstance(module, nn.Module):
        return _Instance(module)
    if hasattr(module, "build"):
        return module
    where = f" of {owner}" if owner else ""
    raise InvalidParameterError(
        f"The 'module' parameter{where} must be None, a spec (MLP, CNN, TorchModule), "
        f"an nn.Module subclass or an nn.Module instance; got {module!r} instead."
    )


class _Instance:
    """An ``nn.Module`` instance given as ``module``: copied fresh at every fit."""

    def __init__(self, module):
        self.module = module

    def build(self, n_features_in, n_outputs):
        return copy.deepcopy(self.module)


def count_params(module, trainable=False):
    """Number of parameters of a module (only those that train, with ``trainable``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)

