"""Pickle-free persistence: ``save`` and ``load`` of fitted models.

One file holds a model: a safetensors file whose tensors are the network
weights (and any numeric fitted arrays) and whose header metadata carries the
configuration as JSON. Loading parses JSON and raw tensor bytes only: no
pickle runs, and a class named in the file is used only if it is one of
skopt_nn's own specs and estimators, a ``torch.nn`` layer, a ``torch.optim``
optimizer, one of a few array-only scikit-learn classes, or a class the
caller passed in ``trusted``. Every other name is refused before anything is
imported or built.

The network is described as it really is, not as its spec would build it:
the file lists every layer with its sizes, and the tensors keep their saved
shapes, so a structurally pruned network (neurons physically removed) loads
at its pruned size.
"""

import hashlib
import importlib
import json
import keyword
import os
import pathlib
import re

import numpy as np
import sklearn
import torch
from sklearn.base import BaseEstimator
from skorch.history import History
from torch import nn

from ._base import BaseNN, _Net
from .data import BatchIterator
from .distillation import Distillation
from .estimators import NNClassifier, NNRegressor
from .modules import CNN, MLP, TorchModule, count_params, resolve_module
from .optim import resolve_optimizer
from .pruning import Pruning
from .schedules import LRSchedule

__all__ = ["save", "load", "UntrustedTypeError", "FORMAT_VERSION"]

FORMAT = "skopt_nn"
FORMAT_VERSION = 1

# Classes a file may name without the caller's say-so: they are built from
# plain parameters and arrays, and building them runs no code from the file.
_OWN = {
    "skopt_nn.NNClassifier": NNClassifier,
    "skopt_nn.NNRegressor": NNRegressor,
    "skopt_nn.MLP": MLP,
    "skopt_nn.CNN": CNN,
    "skopt_nn.TorchModule": TorchModule,
    "skopt_nn.LRSchedule": LRSchedule,
    "skopt_nn.Distillation": Distillation,
    "skopt_nn.Pruning": Pruning,
}


def _sklearn_builtins():
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

    return {
        "sklearn.pipeline.Pipeline": Pipeline,
        "sklearn.preprocessing.StandardScaler": StandardScaler,
        "sklearn.preprocessing.MinMaxScaler": MinMaxScaler,
        "sklearn.preprocessing.MaxAbsScaler": MaxAbsScaler,
        "sklearn.preprocessing.RobustScaler": RobustScaler,
    }


def _builtin_classes():
    return {**_OWN, **_sklearn_builtins()}


# numpy dtypes stored as tensors (exact bytes); the rest of the numeric ones
# go into the JSON as lists.
_TENSOR_DTYPES = {
    np.dtype(np.bool_), np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.int16),
    np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.float16), np.dtype(np.float32),
    np.dtype(np.float64),
}
_PLAIN = (type(None), bool, int, float, str)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UntrustedTypeError(ValueError):
    """A file names classes that ``load`` was not told to trust.

    The message lists every such class; pass them (the classes themselves,
    or their dotted names) in ``load(..., trusted=[...])`` if you trust the
    file's source.
    """


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
    if cls.__module__.startswith("skopt_nn.") and cls.__qualname__ == cls.__name__:
        import skopt_nn

        if getattr(skopt_nn, cls.__name__, None) is cls:
            return f"skopt_nn.{cls.__name__}"
    for namespace, base in (("torch.nn", nn.Module), ("torch.optim", torch.optim.Optimizer)):
        module = importlib.import_module(namespace)
        if issubclass(cls, base) and getattr(module, cls.__name__, None) is cls:
            return f"{namespace}.{cls.__name__}"
    if "<locals>" in cls.__qualname__:
        return f"{cls.__module__}.{cls.__qualname__}"
    return f"{_public_module(cls)}.{cls.__qualname__}"


class _Resolver:
    """Turns class names from a file into classes, trusting only what it may."""

    def __init__(self, trusted):
        self.builtin = _builtin_classes()
        self.trusted_classes = {}
        self.trusted_names = set()
        if trusted is None:
            trusted = []
        elif isinstance(trusted, (str, type)):
            trusted = [trusted]
        try:
            entries = list(trusted)
        except TypeError:
            raise TypeError(
                f"trusted must be a list of classes or dotted class names; got {trusted!r}."
            ) from None
        for entry in entries:
            if isinstance(entry, type):
                self.trusted_classes[_class_name(entry)] = entry
                self.trusted_classes[f"{entry.__module__}.{entry.__qualname__}"] = entry
            elif isinstance(entry, str):
                self.trusted_names.add(entry)
            else:
                raise TypeError(
                    f"trusted must hold classes or dotted class names; got {entry!r}."
                )

    def allowed(self, name):
        return (
            name in self.builtin
            or name in self.trusted_classes
            or name in self.trusted_names
            or self._standard(name) is not None
        )

    @staticmethod
    def _standard(name):
        for namespace, base in (("torch.nn.", nn.Module), ("torch.optim.", torch.optim.Optimizer)):
            if name.startswith(namespace):
                attr = name[len(namespace):]
                if not _NAME.match(attr):
                    return None
                module = importlib.import_module(namespace[:-1])
                cls = getattr(module, attr, None)
                if isinstance(cls, type) and issubclass(cls, base):
                    return cls
        return None

    def resolve(self, name):
        if name in self.builtin:
            return self.builtin[name]
        if name in self.trusted_classes:
            return self.trusted_classes[name]
        cls = self._standard(name)
        if cls is not None:
            return cls
        if name in self.trusted_names:
            return _import_class(name)
        raise UntrustedTypeError(f"Refusing to load untrusted type {name!r}.")  # pragma: no cover


def _import_class(name):
    """Import a class the caller trusted by its dotted name."""
    parts = name.split(".")
    if not all(_NAME.match(p) and not keyword.iskeyword(p) for p in parts):
        raise ValueError(
            f"Cannot import the trusted type {name!r} by name; pass the class itself in trusted=[...]."
        )
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        if isinstance(obj, type):
            return obj
        raise ValueError(f"The trusted name {name!r} is not a class; got {obj!r}.")
    raise ValueError(f"Cannot import the trusted type {name!r}; pass the class itself in trusted=[...].")


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
            if k.endswith("_") and not k.startswith("__") and k not in ("net_", "teacher_")
        }
        node = self.obj(est, where, params=params, state=state)
        net = vars(est).get("net_")
        if net is not None:
            module = net.module_
            stem = f"net{len(self.tensors)}."
            keys = []
            for key, tensor in module.state_dict().items():
                # Copies: safetensors refuses tensors that share memory.
                self.tensors[stem + key] = tensor.detach().cpu().contiguous().clone()
                keys.append(key)
            node["network"] = {
                "prefix": stem,
                "tensors": keys,
                "layers": [
                    [name, _class_name(type(m)), self.value(_layer_sizes(m), f"{where}.module_.{name}")]
                    for name, m in module.named_modules()
                ],
                "history": self.value(list(net.history), f"{where}.history_"),
            }
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


def _digest(config, tensors):
    h = hashlib.sha256(config.encode("utf-8"))
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        h.update(f"\0{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save(model, path):
    """Save a fitted (or unfitted) model to one file, without pickle.

    The file is a safetensors file: the network weights and numeric fitted
    arrays are its tensors, and the configuration (the estimator's
    parameters, its fitted attributes, the network's real layer sizes and its
    training history) is JSON in its header, with a format version and a
    checksum. Read it back with :func:`load`.

    Parameters
    ----------
    model : estimator
        An ``NNClassifier`` or ``NNRegressor``, or a ``Pipeline`` of such an
        estimator and scikit-learn transformers whose fitted state is arrays
        and plain values (``StandardScaler``, ``MinMaxScaler``, ...). The
        network must be given as a spec (``MLP``, ``CNN``, ``TorchModule``)
        or an ``nn.Module`` class, not an instance.
    path : str or path-like
        Where to write the file (conventionally ``*.safetensors``).

    Raises
    ------
    TypeError
        If part of the model cannot be written in this format (a skorch
        callback, an ``nn.Module`` instance, a function...); the message names
        the part. Such models can still be saved with ``joblib``.

    See Also
    --------
    load : Read the file back.

    Notes
    -----
    A distillation teacher is never saved: the loaded student's
    ``distillation.teacher`` is ``None`` (set ``distillation__teacher``
    before fitting it again). The optimizer state is not saved either, so
    ``warm_start`` and ``partial_fit`` continue from the saved weights with a
    fresh optimizer. Tensors are moved to the CPU.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from skopt_nn import MLP, NNClassifier, save, load
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NNClassifier(MLP((8,)), lr=0.05, max_epochs=20, random_state=0).fit(X, y)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "iris.safetensors")
    ...     save(clf, path)
    ...     loaded = load(path)
    >>> bool(np.array_equal(loaded.predict_proba(X), clf.predict_proba(X)))
    True
    >>> loaded.n_iter_ == clf.n_iter_
    True
    """
    import safetensors.torch

    from . import __version__

    if not isinstance(model, BaseEstimator):
        raise TypeError(f"save expects a scikit-learn estimator; got {type(model).__name__}.")
    if hasattr(model, "best_estimator_") and not isinstance(model, BaseNN):
        raise TypeError(
            f"save stores estimators, not fitted {type(model).__name__} searches; save "
            "search.best_estimator_ instead."
        )
    writer = _Writer()
    root = writer.value(model, type(model).__name__)
    config = json.dumps(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "skopt_nn_version": __version__,
            "torch_version": torch.__version__,
            "sklearn_version": sklearn.__version__,
            "model": root,
        },
        separators=(",", ":"),
    )
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": config,
        "sha256": _digest(config, writer.tensors),
    }
    data = safetensors.torch.save(writer.tensors, metadata=metadata)
    with open(os.fspath(path), "wb") as f:
        f.write(data)


# -- reading ------------------------------------------------------------------------
def _read_header(data, path):
    not_ours = (
        f"{path} is not a skopt_nn file: it does not start with a safetensors header. "
        "If it is a joblib or pickle file, load it with joblib.load, and only if you trust "
        "its source: unpickling can run arbitrary code."
    )
    if len(data) < 8:
        raise ValueError(f"{path} is truncated or not a skopt_nn file ({len(data)} bytes).")
    n = int.from_bytes(data[:8], "little")
    looks_like_header = data[8:10] == b'{"'
    if not looks_like_header:
        raise ValueError(not_ours)
    if n > len(data) - 8:
        raise ValueError(
            f"{path} is truncated: its header announces {n} bytes but only {len(data) - 8} follow."
        )
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{path} is corrupted: its header is not valid JSON.") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(
            f"{path} is a safetensors file but not one written by skopt_nn.save "
            "(its metadata has no 'format': 'skopt_nn' entry)."
        )
    return metadata


def _check_version(metadata, path):
    try:
        version = int(metadata.get("format_version"))
    except (TypeError, ValueError):
        raise ValueError(
            f"{path} is corrupted: its format_version is {metadata.get('format_version')!r}."
        ) from None
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written in skopt_nn file format version {version}, newer than the "
            f"version {FORMAT_VERSION} this skopt_nn reads; upgrade skopt_nn to load it."
        )
    if version < 1:
        raise ValueError(f"{path} is corrupted: its format_version is {version}.")


def _class_names(node, found):
    """Every class name the configuration asks for, before anything is built."""
    if isinstance(node, dict):
        for tag in ("__class__", "__object__"):
            if tag in node:
                if not isinstance(node[tag], str):
                    raise ValueError(f"corrupted configuration: {tag} is {node[tag]!r}")
                found.add(node[tag])
        for value in node.values():
            _class_names(value, found)
    elif isinstance(node, list):
        for value in node:
            _class_names(value, found)
    return found


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
        return obj

    def network(self, est, node):
        owner = type(est).__name__
        try:
            module = resolve_module(est.module, owner).build(est.n_features_in_, est.n_outputs_)
        except AttributeError as exc:
            raise self.corrupt(f"the fitted {owner} lacks {exc}") from None
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
        try:
            module.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise self.corrupt(f"the weights do not fit the network ({exc})") from None
        if "n_params_" in vars(est) and count_params(module) != est.n_params_:
            raise self.corrupt(
                f"the rebuilt network has {count_params(module)} parameters, not {est.n_params_}"
            )
        module.eval()
        opt_cls, opt_kwargs = resolve_optimizer(
            est.optimizer, weight_decay=est.weight_decay, momentum=est.momentum, owner=owner
        )
        net = _Net(
            module=module,
            criterion=est._criterion(),
            optimizer=opt_cls,
            lr=est.lr,
            batch_size=est.batch_size,
            max_epochs=est.max_epochs,
            train_split=None,
            iterator_train=BatchIterator,
            iterator_train__shuffle=True,
            iterator_valid=BatchIterator,
            callbacks=[],
            device="cpu",
            verbose=est.verbose,
            **{f"optimizer__{k}": v for k, v in opt_kwargs.items()},
        )
        net.initialize()
        net.history = History(self.value(node.get("history", [])))
        est.net_ = net


def load(path, trusted=None):
    """Load a model written by :func:`save`; no pickle runs.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    trusted : list of classes or str, default=None
        Extra classes the file may name: your own ``nn.Module`` classes
        (inside ``TorchModule``), an optimizer class outside ``torch.optim``,
        a scikit-learn transformer beyond the built-in scalers. Give the
        classes themselves, or dotted names (``"mypkg.nets.Net"``), which are
        imported only if the file names them. Without this, only skopt_nn's
        estimators and specs, ``torch.nn`` layers, ``torch.optim``
        optimizers, ``Pipeline`` and the ``StandardScaler``,
        ``MinMaxScaler``, ``MaxAbsScaler`` and ``RobustScaler`` scalers are
        accepted.

    Returns
    -------
    model : estimator
        The saved estimator, with its fitted attributes; on the CPU.

    Raises
    ------
    UntrustedTypeError
        If the file names classes that are neither built in nor trusted; the
        message lists all of them, and nothing has been imported or built.
    ValueError
        If the file is not a skopt_nn file (a pickle, say), is truncated or
        corrupted (its checksum does not match), or was written in a newer
        format version.

    See Also
    --------
    save : Write the file.

    Examples
    --------
    >>> import os, tempfile
    >>> from torch import nn
    >>> from sklearn.datasets import load_iris
    >>> from skopt_nn import NNClassifier, TorchModule, save, load
    >>> class Net(nn.Module):
    ...     def __init__(self, n_features_in, n_outputs):
    ...         super().__init__()
    ...         self.out = nn.Linear(n_features_in, n_outputs)
    ...     def forward(self, x):
    ...         return self.out(x)
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NNClassifier(TorchModule(Net), max_epochs=2, random_state=0).fit(X, y)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "net.safetensors")
    ...     save(clf, path)
    ...     try:
    ...         load(path)
    ...     except ValueError as exc:
    ...         print(type(exc).__name__)
    ...     loaded = load(path, trusted=[Net])
    UntrustedTypeError
    >>> type(loaded.module_).__name__
    'Net'
    """
    import safetensors.torch

    shown = os.fspath(path)
    with open(shown, "rb") as f:
        data = f.read()
    metadata = _read_header(data, shown)
    _check_version(metadata, shown)
    try:
        tensors = safetensors.torch.load(data)
    except Exception as exc:  # the Rust reader raises its own error type
        raise ValueError(f"{shown} is truncated or corrupted: {exc}") from None
    config_text = metadata.get("config")
    if not isinstance(config_text, str) or _digest(config_text, tensors) != metadata.get("sha256"):
        raise ValueError(
            f"{shown} is corrupted: its checksum does not match its contents."
        )
    try:
        config = json.loads(config_text)
        root = config["model"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{shown} is corrupted: its configuration is not readable.") from None
    resolver = _Resolver(trusted)
    try:
        names = _class_names(root, set())
    except RecursionError:
        raise ValueError(f"{shown} is corrupted: its configuration is nested too deeply.") from None
    untrusted = sorted(name for name in names if not resolver.allowed(name))
    if untrusted:
        raise UntrustedTypeError(
            f"{shown} names types that are not trusted: {untrusted}. Only skopt_nn's specs, "
            "torch.nn layers, torch.optim optimizers and a few scikit-learn scalers load by "
            "default; if you trust this file, pass those classes in load(..., trusted=[...])."
        )
    model = _Reader(tensors, resolver, shown).value(root)
    if not isinstance(model, BaseEstimator):
        raise ValueError(f"{shown} is corrupted: it holds a {type(model).__name__}, not an estimator.")
    return model
