"""Quantization as a hyperparameter: the fitted network stored and run in fewer bits.

A ``Quantization`` spec is applied once, at the end of ``fit``: after the
last epoch, after pruning has made its masks permanent (and removed units),
and after the fitted attributes that describe the float network
(``n_params_``) are set. The estimator then holds the quantized network as
``module_``, so ``predict``, ``score``, cross-validation and every search
see the model that will be served, and a search can weigh accuracy against
size like any other hyperparameter.

The int8 methods use PyTorch's eager quantization (``torch.ao.quantization``).
It was chosen by measurement on the CPUs this project runs on: its dynamic
int8 ``Linear`` predicts 1.6-1.7x faster than float32 on an AVX2 CPU,
while ``torchao``'s int8 configurations, in eager mode, predicted slower
than float32 (0.04-1.0x; see the quantization section of the compression
guide). ``torch.ao.quantization`` is deprecated upstream, so it is imported
only when a fit asks for int8, its deprecation warnings are silenced at our
calls only, and a torch without it gets a clear error.
"""

import copy
import numbers
import warnings

import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints
from skorch.callbacks import Callback
from torch import nn

from ._spec import LeanParams
from .transformer import accepts_text

__all__ = ["Quantization", "QUANTIZATION_METHODS", "GRAPH_METHODS", "quiet_ao"]

QUANTIZATION_METHODS = ("dynamic_int8", "static_int8", "qat_int8", "float16", "bfloat16")
_INT8 = ("dynamic_int8", "static_int8", "qat_int8")
# Methods whose result is a torch.fx graph built during the fit: the file
# format cannot rebuild them without running code.
GRAPH_METHODS = ("static_int8", "qat_int8")
_LOW = {"float16": torch.float16, "bfloat16": torch.bfloat16}
# What torch.ao says at every call; the user asked for quantization, so the
# notice that the module is deprecated upstream is ours to handle, not theirs.
_AO_NOISE = (
    r".*torch\.ao\.quantization is deprecated.*",
    r".*quantized tensor creation functions.*",
    r".*must run observer before calling calculate_qparams.*",
    r".*TypedStorage is deprecated.*",
    r".*quant_min and quant_max to specify the range.*",  # torch's own copy and unpickling of int8 tensors
)


class quiet_ao(warnings.catch_warnings):
    """``warnings.catch_warnings`` that drops torch.ao's deprecation notices only."""

    def __enter__(self):
        out = super().__enter__()
        for pattern in _AO_NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        return out


def _ao():
    """``torch.ao.quantization``, or a clear error on a torch without it."""
    try:
        with quiet_ao():
            from torch.ao import quantization
            from torch.ao.nn.quantized import dynamic  # noqa: F401  (the layers int8 models hold)
    except ImportError as exc:  # pragma: no cover - torch builds without it
        raise ImportError(
            f"Quantization's int8 methods need torch.ao.quantization, which this torch "
            f"({torch.__version__}) does not provide ({exc}). Use Quantization('float16') or "
            "'bfloat16', or a torch that still ships torch.ao.quantization."
        ) from None
    return quantization


def _dynamic_linear():
    from torch.ao.nn.quantized.dynamic import Linear

    return Linear


class Quantization(LeanParams, BaseEstimator):
    """Quantization recipe: the fitted network's weights in fewer bits.

    Pass it as ``NNClassifier(quantization=Quantization(...))``; every
    parameter is searchable as ``quantization__<name>``, and
    ``{"quantization": [None, Quantization()]}`` in a grid compares the
    float model with the quantized one. It is applied at the end of
    ``fit``, after training and pruning, so the scores a search sees are
    those of the quantized model.

    Parameters
    ----------
    method : {"dynamic_int8", "static_int8", "qat_int8", "float16", "bfloat16"}, \
            default="dynamic_int8"
        - ``dynamic_int8``: the weights of every ``nn.Linear`` layer (of an
          MLP, the head of a CNN, the linear layers of a ``Transformer``)
          stored in int8 with a scale; activations are quantized at run
          time, per batch. About 4x smaller linear layers and the fastest
          CPU predict. The model predicts on the CPU.
        - ``static_int8``: convolutions and linear layers both in int8,
          with activation ranges calibrated on up to ``calibration_rows``
          training rows of the fit (graph mode, ``torch.fx``), so a CNN is
          quantized whole. Needs a network that ``torch.fx`` can trace; the
          model predicts on the CPU.
        - ``qat_int8``: quantization-aware training. From ``qat_start``
          of ``max_epochs`` on, the network trains with its weights and
          activations rounded to int8 in the forward pass (fake
          quantization, straight-through gradients), so it learns weights
          that survive the rounding; at the end of ``fit`` it becomes the
          same kind of int8 network as ``static_int8``. Not with
          ``pruning``, ``n_ensemble > 1`` or fused training.
        - ``float16`` / ``bfloat16``: every floating weight stored in 16
          bits (2x smaller). On the CPU, prediction computes in float32 from
          the stored weights; on a GPU it runs in the 16-bit type.
    per_channel : bool, default=False
        int8 methods: one scale per output unit of each layer instead of one
        per layer. Usually a little more accurate, a little slower.
    calibration_rows : int, default=1024
        ``static_int8`` and ``qat_int8``: how many training rows (the first
        of the fit's training split) calibrate the activation ranges (for
        ``qat_int8``, once more with the final weights, after training).
    qat_start : float in [0, 1), default=0.5
        ``qat_int8``: the share of ``max_epochs`` trained in float before
        fake quantization is switched on. Training with rounded activations
        from the first epoch learns much more slowly (the output range the
        rounding allows lags behind the growing logits); fine-tuning a
        float-trained network does not.

    See Also
    --------
    Pruning : Removes weights or whole units; quantize after pruning for
        the smallest model.

    Notes
    -----
    A quantized model keeps no float copy of its weights, unless the
    estimator will continue training it (``warm_start=True``,
    ``partial_fit``): then the float network is kept alongside, training
    continues from it and is quantized again at the end of each call.
    Without a float copy, ``partial_fit`` continues from the rounded
    weights (``dynamic_int8`` and the 16-bit methods; an int8 graph has no
    float form).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skopt_nn import MLP, NNClassifier, Quantization
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = NNClassifier(MLP((64,)), max_epochs=5, random_state=0,
    ...                    quantization=Quantization("dynamic_int8")).fit(X / 16, y)
    >>> clf.quantization_summary_["layers"]
    ['0', '2']
    >>> clf.quantization_summary_["float_bytes"] > 3 * clf.quantization_summary_["quantized_bytes"]
    True
    """

    _parameter_constraints = {
        "method": [StrOptions(set(QUANTIZATION_METHODS))],
        "per_channel": ["boolean"],
        "calibration_rows": [Interval(numbers.Integral, 1, None, closed="left")],
        "qat_start": [Interval(numbers.Real, 0, 1, closed="left")],
    }

    def __init__(self, method="dynamic_int8", per_channel=False, calibration_rows=1024, qat_start=0.5):
        self.method = method
        self.per_channel = per_channel
        self.calibration_rows = calibration_rows
        self.qat_start = qat_start

    def _validated(self):
        """Raise sklearn's ``InvalidParameterError`` for a bad option (at fit, never earlier)."""
        validate_parameter_constraints(self._parameter_constraints, self.get_params(deep=False),
                                       caller_name=type(self).__name__)
        if self.method in _INT8:
            _ao()
        return self

    # -- hooks the training loop calls (skopt_nn.training never names a method) -------
    def _check_fit(self, *, module, pruning, n_ensemble):
        """Raise before training when this quantization cannot act on the fit described."""
        self._validated()  # bad options fail before training, not after
        if self.method in GRAPH_METHODS and accepts_text(module):
            raise ValueError(
                f"Quantization({self.method!r}) cannot quantize a pretrained Transformer: "
                "torch.fx does not trace Hugging Face models as a whole. Use "
                "Quantization('dynamic_int8'), which quantizes its linear layers."
            )
        if self.method == "qat_int8":
            clash = [name for name, on in (("pruning", pruning is not None),
                                           ("n_ensemble > 1", n_ensemble != 1)) if on]
            if clash:
                raise ValueError(
                    f"Quantization('qat_int8') cannot be combined with {' or '.join(clash)}: "
                    "it trains a traced graph of fake-quantized layers, which pruning and "
                    "ensembles do not act on. Quantize after training instead, with "
                    "'dynamic_int8' or 'static_int8'."
                )

    def _prepare_training(self, module, X_t):
        """The freshly built float ``module`` as it trains: with fake quantization for ``qat_int8``."""
        if self.method != "qat_int8":
            return module
        if not isinstance(X_t, torch.Tensor) or X_t.is_sparse:  # SparseRows
            raise ValueError(
                "Quantization('qat_int8') trains its fake-quantized layers on dense rows; "
                "this X is sparse. Densify it, or quantize after training with "
                "'dynamic_int8' or 'static_int8'."
            )
        return self._prepare(module, X_t[:1])

    def _training_callbacks(self, module, *, max_epochs, start_epoch):
        """The skorch callbacks this quantization needs while training (``qat_int8``'s switch)."""
        if self.method != "qat_int8":
            return []
        return [("quantization", self._make_callback(module, max_epochs=max_epochs, start_epoch=start_epoch))]

    @property
    def _calibrates(self):
        """Whether ``_apply`` needs training rows (``static_int8`` calibrates on them)."""
        return self.method == "static_int8"

    # -- protocol used by the estimators (see skopt_nn.training._base) ----------------
    def _apply(self, module, rows=None):
        """The quantized copy of a trained float ``module`` and a summary of what was done.

        ``rows`` are training inputs (``static_int8`` calibrates on them).
        The float ``module`` is left as it is.
        """
        self._validated()
        float_bytes = weight_nbytes(module)
        module = copy.deepcopy(module).eval()
        if self.method == "dynamic_int8":
            out = self._dynamic(module.cpu())
        elif self.method == "static_int8":
            out = self._static(module.cpu(), rows)
        elif self.method == "qat_int8":
            out = self._convert(module.cpu(), rows)
        else:
            out = LowPrecision(module, _LOW[self.method])
        layers = quantized_layers(out)
        if not layers:
            raise ValueError(
                f"Quantization({self.method!r}) found nothing to quantize in "
                f"{type(module).__name__}: it quantizes nn.Linear layers"
                + (" and convolutions." if self.method == "static_int8" else ".")
            )
        summary = {
            "method": self.method,
            "layers": layers,
            "float_bytes": float_bytes,
            "quantized_bytes": weight_nbytes(out),
        }
        return out.eval(), summary

    def _restructure(self, module):
        """``module`` turned into the quantized layout, weights not meaningful (``load`` fills them)."""
        module = copy.deepcopy(module).cpu().eval()
        if self.method == "dynamic_int8":
            return self._dynamic(module)
        if self.method in GRAPH_METHODS:
            raise ValueError(
                f"A {self.method} model cannot be rebuilt from a file written by save: its graph "
                "is traced at fit time. Store it with joblib, or quantize with 'dynamic_int8'."
            )
        return LowPrecision(module, _LOW[self.method])

    def _dynamic(self, module):
        ao = _ao()
        qconfig = ao.per_channel_dynamic_qconfig if self.per_channel else ao.default_dynamic_qconfig
        with quiet_ao():
            return ao.quantize_dynamic(module, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=True)

    def _fuse_refusal(self):
        """Why a fit with this spec cannot train in a fused group, or None."""
        if self.method == "qat_int8":
            return "Quantization('qat_int8') trains a traced graph of fake-quantized layers"
        return None

    def _prepare(self, module, rows):
        """``qat_int8``: the freshly built float ``module`` with fake quantization, ready to train."""
        ao = _ao()
        from torch.ao.quantization import quantize_fx

        engine = torch.backends.quantized.engine
        if self.per_channel:
            mapping = ao.get_default_qat_qconfig_mapping(engine)
        else:
            mapping = ao.QConfigMapping().set_global(ao.default_qat_qconfig)
        try:
            with quiet_ao():
                prepared = quantize_fx.prepare_qat_fx(module.train(), mapping, example_inputs=(rows[:1],))
                # Off until the switch (_QATSwitch): forward passes before
                # training must not seed the observers with an untrained range.
                prepared.apply(ao.disable_fake_quant)
                prepared.apply(ao.disable_observer)
                return prepared
        except Exception as exc:
            raise ValueError(
                f"Quantization('qat_int8') could not prepare {type(module).__name__} for "
                f"quantization-aware training: torch.fx could not trace it ({type(exc).__name__}: "
                f"{exc}). Use 'dynamic_int8', which quantizes the Linear layers of any network."
            ) from exc

    def _convert(self, module, rows):
        """``qat_int8``: the trained fake-quantized network turned into real int8 layers.

        The activation ranges are observed once more on ``rows`` with the
        final weights: the moving averages of training lag behind them, and
        a fit that stopped before ``qat_start`` never observed any.
        """
        ao = _ao()
        from torch.ao.quantization import quantize_fx

        if not hasattr(module, "graph"):
            raise ValueError(
                "Quantization('qat_int8') can only convert a network it prepared at the start of "
                "the fit; fit the estimator again with quantization=Quantization('qat_int8')."
            )
        if rows is None or len(rows) == 0:
            raise ValueError("Quantization('qat_int8') needs training rows to calibrate on.")
        rows = rows[: self.calibration_rows].cpu()
        with quiet_ao():
            module.apply(ao.enable_observer)
            module.apply(ao.enable_fake_quant)
            with torch.no_grad():
                for start in range(0, len(rows), 256):
                    module(rows[start : start + 256])
            return quantize_fx.convert_fx(module)

    def _make_callback(self, module, *, max_epochs, start_epoch):
        """``qat_int8``: the training callback that switches fake quantization on at ``qat_start``."""
        return _QATSwitch(module, switch_epoch=self.qat_start * max_epochs, start_epoch=start_epoch)

    def _static(self, module, rows):
        ao = _ao()
        from torch.ao.quantization import quantize_fx

        engine = torch.backends.quantized.engine
        mapping = ao.get_default_qconfig_mapping(engine)
        if not self.per_channel:
            mapping = ao.QConfigMapping().set_global(ao.default_qconfig)
        if rows is None or len(rows) == 0:
            raise ValueError("Quantization('static_int8') needs training rows to calibrate on.")
        rows = rows[: self.calibration_rows].cpu()
        try:
            with quiet_ao():
                prepared = quantize_fx.prepare_fx(module, mapping, example_inputs=(rows[:1],))
                with torch.inference_mode():
                    for start in range(0, len(rows), 256):
                        prepared(rows[start : start + 256])
                return quantize_fx.convert_fx(prepared)
        except Exception as exc:
            raise ValueError(
                f"Quantization('static_int8') could not quantize {type(module).__name__}: "
                f"torch.fx could not trace or convert it ({type(exc).__name__}: {exc}). Use "
                "'dynamic_int8', which quantizes the Linear layers of any network."
            ) from exc


def continue_refusal(summary, owner):
    """The error for training on from a model quantized as ``summary`` says, without its float weights.

    None when training can go on from the rounded weights (dynamic int8,
    float16, bfloat16); a traced int8 graph has no float form to go on from.
    """
    method = summary.get("method")
    if method not in GRAPH_METHODS:
        return None
    return ValueError(
        f"This {owner} holds a {method} network without its float weights, so training "
        "cannot continue from it (its fused int8 layers have no float form): they are "
        "kept only when the fit that quantized it had warm_start=True or was a "
        "partial_fit. Set warm_start=True before fitting to continue training it, or fit "
        "it again."
    )


class _QATSwitch(Callback):
    """Fake quantization (and its observers) off until ``switch_epoch``, on from there.

    While it is off, ``net.recipe_busy_`` tells early stopping not to stop
    and not to keep weights from before it (as pruning's ramp does).
    """

    def __init__(self, module, *, switch_epoch, start_epoch):
        self.module = module
        self.switch_epoch = switch_epoch
        self.epoch = start_epoch

    def on_epoch_begin(self, net, **kwargs):
        ao = _ao()
        on = self.epoch >= self.switch_epoch
        with quiet_ao():
            fakes = [m for m in self.module.modules() if isinstance(m, ao.FakeQuantizeBase)]
            if on and not any(bool(m.observer_enabled) for m in fakes):
                # Switched on now: the ranges start from this epoch's first
                # batch, not from anything seen while the network was float.
                for m in fakes:
                    m.activation_post_process.reset_min_max_vals()
            self.module.apply(ao.enable_fake_quant if on else ao.disable_fake_quant)
            self.module.apply(ao.enable_observer if on else ao.disable_observer)
        net.recipe_busy_ = not on

    def on_epoch_end(self, net, **kwargs):
        self.epoch += 1

    def on_train_end(self, net, **kwargs):
        net.recipe_busy_ = False


class LowPrecision(nn.Module):
    """A network whose floating weights are stored in a 16-bit type.

    On the CPU (no fast 16-bit matrix products on most CPUs) each call
    computes in float32 from the stored weights; on a GPU it runs in the
    16-bit type. Outputs are float32 either way.
    """

    def __init__(self, inner, dtype):
        super().__init__()
        self.inner = inner.to(dtype)
        self.dtype = dtype

    def forward(self, x):
        if x.device.type != "cpu":
            x = x.to(self.dtype) if torch.is_floating_point(x) else x
            return self.inner(x).float()
        upcast = {
            name: t.float() if torch.is_floating_point(t) else t
            for name, t in (*self.inner.named_parameters(), *self.inner.named_buffers())
        }
        return torch.func.functional_call(self.inner, upcast, (x,)).float()


def quantized_layers(module):
    """Names of the layers a quantization changed."""
    if isinstance(module, LowPrecision):
        return [name for name, m in module.inner.named_modules() if any(
            torch.is_floating_point(p) for p in m.parameters(recurse=False))]
    names = []
    for name, m in module.named_modules():
        kind = type(m).__module__
        if (kind.startswith("torch.ao.nn.quantized") and name and hasattr(m, "_weight_bias")
                and not type(m).__name__.endswith("PackedParams")):
            names.append(name)
        elif kind.startswith("torch.ao.nn.intrinsic.quantized") and name:
            names.append(name)
    return names


def is_quantized(module):
    return isinstance(module, LowPrecision) or bool(quantized_layers(module))


def weight_nbytes(module):
    """Bytes of a module's state as stored: parameters and buffers at their
    own type (int8 weights as 1 byte each, 16-bit storage as 2), so a shrunk
    (structurally pruned) layer counts at its shrunk size."""

    def size(value):
        if isinstance(value, torch.Tensor):
            if value.is_quantized:
                value = value.int_repr()
            return value.numel() * value.element_size()
        if isinstance(value, (tuple, list)):
            return sum(size(v) for v in value)
        return 0

    with quiet_ao():
        return sum(size(v) for v in module.state_dict().values())


def float_copy(module):
    """A float32 network computing what a quantized one does, with the rounded weights.

    Used by ``export_onnx``, and by a ``partial_fit`` that has no float
    weights to go on from: int8 ``Linear`` layers become ``nn.Linear`` with
    the dequantized weights (activations are then not rounded, so outputs
    differ from the int8 model's by the activation rounding only).
    """
    if isinstance(module, LowPrecision):
        return copy.deepcopy(module.inner).float()
    Linear = _dynamic_linear()
    with quiet_ao():
        out = copy.deepcopy(module)
    replaced = []
    for name, m in list(out.named_modules()):
        if any(name.startswith(f"{r}.") for r in replaced):
            continue
        if isinstance(m, Linear):
            replaced.append(name)
            with quiet_ao():
                w, b = m._weight_bias()
            layer = nn.Linear(m.in_features, m.out_features, bias=b is not None)
            with torch.no_grad():
                layer.weight.copy_(w.dequantize())
                if b is not None:
                    layer.bias.copy_(b)
            parent, _, attr = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, attr, layer)
        elif name and type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic")):
            raise ValueError(
                f"The int8 layer {name!r} ({type(m).__name__}) of a static_int8 or qat_int8 network "
                "has no float form to export to ONNX. Quantize with 'dynamic_int8' or 'float16' "
                "to export, or serve the model from a joblib file."
            )
    return out


# -- tensors for skopt_nn.save (plain tensors, nothing pickled) ----------------------
def saved_tensors(module, summary, where):
    """``(tensors, int8 layers)``: what ``save`` writes for a network quantized as ``summary`` says.

    A float or 16-bit network (``summary`` None, ``float16``, ``bfloat16``)
    is its ``state_dict``; a dynamic int8 one its plain tensors
    (``state_tensors``), which ``load_state_tensors`` reads back. A traced
    int8 graph cannot be rebuilt without running code: TypeError, naming
    ``where``.
    """
    method = (summary or {}).get("method")
    if method in GRAPH_METHODS:
        raise TypeError(
            f"save cannot store {where}: a {method} network is a graph traced at fit "
            "time, which the file format cannot rebuild without running code. Use joblib, "
            "or Quantization('dynamic_int8')."
        )
    if method == "dynamic_int8":
        return state_tensors(module)
    return module.state_dict(), []


def state_tensors(module):
    """Plain tensors describing a dynamic int8 network: int8 weights, scales, the rest as is."""
    Linear = _dynamic_linear()
    out, layers = {}, {}
    for name, m in module.named_modules():
        if isinstance(m, Linear):
            with quiet_ao():
                w, b = m._weight_bias()
            layers[name] = w
            out[f"{name}.weight_int8"] = w.int_repr()
            if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                out[f"{name}.weight_scale"] = w.q_per_channel_scales().double()
                out[f"{name}.weight_zero_point"] = w.q_per_channel_zero_points().long()
            else:
                # 0-d: one scale for the layer (1-d: one per output unit)
                out[f"{name}.weight_scale"] = torch.tensor(w.q_scale(), dtype=torch.float64)
                out[f"{name}.weight_zero_point"] = torch.tensor(w.q_zero_point(), dtype=torch.int64)
            if b is not None:
                out[f"{name}.bias"] = b.detach()
    with quiet_ao():
        state = module.state_dict()
    for key, value in state.items():
        if any(key.startswith(f"{name}.") for name in layers):
            continue
        if isinstance(value, torch.Tensor):
            out[key] = value
    return out, sorted(layers)


def load_state_tensors(module, tensors, layers, corrupt):
    """Put ``state_tensors``' output back into a ``_restructure``-d network, exactly."""
    for name in layers:
        try:
            m = module.get_submodule(name)
            q, scale, zero = (tensors.pop(f"{name}.weight_{k}") for k in ("int8", "scale", "zero_point"))
        except (AttributeError, KeyError):
            raise corrupt(f"the int8 layer {name!r} is missing or incomplete") from None
        bias = tensors.pop(f"{name}.bias", None)
        per_channel = scale.dim() == 1
        if (q.dtype != torch.int8 or q.dim() != 2 or scale.dim() > 1 or zero.shape != scale.shape
                or (per_channel and scale.numel() != q.shape[0])):
            raise corrupt(f"the int8 weights of {name!r} are malformed")
        with quiet_ao():
            if not per_channel:
                qw = torch._make_per_tensor_quantized_tensor(q, float(scale), int(zero))
            else:
                qw = torch._make_per_channel_quantized_tensor(q, scale, zero, 0)
            m.set_weight_bias(qw, bias)
        m.in_features, m.out_features = q.shape[1], q.shape[0]
    return tensors


def nonzero_params(module):
    """Number of non-zero parameters of a network, int8 layers counted on their integer weights."""
    if isinstance(module, LowPrecision):
        module = module.inner
    count = sum(int(torch.count_nonzero(p)) for p in module.parameters())
    with quiet_ao():
        for name in quantized_layers(module):
            layer = module.get_submodule(name)
            for get in (getattr(layer, "weight", None), getattr(layer, "bias", None)):
                tensor = get() if callable(get) else get
                if isinstance(tensor, torch.Tensor):
                    tensor = tensor.int_repr() if tensor.is_quantized else tensor
                    count += int(torch.count_nonzero(tensor))
    return count
