"""Default settings against sklearn's MLP, by 5-fold cross-validation.

``make_pipeline(StandardScaler(), NNClassifier(random_state=0))`` against
``make_pipeline(StandardScaler(), MLPClassifier(random_state=0))`` on
sklearn's built-in classification sets, and ``NNRegressor`` against
``MLPRegressor(random_state=0, max_iter=2000)`` on diabetes. Both sides run
here, in one process, with the same folds.

Run: ``python benchmarks/bench_defaults.py``
"""

import warnings

from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import NNClassifier, NNRegressor


def main():
    warnings.simplefilter("ignore", ConvergenceWarning)
    print(f"{'data set':<14} {'metric':<9} {'sklearn MLP':>12} {'skopt_nn':>10}")
    for name, loader in [("digits", load_digits), ("breast_cancer", load_breast_cancer), ("wine", load_wine)]:
        X, y = loader(return_X_y=True)
        cv = StratifiedKFold(5)
        ref = cross_val_score(make_pipeline(StandardScaler(), MLPClassifier(random_state=0)), X, y, cv=cv)
        ours = cross_val_score(make_pipeline(StandardScaler(), NNClassifier(random_state=0)), X, y, cv=cv)
        print(f"{name:<14} {'accuracy':<9} {ref.mean():12.4f} {ours.mean():10.4f}")
    X, y = load_diabetes(return_X_y=True)
    cv = KFold(5)
    ref = cross_val_score(make_pipeline(StandardScaler(), MLPRegressor(random_state=0, max_iter=2000)), X, y, cv=cv)
    ours = cross_val_score(make_pipeline(StandardScaler(), NNRegressor(random_state=0)), X, y, cv=cv)
    print(f"{'diabetes':<14} {'R2':<9} {ref.mean():12.4f} {ours.mean():10.4f}")


if __name__ == "__main__":
    main()
