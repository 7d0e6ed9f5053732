"""
The smallest model within one point: a compression search
=========================================================

A search scored on accuracy alone takes the most accurate candidate, however
large, even when a model a tenth of its size scores a hair lower. Here the
grid crosses width, structured pruning and int8 weights; the search scores
each candidate on accuracy *and* on its saved size (the ``neg_model_bytes``
cost scorer), keeps the Pareto front of the two, and refits the smallest
model within one point of the best accuracy
(:func:`~skopt_nn.within`).
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import MLP, NNClassifier, Pruning, Quantization, make_search, within

X, y = load_digits(return_X_y=True)

pipe = make_pipeline(StandardScaler(), NNClassifier(MLP((64,)), max_epochs=10, random_state=0))
space = {
    "module__hidden_layer_sizes": [(32,), (128,), (128, 128)],
    "pruning": [None, Pruning("ln_structured", amount=0.5), Pruning("ln_structured", amount=0.8)],
    "quantization": [None, Quantization("dynamic_int8")],
}
search = make_search(
    pipe, space, method="grid", cv=3,
    scoring={"accuracy": "accuracy", "bytes": "neg_model_bytes"},
    refit=within("accuracy", tol=0.01, minimize="bytes"),
)
search.fit(X, y)

# %%
# The accuracy-only pick and the tolerance pick, from the same results.
results = search.cv_results_
accuracy = results["mean_test_accuracy"]
kib = -results["mean_test_bytes"] / 1024
by_accuracy = int(np.argmin(results["rank_test_accuracy"]))
by_size = search.best_index_


def recipe(params):
    pruning = params["nnclassifier__pruning"]
    int8 = params["nnclassifier__quantization"] is not None
    return (f"{params['nnclassifier__module__hidden_layer_sizes']}, "
            f"pruned {0 if pruning is None else pruning.amount:.0%}{', int8' if int8 else ''}")


print(f"accuracy only:  {recipe(results['params'][by_accuracy])}: "
      f"{accuracy[by_accuracy]:.3f}, {kib[by_accuracy]:.1f} KiB")
print(f"within 1 point: {recipe(results['params'][by_size])}: "
      f"{accuracy[by_size]:.3f}, {kib[by_size]:.1f} KiB "
      f"({kib[by_accuracy] / kib[by_size]:.1f}x smaller)")

# %%
# Every candidate, the front over (accuracy, size) and the two picks.
front = search.pareto_front_
fig, ax = plt.subplots(figsize=(6.4, 4.2))
ax.scatter(kib, accuracy, color="0.7", label="candidates")
order = np.argsort(kib[front["index"]])
ax.plot(kib[front["index"]][order], accuracy[front["index"]][order], "o-", color="C0", label="Pareto front")
ax.scatter([kib[by_accuracy]], [accuracy[by_accuracy]], s=160, facecolors="none", edgecolors="C3",
           label="accuracy only")
ax.scatter([kib[by_size]], [accuracy[by_size]], s=160, marker="s", facecolors="none", edgecolors="C2",
           label="smallest within 1 point")
ax.set_xscale("log")
ax.set_xlabel("saved size (KiB, joblib)")
ax.set_ylabel("mean CV accuracy")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()
