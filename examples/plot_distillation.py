"""
Distillation is a hyperparameter: search it
===========================================

With :class:`~skopt_nn.Distillation` a student network learns from a
teacher's softened predictions as well as from the labels (Hinton et al.,
2015). How much that helps depends on the teacher, the softmax
``temperature`` and the weight ``alpha`` of the teacher's term, and it can
even hurt, so the honest way to use it is to search it, with "no
distillation" among the choices.

The teacher is given *unfitted*: it is fitted inside every fit of the
student, on the rows that fit sees, so the cross-validation scores below
are leak-free.
"""

# %%
import matplotlib.pyplot as plt
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.svm import SVC

from skopt_nn import MLP, Distillation, NNClassifier

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, y, train_size=400, stratify=y, random_state=0
)

# %%
# A support-vector teacher with calibrated probabilities, and a student
# with a single hidden layer of 16 units (about 1,200 weights).
teacher = CalibratedClassifierCV(SVC(), ensemble=False)
student = NNClassifier(MLP((16,)), lr=0.03, max_epochs=25, batch_size=32, random_state=0)

# %%
# Two grids in one search: the student alone, and distilled students over
# temperature and alpha. ``distillation__temperature`` reaches into the spec
# as ``module__width`` reaches into a network spec.
param_grid = [
    {"distillation": [None]},
    {
        "distillation": [Distillation(teacher)],
        "distillation__temperature": [1.0, 4.0],
        "distillation__alpha": [0.3, 0.7],
    },
]
search = GridSearchCV(student, param_grid, cv=2).fit(X_train, y_train)

labels = []
for params in search.cv_results_["params"]:
    if params["distillation"] is None:
        labels.append("student alone")
    else:
        labels.append(f"T={params['distillation__temperature']:g}, "
                      f"alpha={params['distillation__alpha']:g}")
for label, score in zip(labels, search.cv_results_["mean_test_score"]):
    print(f"{label:>18}: cv accuracy {score:.3f}")
print(f"teacher test accuracy {teacher.fit(X_train, y_train).score(X_test, y_test):.3f}, "
      f"best student {search.score(X_test, y_test):.3f}")

# %%
# A teacher whose probabilities are calibrated (not logits) gives flat soft
# targets at a high temperature; a low temperature usually suits it better.
# The search, not a default, decides.
fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
scores = search.cv_results_["mean_test_score"]
ax.barh(labels, scores, xerr=search.cv_results_["std_test_score"],
        color=["0.6"] + ["C0"] * (len(labels) - 1))
ax.set_xlim(min(scores) - 0.05, 1.0)
ax.set_xlabel("cross-validated accuracy")
ax.invert_yaxis()
plt.show()
