"""ONNX export: one graph from raw feature rows to what ``predict`` returns.

The whole prediction path becomes torch operations and is traced once: the
affine maps of the scalers that precede the estimator in a ``Pipeline``, the
trained network at its real (possibly pruned) size, then the softmax of a
classifier or the regressor's mapping back from standardised targets. The
classifier's labels are added to the traced graph as a lookup table, so
string labels come out of the ONNX model as strings.
"""

import copy
import io
import json
import warnings

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..specs.quantization import float_copy
from ..specs.transformer import holds_text_network
from ..training._base import BaseNN

__all__ = ["export_onnx"]

_SCALERS = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)


def _scaler_affine(scaler):
    """``(a, b, clip)`` with ``scaler.transform(X) == clip(X * a + b)``, in float64."""
    n = scaler.n_features_in_
    ones, zeros = np.ones(n), np.zeros(n)
    clip = None
    if isinstance(scaler, StandardScaler):
        scale = scaler.scale_ if scaler.with_std else ones
        offset = scaler.mean_ if scaler.with_mean else zeros
        a, b = 1.0 / scale, -offset / scale
    elif isinstance(scaler, RobustScaler):
        scale = scaler.scale_ if scaler.with_scaling else ones
        offset = scaler.center_ if scaler.with_centering else zeros
        a, b = 1.0 / scale, -offset / scale
    elif isinstance(scaler, MaxAbsScaler):
        a, b = 1.0 / scaler.scale_, zeros
    else:  # MinMaxScaler
        a, b = scaler.scale_, scaler.min_
        if scaler.clip:
            clip = tuple(float(v) for v in scaler.feature_range)
    return np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), clip


class _Affine(nn.Module):
    def __init__(self, a, b, clip):
        super().__init__()
        self.register_buffer("a", torch.as_tensor(a, dtype=torch.float32))
        self.register_buffer("b", torch.as_tensor(b, dtype=torch.float32))
        self.clip = clip

    def forward(self, x):
        x = x * self.a + self.b
        if self.clip is not None:
            x = torch.clamp(x, self.clip[0], self.clip[1])
        return x


class _Prediction(nn.Module):
    """Scalers, network and output mapping of a fitted model, as one module."""

    def __init__(self, scalers, network, task, y_mean=None, y_scale=None, squeeze=False):
        super().__init__()
        self.scalers = nn.Sequential(*scalers)
        self.network = network
        self.task = task
        self.squeeze = squeeze
        if task == "regression":
            self.register_buffer("y_mean", torch.as_tensor(y_mean, dtype=torch.float32))
            self.register_buffer("y_scale", torch.as_tensor(y_scale, dtype=torch.float32))

    def forward(self, x):
        out = self.network(self.scalers(x)).float()
        if self.task == "classification":
            return torch.softmax(out, dim=1)
        if self.task == "multilabel":
            return torch.sigmoid(out)
        out = out * self.y_scale + self.y_mean
        return out[:, 0] if self.squeeze else out


def _split(model):
    """The fitted estimator and the scalers before it; errors name what cannot be converted."""
    if hasattr(model, "best_estimator_") and not isinstance(model, (BaseNN, Pipeline)):
        check_is_fitted(model, "best_estimator_")
        model = model.best_estimator_
    if isinstance(model, BaseNN):
        steps, estimator = [], model
    elif isinstance(model, Pipeline):
        *steps, (last_name, estimator) = model.steps
        if not isinstance(estimator, BaseNN):
            raise TypeError(
                f"export_onnx cannot convert the final step {last_name!r} "
                f"({type(estimator).__name__}): it must be an NNClassifier or NNRegressor."
            )
    else:
        raise TypeError(
            "export_onnx takes a fitted NNClassifier, NNRegressor, a Pipeline ending in one, or a "
            f"fitted search over them; got {type(model).__name__}."
        )
    check_is_fitted(estimator)
    if holds_text_network(estimator.module_):
        # The graph would start at token ids: the tokenizer (Python or Rust
        # code, not tensor operations) cannot be part of it.
        raise NotImplementedError(
            "export_onnx cannot convert a Transformer network: its input is raw text, and the "
            "tokenizer is not an ONNX operation. Save it with skopt_nn.save or joblib, or export "
            "estimator.module_.model with Hugging Face's optimum (input_ids, attention_mask)."
        )
    scalers = []
    for name, step in steps:
        if step is None or step == "passthrough":
            continue
        if type(step) not in _SCALERS:
            raise TypeError(
                f"export_onnx cannot convert the Pipeline step {name!r} ({type(step).__name__}): only "
                + ", ".join(cls.__name__ for cls in _SCALERS)
                + " (or 'passthrough') may precede the network."
            )
        check_is_fitted(step)
        scalers.append(_Affine(*_scaler_affine(step)))
    return estimator, scalers


def _label_tensor(classes):
    """``classes_`` as an ONNX constant of the closest type (strings for anything non-numeric)."""
    from onnx import TensorProto, helper, numpy_helper

    classes = np.asarray(classes)
    if classes.dtype.kind == "b":
        return numpy_helper.from_array(classes.astype(bool), "classes"), TensorProto.BOOL
    if classes.dtype.kind in "iu":
        return numpy_helper.from_array(classes.astype(np.int64), "classes"), TensorProto.INT64
    if classes.dtype.kind == "f":
        return numpy_helper.from_array(classes.astype(np.float64), "classes"), TensorProto.DOUBLE
    values = [str(c).encode("utf-8") for c in classes]
    return helper.make_tensor("classes", TensorProto.STRING, [len(values)], values), TensorProto.STRING


def _json_safe(values):
    return [v.item() if isinstance(v, np.generic) else v if isinstance(v, (str, int, float, bool)) else str(v)
            for v in values]


def export_onnx(model, path, *, opset_version=None):
    """Write a fitted model as one ONNX graph from raw features to predictions.

    The graph takes the raw rows ``X`` (``float32``, shape
    ``(n_samples, n_features_in_)``) and folds in everything ``predict``
    does: the scalers that precede the estimator in a ``Pipeline``, the
    network at its real size (a structurally pruned network exports with its
    neurons and channels removed), then

    - for an ``NNClassifier``: output ``"probabilities"`` (the columns of
      ``predict_proba``) and ``"label"`` (what ``predict`` returns; string
      labels come back as strings; for multilabel targets the int64
      indicator matrix);
    - for an ``NNRegressor``: output ``"predictions"`` in the units of the
      training targets, shape ``(n_samples,)`` or ``(n_samples, n_outputs)``
      as ``predict``.

    The model's metadata holds the class order (``"classes"``, JSON), the
    task, ``n_features_in`` and the feature names when the model was fitted
    on a DataFrame.

    Parameters
    ----------
    model : estimator
        A fitted ``NNClassifier`` or ``NNRegressor``; a fitted ``Pipeline``
        of ``StandardScaler``, ``MinMaxScaler``, ``MaxAbsScaler`` or
        ``RobustScaler`` steps (or ``"passthrough"``) ending in one; or a
        fitted, refitted search whose ``best_estimator_`` is one of these.
    path : str or path-like
        Where to write the model (conventionally ``*.onnx``).
    opset_version : int, default=None
        ONNX opset of the graph; ``None`` uses torch's default.

    Returns
    -------
    path : str or path-like
        The ``path`` given.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator (or a scaler before it) is not fitted.
    TypeError
        If the model or one of its Pipeline steps cannot be converted; the
        message names the step.
    NotImplementedError
        If the network is a ``Transformer``: its input is raw text, and its
        tokenizer has no ONNX form.
    ValueError
        If the network was quantized with ``static_int8`` or ``qat_int8``
        (their fused int8 layers have no float form to export).

    See Also
    --------
    save : Store the whole estimator (to train it further, not only to
        predict) without pickle.

    Notes
    -----
    Needs the ``onnx`` package (``pip install skopt-nn[onnx]``; run the file
    with ``onnxruntime``). The scalers run in ``float32`` in the graph, as the
    network does, so outputs match ``predict_proba`` and ``predict`` to
    about ``1e-6`` rather than bit for bit. A model trained on sparse ``X``
    exports the same graph: its input is the dense ``float32`` rows (ONNX
    Runtime has no sparse input here); densify a batch of rows before
    running it.

    A model quantized with ``float16``/``bfloat16`` exports its 16-bit
    weights upcast to float32, which is what its CPU ``predict`` computes.
    One quantized with ``dynamic_int8`` exports float32 layers holding the
    int8-rounded weights: its activations are then not rounded as in the
    fitted model, so probabilities differ from ``predict_proba`` by the
    activation rounding (at most 0.12 on digits, every label the same; see
    the quantization guide).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skopt_nn import MLP, NNClassifier, export_onnx
    >>> X, y = load_iris(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), NNClassifier(MLP((8,)), max_epochs=20, random_state=0))
    >>> model = model.fit(X, y)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = export_onnx(model, os.path.join(tmp, "iris.onnx"))
    ...     session = ort.InferenceSession(path)
    ...     proba, label = session.run(["probabilities", "label"], {"X": X.astype(np.float32)})
    >>> bool(np.allclose(proba, model.predict_proba(X), atol=1e-5))
    True
    >>> bool((label == model.predict(X)).all())
    True
    """
    import onnx
    from onnx import numpy_helper

    estimator, scalers = _split(model)
    if getattr(estimator, "_is_quantized", False):
        # The graph is float32 with the quantized weights, rounded as the
        # model holds them: ONNX Runtime's own int8 kernels would round them
        # again with scales of their own (see "Quantization" in the guide).
        network = float_copy(estimator.module_).cpu().eval()
    else:
        network = copy.deepcopy(estimator.module_).cpu().float().eval()
    classifier = estimator._task == "classification"
    task = estimator._fit_task()
    if classifier:
        wrapper = _Prediction(scalers, network, task)
        outputs = ["probabilities"]
    else:
        mean, scale = estimator._y_scaler_
        wrapper = _Prediction(scalers, network, "regression", mean, scale, squeeze=estimator.n_outputs_ == 1)
        outputs = ["predictions"]
    wrapper.eval()
    n_features = int(estimator.n_features_in_)
    example = torch.zeros(2, n_features)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter needs no extra package (torch's
        # newer exporter needs onnxscript); torch warns that it is legacy.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapper, (example,), buffer, dynamo=False, input_names=["X"], output_names=outputs,
                dynamic_axes={"X": {0: "n_samples"}, outputs[0]: {0: "n_samples"}},
                opset_version=opset_version,
            )
        except Exception as exc:
            raise TypeError(
                f"torch.onnx could not export the network of {type(estimator).__name__} "
                f"({type(network).__name__}): {exc}"
            ) from exc
    graph_model = onnx.load_from_string(buffer.getvalue())
    meta = {"task": task, "estimator": type(estimator).__name__, "n_features_in": n_features}
    if task == "multilabel":  # the indicator matrix: one sigmoid above 0.5 per label
        graph = graph_model.graph
        graph.initializer.append(numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"))
        graph.node.extend([
            onnx.helper.make_node("Greater", ["probabilities", "half"], ["positive"]),
            onnx.helper.make_node("Cast", ["positive"], ["label"], to=onnx.TensorProto.INT64),
        ])
        graph.output.append(onnx.helper.make_tensor_value_info(
            "label", onnx.TensorProto.INT64, ["n_samples", len(estimator.classes_)]))
        meta["classes"] = _json_safe(estimator.classes_)
    elif classifier:
        table, dtype = _label_tensor(estimator.classes_)
        graph = graph_model.graph
        graph.initializer.append(table)
        graph.node.extend([
            onnx.helper.make_node("ArgMax", ["probabilities"], ["class_index"], axis=1, keepdims=0),
            onnx.helper.make_node("Gather", ["classes", "class_index"], ["label"], axis=0),
        ])
        graph.output.append(onnx.helper.make_tensor_value_info("label", dtype, ["n_samples"]))
        meta["classes"] = _json_safe(estimator.classes_)
    if hasattr(estimator, "feature_names_in_"):
        meta["feature_names_in"] = [str(f) for f in estimator.feature_names_in_]
    for key, value in meta.items():
        entry = graph_model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    graph_model.producer_name = "skopt_nn"
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, path)
    return path
