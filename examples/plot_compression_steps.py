"""
Prune, distil, quantize: one network, three compressions
========================================================

Each compression is a hyperparameter of the same estimator, so they stack:
:class:`~skopt_nn.Pruning` removes whole neurons while the network trains,
:class:`~skopt_nn.Distillation` lets the smaller network learn from a
stronger teacher, and :class:`~skopt_nn.Quantization` stores the final
weights in int8 once training is done. This example adds them one at a
time to a digits classifier and measures, at each step, what a user pays
for: the held-out accuracy, the size of the ``joblib`` file and the time to
predict 20,000 rows.
"""

# %%
import io
import time

import joblib
import matplotlib.pyplot as plt
import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GridSearchCV, train_test_split

from skopt_nn import MLP, Distillation, NNClassifier, Pruning, Quantization

X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
X_many = np.resize(X_test, (20_000, X.shape[1]))


def file_size(model):
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.tell()


def predict_time(model):
    model.predict(X_many[:100])  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.predict(X_many)
        times.append(time.perf_counter() - start)
    return sorted(times)[1]


# %%
# The steps. Each one is the previous estimator with one more parameter set,
# trained from the same seed.
dense = NNClassifier(MLP((256, 256)), lr=3e-3, max_epochs=15, batch_size=64, random_state=0)
steps = {"dense": dense}
steps["+ pruning"] = clone(dense).set_params(
    pruning=Pruning("ln_structured", amount=0.7, schedule="gradual"))
steps["+ distillation"] = clone(steps["+ pruning"]).set_params(
    distillation=Distillation(HistGradientBoostingClassifier(max_iter=30, random_state=0), temperature=2.0))
steps["+ int8"] = clone(steps["+ distillation"]).set_params(quantization=Quantization("dynamic_int8"))

results = {}
for name, model in steps.items():
    model.fit(X_train, y_train)
    results[name] = (model.score(X_test, y_test), file_size(model), predict_time(model))

base_size, base_time = results["dense"][1], results["dense"][2]
print(f"{'step':<16} {'accuracy':>8} {'file':>10} {'smaller':>8} {'predict 20k':>12}")
for name, (accuracy, size, seconds) in results.items():
    print(f"{name:<16} {accuracy:8.3f} {size / 1024:8.0f} KB {base_size / size:7.1f}x {seconds:10.3f} s")
print("int8 layers:", steps["+ int8"].quantization_summary_["layers"])

# %%
# Quantization happens at the end of ``fit``, so the scores a search sees are
# those of the quantized model: a search can weigh int8 weights against float
# ones like any other choice.
search = GridSearchCV(
    clone(steps["+ pruning"]),
    {"quantization": [None, Quantization("dynamic_int8"), Quantization("float16")]},
    cv=2,
).fit(X_train, y_train)
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    print(f"quantization={params['quantization']!s:<35} CV accuracy {score:.3f}")

# %%
# Size and accuracy, step by step.
fig, (ax_size, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
names = list(results)
ax_size.bar(names, [results[n][1] / 1024 for n in names], color="tab:blue")
ax_size.set_ylabel("joblib file (KB)")
ax_acc.bar(names, [results[n][0] for n in names], color="tab:green")
ax_acc.set_ylim(0.9, 1.0)
ax_acc.set_ylabel("held-out accuracy")
for ax in (ax_size, ax_acc):
    ax.tick_params(axis="x", rotation=20)
fig.tight_layout()
plt.show()
