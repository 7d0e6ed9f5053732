"""How a fitted network is written into a pickle: its weights and little else.

skorch pickles a net's modules, optimizer and criterion with plain pickle,
and every tensor storage inside them becomes a ``torch.save`` archive of its
own: about 700 bytes of zip headers per tensor, which for a small network is
as much as its weights. Here the same attributes are pickled with CPU float
and integer tensors reduced to NumPy arrays (raw bytes and a short header),
which skorch's own ``__setstate__`` reads back as it reads anything else:
the format changes nothing for the reader but the size.

An int8 quantized tensor (per-tensor or per-channel affine, on the CPU) is
stored the same way: its integers as a NumPy array beside its scales and
zero points; a dynamic int8 ``Linear`` layer as its sizes, int8 weight and
bias (torch's own form nests a module around a packed TorchScript object). Tensors that NumPy cannot hold as they are (bfloat16, other
quantization schemes, tensors on a GPU, sparse or meta tensors) keep torch's
own reduction, so GPU-trained models load as before.

The per-epoch history of a finished fit is left out of the pickle
(``without_history``): it is for the user's eyes while the model is in
memory, ``loss_curve_`` keeps the losses, and a fit that goes on
(``warm_start``, a search's candidate between rungs) keeps it whole.

A finished fit's whole skorch net is rebuilt from the estimator's own
settings when it holds nothing else (``NetRecord``): a CPU network, an
optimizer without state, one parameter group. Its pickle then holds the
network and how a step runs, not skorch's settings, optimizer and criterion
(about 1.4 KB less); anything else keeps skorch's own form.
"""

import io
import pickle

import torch
from skorch.history import History
from torch import nn

__all__ = ["NetRecord", "dump_compact", "net_record", "without_history"]


def _tensor(array, requires_grad):
    tensor = torch.from_numpy(array)
    return tensor.requires_grad_(True) if requires_grad else tensor


def _parameter(array, requires_grad):
    return nn.Parameter(torch.from_numpy(array), requires_grad=requires_grad)


def _as_numpy(tensor):
    """The tensor's values as a writable NumPy array, or None if NumPy cannot hold them."""
    if (type(tensor) not in (torch.Tensor, nn.Parameter) or tensor.device.type != "cpu"
            or tensor.is_sparse or tensor.is_quantized or tensor.layout != torch.strided
            or tensor.dtype == torch.bfloat16 or tensor.is_conj() or tensor.is_neg()):
        return None
    try:
        return tensor.detach().numpy().copy()
    except (TypeError, RuntimeError):  # a dtype NumPy lacks
        return None


# Module attributes that nn.Module.__setstate__ recreates when they are
# missing; left out of the pickle while they hold nothing (no hooks).
_RECREATED = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks_with_kwargs",
              "_forward_hooks_always_called", "_state_dict_hooks", "_state_dict_pre_hooks",
              "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks", "_non_persistent_buffers_set",
              "_is_full_backward_hook", "_backward_pre_hooks")


def _new_module(cls):
    return cls.__new__(cls)


def _plain_module(obj):
    """Whether ``obj`` pickles as nn.Module does (its state is its ``__dict__``)."""
    cls = type(obj)
    return (isinstance(obj, nn.Module) and cls.__getstate__ is nn.Module.__getstate__
            and cls.__setstate__ is nn.Module.__setstate__ and cls.__reduce_ex__ is object.__reduce_ex__
            and cls.__reduce__ is object.__reduce__)


def _per_tensor(integers, scale, zero_point):
    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(integers), scale, zero_point)


def _per_channel(integers, scales, zero_points, axis):
    return torch._make_per_channel_quantized_tensor(
        torch.from_numpy(integers), torch.from_numpy(scales), torch.from_numpy(zero_points), axis)


def _quantized(tensor):
    """``(rebuild, args)`` of an affine-quantized CPU tensor, or None."""
    if type(tensor) is not torch.Tensor or tensor.device.type != "cpu" or tensor.layout != torch.strided:
        return None
    scheme = tensor.qscheme()
    integers = tensor.int_repr().numpy().copy()
    if scheme == torch.per_tensor_affine:
        return _per_tensor, (integers, float(tensor.q_scale()), int(tensor.q_zero_point()))
    if scheme == torch.per_channel_affine:
        return _per_channel, (integers, tensor.q_per_channel_scales().numpy().copy(),
                              tensor.q_per_channel_zero_points().numpy().copy(), int(tensor.q_per_channel_axis()))
    return None


def _int8_linear(in_features, out_features, weight, bias, training):
    from torch.ao.nn.quantized.dynamic import Linear

    layer = Linear(in_features, out_features, bias_=bias is not None)
    layer.set_weight_bias(weight, bias)
    return layer.train(training)


def _plain_int8_linear(obj):
    """Whether ``obj`` is a dynamic int8 ``Linear`` that its weights, bias and sizes rebuild."""
    if obj.__class__.__name__ != "Linear" or obj.__class__.__module__ != "torch.ao.nn.quantized.dynamic.modules.linear":
        return False
    expected = {"training", "_parameters", "_buffers", "_modules", "in_features", "out_features",
                "scale", "zero_point", "version", *_RECREATED, "_backward_hooks", "_forward_hooks"}
    hooks = ("_backward_hooks", "_forward_hooks", "_forward_pre_hooks", "_state_dict_hooks",
             "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")
    state = obj.__dict__
    packed = state.get("_modules", {}).get("_packed_params")
    return (set(state) <= expected and set(state["_modules"]) == {"_packed_params"}
            and not state["_parameters"] and not state["_buffers"]
            and state["scale"] == 1.0 and state["zero_point"] == 0
            and not any(state.get(name) for name in hooks)
            and not any(packed.__dict__.get(name) for name in hooks)
            and not packed._modules and packed.dtype == torch.qint8 and packed.training == obj.training)


class _CompactPickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, nn.Module) and _plain_int8_linear(obj):
            # torch pickles the layer as nested modules around a packed
            # TorchScript object (about 500 bytes of names); its sizes,
            # int8 weight and bias say the same.
            weight, bias = obj._weight_bias()
            return _int8_linear, (obj.in_features, obj.out_features, weight, bias, obj.training)
        if isinstance(obj, torch.Tensor):
            if obj.is_quantized:
                return _quantized(obj) or NotImplemented
            array = _as_numpy(obj)
            if array is not None:
                rebuild = _parameter if isinstance(obj, nn.Parameter) else _tensor
                return rebuild, (array, bool(obj.requires_grad))
        elif _plain_module(obj):
            state = {key: value for key, value in obj.__getstate__().items()
                     if not (key in _RECREATED and not value)}
            return _new_module, (type(obj),), state
        return NotImplemented


def dump_compact(obj):
    """``pickle.dumps(obj)``, with CPU tensors stored as NumPy arrays."""
    buffer = io.BytesIO()
    _CompactPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()



def without_history(net):
    """A shallow copy of a skorch net whose history is empty, for a lean pickle.

    Built without ``copy.copy``, which would go through the net's own
    (costly) ``__getstate__``; the net itself is left as it is.
    """
    lean = object.__new__(type(net))
    lean.__dict__.update(net.__dict__)
    lean.__dict__["history_"] = History()
    return lean


class NetRecord:
    """A finished net in a pickle: its network (``dump_compact`` bytes) and step settings.

    The estimator that holds it builds the skorch net around the network
    again when it is unpickled (``BaseNN.__setstate__``).
    """

    def __init__(self, module_bytes, steps, bare_optimizer=False):
        self.module_bytes = module_bytes
        self.steps = steps
        self.bare_optimizer = bare_optimizer  # an optimizer left holding no parameters (int8)

    def __reduce__(self):
        return NetRecord, (self.module_bytes, self.steps, self.bare_optimizer)

    def module(self):
        """The network, unpickled."""
        return pickle.loads(self.module_bytes)


# Step settings of a net (``configure_steps``) that a rebuilt net takes back.
_STEPS = ("precision_", "accumulation_", "max_grad_norm_")


def net_record(net, net_type):
    """``NetRecord`` of a finished net whose other state its estimator rebuilds, else None.

    Only a net of exactly ``net_type`` on the CPU, training its own network
    (``module`` is ``module_``) with an optimizer that holds no state and one
    parameter group over the network's parameters (or none, as fit leaves an
    int8 network's), qualifies: all else it holds is the estimator's
    settings. Everything else (GPU nets, per-layer learning rates, optimizer
    state kept for warm starts) is pickled as skorch pickles it.
    """
    if type(net) is not net_type or str(net.device) != "cpu" or net.__dict__.get("module") is not net.__dict__.get("module_"):
        return None
    optimizer = net.__dict__.get("optimizer_")
    if optimizer is None or optimizer.state or len(optimizer.param_groups) != 1:
        return None
    params = optimizer.param_groups[0]["params"]
    # An int8 network's optimizer is left holding no parameters by fit.
    bare = not params
    if not bare and {id(p) for p in params} != {id(p) for p in net.module_.parameters() if p.requires_grad}:
        return None
    steps = {key: net.__dict__[key] for key in _STEPS
             if key in net.__dict__ and net.__dict__[key] != getattr(net_type, key, None)}
    return NetRecord(dump_compact(net.module_), steps, bare)
