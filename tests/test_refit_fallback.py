"""A refit that diverges falls back to the next-best candidate, in every engine."""

import numpy as np
import pytest
from skorch.callbacks import Callback
from sklearn.datasets import load_iris
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import MLP, Categorical, NNClassifier, make_search
from skopt_nn.training._base import DivergenceError


class DivergesOnAllRows(Callback):
    """Diverges like a learning rate at the edge of stability: only with lr > 0.01 on all 150 rows.

    The cross-validation folds train on fewer rows and are fine, so the
    fastest learning rate wins the search, and only its refit fails.
    """

    def on_train_begin(self, net, X=None, **kwargs):
        if len(X) >= 150 and net.lr > 0.01:
            raise DivergenceError(f"Training diverged in epoch 1: the training loss became nan (lr={net.lr:g}).")


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def _pipe():
    net = NNClassifier(MLP((16,)), max_epochs=9, batch_size=16, random_state=0,
                       callbacks=[("fragile", DivergesOnAllRows())])
    return make_pipeline(StandardScaler(), net)


SPACE = {"lr": Categorical([0.05, 1e-4])}
KW = {
    "grid": {},
    "random": {"n_iter": 2, "random_state": 0},
    "halving": {"random_state": 0, "factor": 2, "min_resources": 3},
    "bayes": {"n_iter": 4, "random_state": 0},
    "optuna": {"n_iter": 6, "random_state": 0},
    "asha": {"n_iter": 2, "random_state": 0, "reduction_factor": 3},
}


@pytest.mark.parametrize("method", list(KW))
def test_a_diverging_refit_falls_back_to_the_next_best_candidate(iris, method):
    if method == "optuna":
        pytest.importorskip("optuna")
    X, y = iris
    search = make_search(_pipe(), SPACE, method=method, cv=2, **KW[method])
    with pytest.warns(UserWarning, match=r"refit of the best candidate .*0\.05.* diverged.*0\.0001"):
        search.fit(X, y)
    # The attributes describe the model that was refitted.
    assert search.best_params_["nnclassifier__lr"] == 1e-4  # halving adds its resource
    assert search.cv_results_["params"][search.best_index_] == search.best_params_
    assert search.best_score_ == pytest.approx(search.cv_results_["mean_test_score"][search.best_index_])
    assert search.best_estimator_[-1].lr == 1e-4
    assert search.predict(X).shape == (150,)


def test_the_refit_error_is_raised_when_every_candidate_diverges(iris):
    X, y = iris
    search = make_search(_pipe(), {"lr": Categorical([0.05, 0.02])}, method="grid", cv=2)
    with pytest.raises(DivergenceError, match="lr=0.05"):
        search.fit(X, y)


def test_a_refit_that_trains_changes_nothing(iris):
    import warnings

    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        search = make_search(_pipe(), {"lr": Categorical([0.01, 1e-4])}, method="grid", cv=2).fit(X, y)
    assert search.best_params_ == {"nnclassifier__lr": 0.01}
    assert search.best_index_ == int(np.argmin(search.cv_results_["rank_test_score"]))
