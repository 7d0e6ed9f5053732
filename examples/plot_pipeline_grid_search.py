"""
Grid search over a pipeline
===========================

An :class:`~skopt_nn.NNClassifier` is an ordinary scikit-learn estimator: it
sits at the end of a :class:`~sklearn.pipeline.Pipeline`, and
:class:`~sklearn.model_selection.GridSearchCV` tunes its learning rate and
its network's shape as it would tune any other step. The scaler is refitted
inside each cross-validation fold, so no statistic of a validation fold
leaks into training.
"""

# %%
# Data and pipeline
# -----------------
# Breast-cancer diagnosis: 569 rows, 30 numeric features of very different
# scales, hence the scaler.
import matplotlib.pyplot as plt
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import MLP, Categorical, NNClassifier, Real, make_search
from skopt_nn.plotting import plot_search_results

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)

pipe = make_pipeline(
    StandardScaler(),
    NNClassifier(MLP((32,)), max_epochs=10, batch_size=64, random_state=0),
)

# %%
# Plain scikit-learn
# ------------------
# Parameters of the network are reached with the usual ``step__param``
# syntax; those of its spec with one more level (``module__...``).
param_grid = {
    "nnclassifier__lr": [1e-3, 1e-2, 1e-1],
    "nnclassifier__module__hidden_layer_sizes": [(16,), (64, 32)],
}
search = GridSearchCV(pipe, param_grid, cv=3).fit(X_train, y_train)
print("best:", search.best_params_)
print(f"test accuracy: {search.score(X_test, y_test):.3f}")

# %%
# The same grid from a search space
# ---------------------------------
# :func:`~skopt_nn.make_search` takes a :class:`~skopt_nn.SearchSpace` (or a
# plain dict) written once for every search engine, finds the network's
# step in the pipeline and prefixes the names itself. ``grid_points`` sets
# how many values a range contributes to the grid.
space = {
    "lr": Real(1e-3, 1e-1, log=True),
    "module__hidden_layer_sizes": Categorical([(16,), (64, 32)]),
}
search = make_search(pipe, space, method="grid", grid_points=2, cv=3)
print(sorted(search.param_grid))
search.fit(X_train, y_train)
print(f"test accuracy: {search.score(X_test, y_test):.3f}")

# %%
# One panel per parameter: the mean cross-validated accuracy of each
# candidate, with one standard deviation over the folds; the star is the
# best candidate.
plot_search_results(search)
plt.show()
