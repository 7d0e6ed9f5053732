"""
Four search engines, one search space
=====================================

A :class:`~skopt_nn.SearchSpace` is written once and rendered for each
engine: a grid for ``GridSearchCV``, distributions for
``RandomizedSearchCV`` and successive halving, dimensions for
scikit-optimize's ``BayesSearchCV``. Here all four tune the same network on
the same budget of about eight candidates.
"""

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_wine
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import MLP, Categorical, Integer, NNClassifier, Real, SearchSpace, make_search

X, y = load_wine(return_X_y=True)
pipe = make_pipeline(StandardScaler(), NNClassifier(MLP(), max_epochs=9, random_state=0))
space = SearchSpace({
    "lr": Real(1e-4, 1e-1, log=True),
    "module__width": Integer(4, 64, log=True),
    "optimizer": Categorical(["adam", "sgd"]),
})

# %%
# Successive halving spends the epochs as its resource: many candidates
# train for a few epochs, the best third go on with three times as many.
searches = {
    "grid": make_search(pipe, space, "grid", grid_points=2, cv=3),  # 2 x 2 x 2
    "random": make_search(pipe, space, "random", n_iter=8, cv=3, random_state=0),
    "bayes": make_search(pipe, space, "bayes", n_iter=8, cv=3, random_state=0),
    "halving": make_search(pipe, space, "halving", n_candidates=9, factor=3,
                           min_resources=3, cv=3, random_state=0),
}
for name, search in searches.items():
    start = time.perf_counter()
    search.fit(X, y)
    n = len(search.cv_results_["params"])
    print(f"{name:>8}: best cv accuracy {search.best_score_:.3f} "
          f"after {n} candidates, {time.perf_counter() - start:.1f} s")

# %%
# The best cross-validated accuracy found so far, candidate by candidate.
# (Halving's later rounds train for more epochs, so its scores rise for
# that reason too.)
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
for name, search in searches.items():
    scores = np.nan_to_num(search.cv_results_["mean_test_score"], nan=0.0)
    ax.plot(np.arange(1, len(scores) + 1), np.maximum.accumulate(scores),
            drawstyle="steps-post", label=name)
ax.set(xlabel="candidates evaluated", ylabel="best cv accuracy so far")
ax.legend()
plt.show()
