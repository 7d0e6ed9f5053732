"""How a model is encoded for ``skopt_nn.persistence.io``: JSON-ready data plus named tensors.

``_Writer`` turns an estimator (its parameters, fitted attributes and the
network as it really is, layer sizes included) into plain JSON values and a
dict of tensors; ``_Reader`` builds it back. Classes are written under stable
dotted names (``_class_name``). The reader gets classes only from the
resolver that ``load`` hands it, after ``load`` has checked every class name
in the file against what it trusts; that check lives in ``skopt_nn.persistence.io``.
"""

import importlib
import pathlib
import re

import numpy as np
import torch
from skorch.history import History
from torch import nn

from ..training._base import BaseNN, finished_net
from ..specs.distillation import Distillation
from ..embedding import TextEmbedder
from ..estimators import NNClassifier, NNRegressor
from ..specs.modules import CNN, MLP, TorchModule, count_params
from ..specs.pruning import Pruning
from ..specs.quantization import LowPrecision, Quantization, load_state_tensors, quiet_ao, saved_tensors
from ..specs.schedules import LRSchedule
from ..specs.transformer import LoRA, PretrainedTextNet, Transformer, holds_text_network

# skopt_nn's own classes under the names files give them. A file may name
# them without the caller's say-so: they are built from plain parameters and
# arrays, and building them runs no code from the file.
_OWN = {
    "skopt_nn.NNClassifier": NNClassifier,
    "skopt_nn.NNRegressor": NNRegressor,
    "skopt_nn.MLP": MLP,
    "skopt_nn.CNN": CNN,
    "skopt_nn.TorchModule": TorchModule,
    "skopt_nn.LRSchedule": LRSchedule,
    "skopt_nn.Distillation": Distillation,
    "skopt_nn.Pruning": Pruning,
    "skopt_nn.Quantization": Quantization,
    "skopt_nn.Transformer": Transformer,
    "skopt_nn.LoRA": LoRA,
    "skopt_nn.TextEmbedder": TextEmbedder,
}

# numpy dtypes stored as tensors (exact bytes); the rest of the numeric ones
# go into the JSON as lists.
_TENSOR_DTYPES = {
    np.dtype(np.bool_), np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.int16),
    np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.float16), np.dtype(np.float32),
    np.dtype(np.float64),
}
_PLAIN = (type(None), bool, int, float, str)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- naming classes -------------------------------------------------------------
def _public_module(cls):
    """The shortest public module path that exports ``cls`` (sklearn's style)."""
    parts = cls.__module__.split(".")
    for end in range(1, len(parts) + 1):
        if parts[end - 1].startswith("_"):
            break
        candidate = ".".join(parts[:end])
        try:
            module = importlib.import_module(candidate)
        except ImportError:  # pragma: no cover - a module of a loaded class
            continue
        if getattr(module, cls.__name__, None) is cls:
            return candidate
    return cls.__module__


def _class_name(cls):
    """Stable dotted name of a class, as written in files."""
    for name, known in _OWN.items():
        if known is cls:
            return name
    for namespace, base in (("torch.nn", nn.Module), ("torch.optim", torch.optim.Optimizer)):
        module = importlib.import_module(namespace)
        if issubclass(cls, base) and getattr(module, cls.__name__, None) is cls:
            return f"{namespace}.{cls.__name__}"
    if "<locals>" in cls.__qualname__:
        return f"{cls.__module__}.{cls.__qualname__}"
    return f"{_public_module(cls)}.{cls.__qualname__}"


# -- writing ------------------------------------------------------------------------
class _Writer:
    """Encodes a model as JSON-ready data plus a dict of tensors."""

    def __init__(self):
        self.tensors = {}

    def _key(self, stem):
        return f"{stem}{len(self.tensors)}"

    def value(self, value, where):
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, tuple):
            if _is_step(value):  # name a Pipeline step by its name in messages
                return {"__tuple__": [value[0], self.value(value[1], f"{where}[{value[0]!r}]")]}
            return {"__tuple__": [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.value(v, where if _is_step(v) else f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value):
                return {"__dict__": {k: self.value(v, f"{where}[{k!r}]") for k, v in value.items()}}
            return {
                "__items__": [
                    [self.value(k, where), self.value(v, f"{where}[{k!r}]")] for k, v in value.items()
                ]
            }
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            return {"__scalar__": value.dtype.str, "value": value.item()}
        if isinstance(value, np.ndarray):
            return self.array(value, where)
        if isinstance(value, torch.Tensor):
            key = self._key("t")
            self.tensors[key] = value.detach().cpu().contiguous().clone()
            return {"__tensor__": key}
        if isinstance(value, type):
            return {"__class__": _class_name(value)}
        if isinstance(value, pathlib.PurePath):  # tensorboard_dir, say
            return {"__path__": str(value)}
        if isinstance(value, BaseNN):
            return self.estimator(value, where)
        if isinstance(value, Distillation):
            params = value.get_params(deep=False)
            omitted = type(params["teacher"]).__name__ if params["teacher"] is not None else None
            params["teacher"] = None  # the teacher is never saved
            node = self.obj(value, where, params=params)
            node["omitted_teacher"] = omitted
            return node
        if isinstance(value, TextEmbedder):
            return self.embedder(value, where)
        if isinstance(value, nn.Module):
            raise TypeError(
                f"save cannot store {where}: an nn.Module instance ({type(value).__name__}). Give the "
                "network as a spec instead (MLP, CNN, or TorchModule(YourModule, **kwargs)), or use "
                "joblib, loading only files you trust."
            )
        if hasattr(value, "get_params"):
            return self.obj(value, where)
        raise TypeError(
            f"save cannot store {where}: a {type(value).__module__}.{type(value).__qualname__} "
            f"object ({value!r:.80}). The format holds numbers, strings, tuples, lists, dicts, "
            "arrays, classes and estimators built from those; use joblib for other models, and "
            "load such files only from sources you trust."
        )

    def embedder(self, emb, where):
        """A TextEmbedder: its settings, fitted attributes, and its encoder as config and tensors."""
        state = {k: v for k, v in vars(emb).items()
                 if k.endswith("_") and not k.startswith("__") and k != "encoder_"}
        node = self.obj(emb, where, state=state)
        if hasattr(emb, "encoder_"):
            config, weights = emb._encoder_state()
            stem = f"enc{len(self.tensors)}."
            for key, tensor in weights.items():
                self.tensors[stem + key] = tensor.cpu().contiguous().clone()
            node["encoder"] = {"config": config, "prefix": stem, "tensors": list(weights)}
        return node

    def array(self, arr, where):
        if arr.dtype in _TENSOR_DTYPES:
            key = self._key("a")
            self.tensors[key] = torch.from_numpy(np.ascontiguousarray(arr).copy())
            return {"__array__": key, "dtype": arr.dtype.str}
        if arr.dtype.kind in "iuUO":
            values = arr.ravel().tolist()
            if arr.dtype.kind == "O" and not all(isinstance(v, _PLAIN) for v in values):
                bad = next(type(v).__name__ for v in values if not isinstance(v, _PLAIN))
                raise TypeError(
                    f"save cannot store {where}: an object array holding {bad} values; only "
                    "numbers, strings, booleans and None can be stored."
                )
            return {"__list_array__": values, "dtype": arr.dtype.str, "shape": list(arr.shape)}
        raise TypeError(f"save cannot store {where}: an array of dtype {arr.dtype}.")

    def obj(self, value, where, *, params=None, state=None):
        cls = type(value)
        name = _class_name(cls)
        if params is None:
            params = value.get_params(deep=False)
        node = {
            "__object__": name,
            "params": {k: self.value(v, f"{where}.{k}") for k, v in params.items()},
        }
        if state is None:
            # sklearn's fitted attributes, public (``mean_``) and private.
            state = {
                k: v
                for k, v in vars(value).items()
                if k not in params and not k.startswith("__") and (k.endswith("_") or k.startswith("_"))
            }
        if state:
            node["state"] = {k: self.value(v, f"{where}.{k}") for k, v in state.items()}
        return node

    def estimator(self, est, where):
        params = est.get_params(deep=False)
        if params.get("callbacks"):
            raise TypeError(
                f"save cannot store {where}.callbacks: skorch callbacks are arbitrary objects. "
                "Set callbacks=None before saving (they take no part in prediction), or use joblib."
            )
        state = {
            k: v
            for k, v in vars(est).items()
            # _float_module_: the float weights a quantized model keeps for
            # warm_start; the file holds the quantized model only.
            if k.endswith("_") and not k.startswith("__")
            and k not in ("net_", "teacher_", "_float_module_")
        }
        node = self.obj(est, where, params=params, state=state)
        net = getattr(est, "net_", None)
        if net is not None:
            module = net.module_
            stem = f"net{len(self.tensors)}."
            keys = []
            state, int8_layers = saved_tensors(module, getattr(est, "quantization_summary_", None), where)
            for key, tensor in state.items():
                # Copies: safetensors refuses tensors that share memory.
                self.tensors[stem + key] = tensor.detach().cpu().contiguous().clone()
                keys.append(key)
            node["network"] = {
                "int8_layers": int8_layers,
                "prefix": stem,
                "tensors": keys,
                "layers": [
                    [name, _class_name(type(m)), self.value(_layer_sizes(m), f"{where}.module_.{name}")]
                    for name, m in module.named_modules()
                ],
                # as joblib's: a finished fit's file holds no per-epoch history
                "history": self.value(list(net.history) if est.warm_start else [], f"{where}.history_"),
            }
            if holds_text_network(module):
                text_net = module.inner if isinstance(module, LowPrecision) else module
                if not isinstance(text_net, PretrainedTextNet):
                    raise TypeError(
                        f"save cannot store {where}: an ensemble of pretrained text networks. "
                        "Use joblib, or n_ensemble=1."
                    )
                # The checkpoint may be gone when the file is loaded: the
                # model's configuration and the tokenizer's files travel along.
                node["network"]["pretrained"] = self.value(text_net.blueprint(), f"{where}.module_")
        return node


def _is_step(value):
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and hasattr(value[1], "get_params")
    )


def _layer_sizes(module):
    """Public scalar attributes of a layer: its sizes and options, as built."""
    out = {}
    for key, value in vars(module).items():
        if key.startswith("_") or key == "training":
            continue
        if isinstance(value, _PLAIN) or (
            isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value)
        ):
            out[key] = value
    return out


# -- reading ------------------------------------------------------------------------
class _Reader:
    """Builds objects back from the decoded configuration and tensors."""

    def __init__(self, tensors, resolver, path):
        self.tensors = tensors
        self.resolver = resolver
        self.path = path

    def corrupt(self, what):
        return ValueError(f"{self.path} is corrupted or was not written by skopt_nn.save: {what}.")

    def tensor(self, key):
        if not isinstance(key, str) or key not in self.tensors:
            raise self.corrupt(f"it refers to a tensor {key!r} it does not hold")
        return self.tensors[key]

    def value(self, node):
        if isinstance(node, _PLAIN):
            return node
        if isinstance(node, list):
            return [self.value(v) for v in node]
        if not isinstance(node, dict) or len(node) == 0:
            raise self.corrupt(f"unexpected value {node!r:.80}")
        if "__tuple__" in node:
            return tuple(self.value(v) for v in node["__tuple__"])
        if "__dict__" in node:
            return {k: self.value(v) for k, v in node["__dict__"].items()}
        if "__items__" in node:
            return {self.value(k): self.value(v) for k, v in node["__items__"]}
        if "__scalar__" in node:
            dtype = self.dtype(node["__scalar__"], "biuf")
            return dtype.type(node["value"])
        if "__array__" in node:
            dtype = self.dtype(node.get("dtype"), "biuf")
            return np.array(self.tensor(node["__array__"]).numpy(), dtype=dtype)
        if "__list_array__" in node:
            dtype = self.dtype(node.get("dtype"), "iuUO")
            values, shape = node["__list_array__"], tuple(node.get("shape", ()))
            arr = np.empty(len(values), dtype=dtype)
            arr[:] = values
            return arr.reshape(shape)
        if "__tensor__" in node:
            return self.tensor(node["__tensor__"]).clone()
        if "__path__" in node:
            return pathlib.Path(node["__path__"])
        if "__class__" in node:
            return self.resolver.resolve(node["__class__"])
        if "__object__" in node:
            return self.obj(node)
        raise self.corrupt(f"unknown entry {sorted(node)}")

    def dtype(self, text, kinds):
        try:
            dtype = np.dtype(text)
        except TypeError:
            raise self.corrupt(f"unknown dtype {text!r}") from None
        if not isinstance(text, str) or dtype.kind not in kinds:
            raise self.corrupt(f"unexpected dtype {text!r}")
        return dtype

    def obj(self, node):
        cls = self.resolver.resolve(node["__object__"])
        params = {k: self.value(v) for k, v in node.get("params", {}).items()}
        try:
            obj = cls(**params)
        except TypeError as exc:
            raise self.corrupt(f"{cls.__name__} does not take the saved parameters ({exc})") from None
        for key, raw in node.get("state", {}).items():
            # Fitted attributes only: no dunders, nothing that shadows a
            # method or property of the class.
            if (
                not (isinstance(key, str) and _NAME.match(key))
                or key.startswith("__")
                or hasattr(cls, key)
                or (key == "net_" and issubclass(cls, BaseNN))
            ):
                raise self.corrupt(f"{cls.__name__} cannot take the attribute {key!r}")
            obj.__dict__[key] = self.value(raw)
        if "network" in node:
            if not isinstance(obj, BaseNN):
                raise self.corrupt(f"a network is attached to a {cls.__name__}")
            self.network(obj, node["network"])
        if "encoder" in node:
            enc = node["encoder"]
            if not isinstance(obj, TextEmbedder) or not isinstance(enc, dict):
                raise self.corrupt(f"an encoder is attached to a {cls.__name__}")
            prefix, keys = enc.get("prefix"), enc.get("tensors")
            if not isinstance(prefix, str) or not isinstance(keys, list) or not isinstance(enc.get("config"), str):
                raise self.corrupt("its encoder entry is malformed")
            try:
                obj._restore_encoder(enc["config"], {key: self.tensor(prefix + key) for key in keys})
            except ValueError as exc:
                raise self.corrupt(str(exc)) from None
        return obj

    def copy_weights(self, module, weights, skipped):
        """Copy every float parameter and buffer outside the ``skipped`` layers, all present."""
        with quiet_ao():  # torch's state_dict of int8 layers warns that they are deprecated
            state = module.state_dict()
        # state_dict, not named_buffers: non-persistent buffers (a transformer's
        # position ids) are rebuilt by the network, not stored.
        expected = [
            key for key, value in state.items()
            if isinstance(value, torch.Tensor) and not any(key.startswith(f"{name}.") for name in skipped)
        ]
        if sorted(expected) != sorted(weights):
            raise self.corrupt(
                f"the weights do not fit the network (expected {sorted(expected)}, "
                f"found {sorted(weights)})"
            )
        with torch.no_grad():
            for key, tensor in weights.items():
                owner_name, _, attr = key.rpartition(".")
                getattr(module.get_submodule(owner_name), attr).copy_(tensor)

    def network(self, est, node):
        owner = type(est).__name__
        try:
            if "pretrained" in node:  # built from the saved configuration, not the checkpoint
                blueprint = self.value(node["pretrained"])
                try:
                    module = PretrainedTextNet.from_blueprint(blueprint)
                except (KeyError, TypeError, ValueError) as exc:
                    raise self.corrupt(f"its pretrained model cannot be rebuilt ({exc})") from None
            else:
                module = est._build_module(est.n_features_in_, est.n_outputs_)
        except AttributeError as exc:
            raise self.corrupt(f"the fitted {owner} lacks {exc}") from None
        quantized = est._is_quantized
        if quantized:
            if not isinstance(est.quantization, Quantization):
                raise self.corrupt(f"the quantized {owner} has no Quantization spec")
            float_module, module = module, est.quantization._restructure(module)
        layers = node.get("layers", [])
        built = [(name, _class_name(type(m))) for name, m in module.named_modules()]
        saved = [(name, cls) for name, cls, _ in layers]
        if built != saved:
            raise ValueError(
                f"{self.path}: the saved network does not match what its spec builds with this "
                f"version of skopt_nn/torch (saved layers {saved}, built {built})."
            )
        named = dict(module.named_modules())
        for name, _, sizes in layers:
            layer = named[name]
            for key, value in self.value(sizes).items():
                # Sizes changed by structured pruning; only attributes the
                # freshly built layer already has are touched.
                if key in vars(layer) and not key.startswith("_") and key != "training":
                    setattr(layer, key, value)
        prefix = node["prefix"]
        weights = {key: self.tensor(prefix + key) for key in node["tensors"]}
        int8_layers = node.get("int8_layers", [])
        if int8_layers:
            if not isinstance(int8_layers, list) or not all(isinstance(n, str) for n in int8_layers):
                raise self.corrupt("its list of int8 layers is malformed")
            weights = load_state_tensors(module, weights, int8_layers, self.corrupt)
        for key, tensor in weights.items():
            owner_name, _, attr = key.rpartition(".")
            try:
                sub = module.get_submodule(owner_name)
            except AttributeError:
                raise self.corrupt(f"the network has no layer {owner_name!r}") from None
            if attr in sub._parameters:
                current = sub._parameters[attr]
                if current is None or current.shape != tensor.shape or current.dtype != tensor.dtype:
                    grad = True if current is None else current.requires_grad
                    setattr(sub, attr, nn.Parameter(torch.empty_like(tensor), requires_grad=grad))
            elif attr in sub._buffers:
                current = sub._buffers[attr]
                if current is None or current.shape != tensor.shape or current.dtype != tensor.dtype:
                    sub._buffers[attr] = torch.empty_like(tensor)
            else:
                raise self.corrupt(f"the network has no parameter or buffer {key!r}")
        if int8_layers:
            # The int8 layers were filled above; torch's loader of those layers
            # wants entries the file does not need, so the rest is copied as is.
            self.copy_weights(module, weights, int8_layers)
        else:
            try:
                module.load_state_dict(weights, strict=True)
            except RuntimeError as exc:
                raise self.corrupt(f"the weights do not fit the network ({exc})") from None
        if not quantized and hasattr(est, "n_params_") and count_params(module) != est.n_params_:
            raise self.corrupt(
                f"the rebuilt network has {count_params(module)} parameters, not {est.n_params_}"
            )
        module.eval()
        net = finished_net(est, module, float_module=float_module if quantized else None)
        net.history = History(self.value(node.get("history", [])))
        est.net_ = net
