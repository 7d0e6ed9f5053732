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

import sklearn
import torch
from sklearn.base import BaseEstimator
from torch import nn

from ..training._base import BaseNN
from ._format import _NAME, _OWN, _class_name, _Reader, _Writer

__all__ = ["save", "load", "UntrustedTypeError", "FORMAT_VERSION"]

FORMAT = "skopt_nn"
FORMAT_VERSION = 1


class UntrustedTypeError(ValueError):
    """A file names classes that ``load`` was not told to trust.

    The message lists every such class; pass them (the classes themselves,
    or their dotted names) in ``load(..., trusted=[...])`` if you trust the
    file's source.
    """


# -- trusting classes ------------------------------------------------------------
# scikit-learn classes a file may name without the caller's say-so, besides
# skopt_nn's own: their fitted state is arrays and plain values.
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
    parameters, its fitted attributes, the network's real layer sizes, and
    its training history when ``warm_start`` is set) is JSON in its header, with a format version and a
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

    from .._version import __version__

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
