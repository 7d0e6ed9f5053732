"""
Imbalanced classes: class_weight as a hyperparameter
====================================================

When one class has 5 % of the rows, a network trained on the plain
cross-entropy can score 95 % accuracy by hardly ever predicting it.
``NNClassifier(class_weight="balanced")`` weighs every row by the inverse
frequency of its class (scikit-learn's meaning), so both classes count
alike in the loss; a dict sets the weights by hand. Like every other
parameter, ``class_weight`` is searchable, dicts included.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_classification
from sklearn.metrics import balanced_accuracy_score, recall_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import MLP, Categorical, NNClassifier, SearchSpace, make_search

X, y = make_classification(n_samples=1000, n_features=8, n_informative=4, weights=[0.95],
                           class_sep=0.8, flip_y=0, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
print(f"minority share: {y.mean():.1%} of {len(y)} rows")


def model(class_weight):
    net = NNClassifier(MLP((16,)), lr=0.01, max_epochs=30, batch_size=64,
                       class_weight=class_weight, random_state=0)
    return make_pipeline(StandardScaler(), net)


# %%
# Three weightings side by side: none, balanced, and the minority class
# weighted 5 times by hand. Balanced accuracy is the mean recall of the two
# classes, so it cannot be won by ignoring one of them.
choices = {"None": None, '"balanced"': "balanced", "{1: 5}": {1: 5}}
results = {}
for label, class_weight in choices.items():
    pred = model(class_weight).fit(X_train, y_train).predict(X_test)
    results[label] = (balanced_accuracy_score(y_test, pred), recall_score(y_test, pred))
    print(f"class_weight={label:>10}: balanced accuracy {results[label][0]:.3f}, "
          f"minority recall {results[label][1]:.3f}")

# %%
# The same choices as a search dimension, scored by balanced accuracy. The
# dict is stored under a string key in the search engines that need one
# (scikit-optimize, Optuna) and handed to the estimator as the dict itself.
space = SearchSpace({"class_weight": Categorical([None, "balanced", {1: 5}])}).prefixed(
    "nnclassifier__")
search = make_search(model(None), space, "grid", cv=3, scoring="balanced_accuracy")
search.fit(X_train, y_train)
print("best:", search.best_params_, f"cv balanced accuracy {search.best_score_:.3f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
positions = np.arange(len(results))
scores = np.array(list(results.values()))
ax.bar(positions - 0.2, scores[:, 0], width=0.4, label="balanced accuracy")
ax.bar(positions + 0.2, scores[:, 1], width=0.4, label="minority recall")
ax.set_xticks(positions, [f"class_weight={label}" for label in results])
ax.set_ylim(0, 1.15)
ax.set_ylabel("test score")
ax.legend(loc="upper left", ncols=2)
plt.show()
