"""Progress bars: per epoch for a fit, per candidate for a search."""

import io
import re

import numpy as np
import pytest
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import GridSearchCV, HalvingRandomSearchCV, RandomizedSearchCV

from skopt_nn import MLP, NNClassifier, Pruning, Real, make_search, search_progress


def _net(**kwargs):
    return NNClassifier(MLP((8,)), lr=0.02, random_state=0, **kwargs)


def test_verbose_1_draws_one_bar_step_per_epoch(iris, capsys):
    X, y = iris
    _net(max_epochs=4, verbose=1, pruning=Pruning(amount=0.5)).fit(X, y)
    captured = capsys.readouterr()
    assert captured.out == ""  # the bar goes to stderr, no skorch table
    assert "NNClassifier: 100%" in captured.err and "4/4" in captured.err
    # The latest loss, learning rate and sparsity ride along.
    assert re.search(r"loss=[\d.]+, lr=[\d.e-]+, sparsity=0.5", captured.err)


def test_verbose_2_prints_one_line_per_epoch(iris, capsys):
    X, y = iris
    _net(max_epochs=3, verbose=2).fit(X, y)
    captured = capsys.readouterr()
    assert "train_loss" in captured.out and len(captured.out.strip().splitlines()) == 2 + 3
    assert "epoch/s" not in captured.err


def test_verbose_0_is_silent_and_the_model_still_pickles(iris, capsys):
    import pickle

    X, y = iris
    clf = _net(max_epochs=2, verbose=1).fit(X, y)
    capsys.readouterr()
    _net(max_epochs=2).fit(X, y)
    assert capsys.readouterr() == ("", "")
    # The bar was dropped at the end of training: nothing unpicklable stays.
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(X), clf.predict(X))


def test_early_stop_closes_the_bar_where_training_stopped(iris, capsys):
    X, y = iris
    clf = _net(max_epochs=200, n_iter_no_change=2, tol=10.0, verbose=1).fit(X, y)
    assert clf.n_iter_ < 200
    assert f"{clf.n_iter_}/200" in capsys.readouterr().err


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_search_bar_counts_candidates_and_changes_no_result(iris, n_jobs):
    X, y = iris
    space = {"lr": Real(1e-3, 1e-1, log=True), "optimizer": ["adam", "sgd"]}
    plain = make_search(_net(max_epochs=2), space, "random", n_iter=5, cv=2,
                        random_state=0, n_jobs=n_jobs)
    watched = make_search(_net(max_epochs=2), space, "random", n_iter=5, cv=2,
                          random_state=0, n_jobs=n_jobs)
    out = io.StringIO()
    plain.fit(X, y)
    with search_progress(watched, file=out):
        watched.fit(X, y)
    assert "5/5" in out.getvalue() and "best=" in out.getvalue()
    np.testing.assert_allclose(
        watched.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"]
    )
    assert watched.best_params_ == plain.best_params_
    assert "_run_search" not in vars(watched)  # the search is left as it was


def test_search_bar_follows_bayes_grid_and_halving(iris):
    X, y = iris
    searches = [
        make_search(_net(max_epochs=2), {"lr": Real(1e-3, 1e-1, log=True)}, "bayes",
                    n_iter=3, cv=2, random_state=0),
        GridSearchCV(_net(max_epochs=2), {"lr": [0.01, 0.02], "batch_size": [32, 64]}, cv=2),
        HalvingRandomSearchCV(_net(max_epochs=4), {"lr": [0.001, 0.01, 0.02, 0.05]},
                              resource="max_epochs", max_resources=4, min_resources=1,
                              factor=2, cv=2, random_state=0),
    ]
    for search in searches:
        out = io.StringIO()
        with search_progress(search, file=out):
            search.fit(X, y)
        n = len(search.cv_results_["params"])
        assert f"{n}/{n}" in out.getvalue(), type(search).__name__


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.FitFailedWarning")
def test_a_search_whose_every_fit_fails_still_raises(iris):
    X, y = iris
    search = RandomizedSearchCV(_net(max_epochs=1), {"optimizer": ["nope", "none"]},
                                n_iter=2, cv=2, random_state=0)
    with pytest.raises(ValueError, match="failed"):
        with search_progress(search, file=io.StringIO()):
            search.fit(X, y)
