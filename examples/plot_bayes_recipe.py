"""
Bayesian tuning of a whole training recipe
==========================================

The learning rate, the schedule, how hard to prune and how much to listen
to a teacher are all hyperparameters of one estimator, so one Bayesian
search (scikit-optimize's ``BayesSearchCV``, made robust to failed fits by
:func:`~skopt_nn.make_search`) tunes them together.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split

from skopt_nn import (
    MLP, Categorical, Distillation, LRSchedule, NNClassifier, Pruning, Real, SearchSpace,
    make_search,
)
from skopt_nn.plotting import plot_convergence, plot_search_results, plot_sparsity

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, y, train_size=600, stratify=y, random_state=0
)

# %%
# The recipe: a one-cycle schedule, gradual structured pruning (whole
# neurons go) and distillation from a small gradient-boosting teacher,
# which is refitted on the training rows of every cross-validation fit.
student = NNClassifier(
    MLP((64,)),
    batch_size=64,
    max_epochs=12,
    lr_schedule=LRSchedule("onecycle"),
    pruning=Pruning("ln_structured", amount=0.5, schedule="gradual", n_steps=3),
    distillation=Distillation(HistGradientBoostingClassifier(max_iter=10, max_leaf_nodes=15)),
    random_state=0,
)

# %%
# One space for the whole recipe. Nested parameters use sklearn's ``__``
# syntax; a schedule can be chosen by name.
space = SearchSpace({
    "lr": Real(3e-3, 5e-2, log=True),
    "lr_schedule": Categorical(["onecycle", "cosine"]),
    "pruning__amount": Real(0.3, 0.8),
    "distillation__alpha": Real(0.1, 0.9),
    "distillation__temperature": Real(1.0, 8.0, log=True),
})
search = make_search(student, space, method="bayes", n_iter=6, cv=2, random_state=0)
search.fit(X_train, y_train)

best = search.best_estimator_
print("best recipe:", search.best_params_)
print(f"test accuracy {best.score(X_test, y_test):.3f} with {best.n_params_:,} parameters "
      f"(sparsity {best.sparsity_:.0%})")

# %%
# Did the search settle? Each candidate's cross-validated accuracy, in the
# order the optimizer proposed them, and the best so far.
plot_convergence(search)
plt.show()

# %%
# Accuracy against each dimension of the recipe.
plot_search_results(search)
plt.show()

# %%
# What the best recipe removed, layer by layer.
plot_sparsity(best)
plt.show()
