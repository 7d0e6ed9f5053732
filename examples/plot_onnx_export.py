"""
Exporting a tuned, pruned model to ONNX
=======================================

:func:`~skopt_nn.export_onnx` writes a fitted model as one ONNX graph, from
the raw feature rows to the class probabilities and labels. The scaler of
the ``Pipeline`` is folded into the graph, and a network whose neurons were
removed by structured pruning exports at its real, smaller size. The file
then runs in ``onnxruntime`` (or any ONNX runtime) without Python, torch or
scikit-learn.

Here a search tunes the learning rate and the pruning amount of a digits
classifier, and the best model is exported and checked against
``predict_proba``.
"""

# %%
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import MLP, NNClassifier, Pruning, Real, export_onnx, make_search

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X[:600], y[:600], stratify=y[:600], random_state=0)

# %%
# The network is pruned by whole neurons; the search picks how many.
pipe = make_pipeline(
    StandardScaler(),
    NNClassifier(MLP((64,)), max_epochs=6, batch_size=32, random_state=0,
                 pruning=Pruning("ln_structured", amount=0.5)),
)
search = make_search(
    pipe,
    {"lr": Real(3e-3, 3e-2, log=True), "pruning__amount": Real(0.3, 0.8)},
    method="random", n_iter=3, cv=2, random_state=0,
).fit(X_train, y_train)
best = search.best_estimator_
net = best[-1]
print("best parameters:", {k.split("__", 1)[1]: round(float(v), 4) for k, v in search.best_params_.items()})
print(f"hidden neurons left: {net.module_[0].out_features} of 64, test accuracy {best.score(X_test, y_test):.3f}")

# %%
# Export the whole pipeline. The graph's input is the raw pixels as
# ``float32``; its outputs are ``"probabilities"`` and ``"label"``.
tmp = tempfile.TemporaryDirectory()
path = export_onnx(best, os.path.join(tmp.name, "digits.onnx"))
model = onnx.load(path)
print("inputs:", [i.name for i in model.graph.input], " outputs:", [o.name for o in model.graph.output])
print("weight matrices:", [tuple(t.dims) for t in model.graph.initializer if len(t.dims) == 2])
print("class order (metadata):", {p.key: p.value for p in model.metadata_props}["classes"])

# %%
# onnxruntime gives the same probabilities and labels as the fitted pipeline.
session = ort.InferenceSession(path)
proba, label = session.run(["probabilities", "label"], {"X": X_test.astype(np.float32)})
print(f"largest probability difference: {np.abs(proba - best.predict_proba(X_test)).max():.1e}")
print("labels identical:", bool((label == best.predict(X_test)).all()))
print(f"file size: {os.path.getsize(path) / 1024:.1f} KiB")
tmp.cleanup()
