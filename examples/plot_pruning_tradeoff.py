"""
Accuracy against sparsity: what pruning costs
=============================================

:class:`~skopt_nn.Pruning` removes weights while the network trains. Here
the same network is pruned harder and harder, by two methods:

- ``l1_unstructured`` zeroes the smallest weights of each layer. The
  network keeps its shape: the zeros are still multiplied, so it is sparse,
  not faster.
- ``ln_structured`` removes whole neurons (the smallest rows of a weight
  matrix, with the inputs of the next layer that read them). The fitted
  network is physically smaller and faster.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skopt_nn import MLP, NNClassifier, Pruning
from skopt_nn.plotting import plot_sparsity

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)

# %%
# A gradual schedule raises the sparsity in 4 steps over the first 60 % of
# the epochs, then fine-tunes at the final sparsity.
amounts = [0.0, 0.5, 0.8, 0.95]
results = {}
dense = NNClassifier(MLP((128,)), lr=0.01, max_epochs=10, batch_size=64, random_state=0)
for method in ["l1_unstructured", "ln_structured"]:
    for amount in amounts:
        if amount == 0 and method == "ln_structured":
            results[method, amount] = results["l1_unstructured", 0.0]  # the same dense net
            continue
        pruning = None if amount == 0 else Pruning(
            method, amount=amount, schedule="gradual", start=0.1, end=0.6, n_steps=4
        )
        clf = clone(dense).set_params(pruning=pruning).fit(X_train, y_train)
        results[method, amount] = (clf.score(X_test, y_test), clf.n_params_, clf)
        print(f"{method:>16} amount={amount:<4}  accuracy {results[method, amount][0]:.3f}"
              f"  parameters {clf.n_params_:>6,}")

# %%
# Accuracy holds up to high sparsity. Only structured pruning shrinks the
# parameter count the fitted model really holds.
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
for method, marker in [("l1_unstructured", "o"), ("ln_structured", "s")]:
    left.plot(amounts, [results[method, a][0] for a in amounts], marker=marker, label=method)
    right.plot(amounts, [results[method, a][1] for a in amounts], marker=marker, label=method)
left.set(xlabel="pruning amount", ylabel="test accuracy", title="accuracy")
right.set(xlabel="pruning amount", ylabel="parameters in the fitted model", title="model size")
left.legend()
right.legend()
plt.show()

# %%
# Where the zeros are: per-layer sparsity of the 80 % structured network.
# The output layer keeps its 10 units but loses the inputs of the removed
# neurons.
plot_sparsity(results["ln_structured", 0.8][2])
plt.show()
