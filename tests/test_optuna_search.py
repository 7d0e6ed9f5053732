"""make_search(method="optuna"): an Optuna study over any choice, in any storage."""

import numpy as np
import pytest
import sklearn.model_selection._search as sk_search
from sklearn.datasets import load_iris
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection._validation import _warn_or_raise_about_fit_failures
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import MLP, Categorical, LRSchedule, NNClassifier, Pruning, Real, SearchSpace, make_search
from skopt_nn.search import OptunaSearchCV

optuna = pytest.importorskip("optuna")

TUPLES = [(8,), (8, 4)]
SCHEDULES = ["constant", LRSchedule("step", step_size=1, gamma=0.5)]
PRUNINGS = [None, Pruning("l1_unstructured", amount=0.3)]


@pytest.fixture(scope="module")
def data():
    return load_iris(return_X_y=True)


def pipeline(**params):
    net = NNClassifier(MLP((8,)), max_epochs=3, batch_size=32, random_state=0)
    return make_pipeline(StandardScaler(), net.set_params(**params))


def space():
    return SearchSpace({
        "lr": Real(1e-3, 1e-1, log=True),
        "module__hidden_layer_sizes": Categorical(TUPLES),
        "lr_schedule": Categorical(SCHEDULES),
        "pruning": Categorical(PRUNINGS),
    })


def _is_choice(value, choices):
    return any(type(value) is type(c) and value == c for c in choices)


def test_sqlite_search_decodes_tuple_none_and_spec_choices(data, tmp_path):
    X, y = data
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    search = make_search(
        pipeline(), space(), "optuna", n_iter=4, cv=2, random_state=0,
        storage=storage, study_name="iris",
    )
    assert isinstance(search, OptunaSearchCV) and search.n_trials == 4
    search.fit(X, y)

    prefix = "nnclassifier__"
    for params in search.cv_results_["params"] + [search.best_params_]:
        assert _is_choice(params[prefix + "module__hidden_layer_sizes"], TUPLES)
        assert _is_choice(params[prefix + "lr_schedule"], SCHEDULES)
        assert _is_choice(params[prefix + "pruning"], PRUNINGS)
    best_net = search.best_estimator_[-1]
    assert best_net.module.hidden_layer_sizes == (8,)  # the estimator's own spec is untouched
    assert _is_choice(best_net.get_params()["module__hidden_layer_sizes"], TUPLES)
    assert _is_choice(best_net.lr_schedule, SCHEDULES)
    assert len(search.cv_results_["params"]) == 4

    # The storage holds JSON-safe keys; a fresh process can read and decode them.
    stored = optuna.load_study(study_name="iris", storage=storage)
    assert len(stored.trials) == 4
    keys = stored.best_trial.params
    assert isinstance(keys[prefix + "module__hidden_layer_sizes"], str)
    assert search.decode(keys) == search.best_params_


def test_a_stored_study_is_continued(data, tmp_path):
    X, y = data
    storage = f"sqlite:///{tmp_path / 'resume.db'}"
    kwargs = dict(n_trials=2, cv=2, storage=storage, study_name="s", random_state=0)
    make_search(pipeline(), space(), "optuna", **kwargs).fit(X, y)
    again = make_search(pipeline(), space(), "optuna", **kwargs).fit(X, y)

    assert len(again.study_.trials) == 4  # two earlier, two new
    assert len(again.cv_results_["params"]) == 2


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
def test_diverged_trials_are_recorded_as_failed_and_the_search_goes_on(data):
    X, y = data
    net = NNClassifier(MLP((8,)), optimizer="sgd", batch_size=16, max_epochs=2, random_state=0)
    sampler = optuna.samplers.GridSampler({"lr": [1e30, 0.05, 1e25]}, seed=0)
    search = make_search(net, {"lr": Categorical([0.05, 1e25, 1e30])}, "optuna", n_trials=3, cv=2,
                         sampler=sampler)

    with pytest.warns(FitFailedWarning, match="DivergenceError"):
        search.fit(X, y)

    scores = search.cv_results_["mean_test_score"]
    assert np.isnan(scores).sum() == 2 and np.isfinite(search.best_score_)
    assert search.best_params_ == {"lr": 0.05}
    failed = [t for t in search.study_.trials if t.state == optuna.trial.TrialState.FAIL]
    assert sorted(t.params["lr"] for t in failed) == [1e25, 1e30]
    assert all(t.user_attrs["diverged"] and "DivergenceError" in t.user_attrs["fail_reason"] for t in failed)
    assert search.study_.best_trial.params == {"lr": 0.05}
    assert sk_search._warn_or_raise_about_fit_failures is _warn_or_raise_about_fit_failures


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.FitFailedWarning")
def test_all_trials_failing_raises(data):
    X, y = data
    net = NNClassifier(MLP((8,)), optimizer="sgd", batch_size=16, max_epochs=2, random_state=0)
    search = make_search(net, {"lr": Categorical([1e25, 1e30])}, "optuna", n_trials=2, cv=2, random_state=0)
    with pytest.raises(ValueError, match="All the 2 trials of the Optuna search failed"):
        search.fit(X, y)


def test_multi_metric_search_maximises_the_refit_metric(data):
    X, y = data
    search = make_search(
        pipeline(), {"lr": Real(1e-3, 1e-1, log=True)}, "optuna", n_trials=2, cv=2, random_state=0,
        scoring=["accuracy", "neg_log_loss"], refit="neg_log_loss",
    ).fit(X, y)
    values = sorted(t.value for t in search.study_.trials)
    np.testing.assert_allclose(values, sorted(search.cv_results_["mean_test_neg_log_loss"]))
    with pytest.raises(ValueError, match="refit must name the metric"):
        make_search(pipeline(), {"lr": Real(1e-3, 1e-1)}, "optuna", n_trials=1, cv=2,
                    scoring=["accuracy", "neg_log_loss"], refit=False).fit(X, y)


def test_n_iter_and_n_trials_together_are_refused():
    with pytest.raises(TypeError, match="n_trials or n_iter"):
        make_search(pipeline(), {"lr": Real(1e-3, 1e-1)}, "optuna", n_iter=2, n_trials=3)


def test_pipeline_with_spec_choices_and_the_default_module_trains_every_trial(data, tmp_path):
    # module=None stands for MLP(); nested module__ values reach it, as they
    # do a spec chosen in a Categorical, inside a Pipeline and a stored study.
    X, y = data
    pipe = make_pipeline(StandardScaler(), NNClassifier(max_epochs=2, random_state=0))
    space = {
        "lr_schedule": Categorical(["constant", LRSchedule("step", step_size=1)]),
        "module__hidden_layer_sizes": Categorical(TUPLES),
        "lr_schedule__warmup_epochs": Categorical([0, 1]),
    }
    search = make_search(pipe, space, method="optuna", storage=f"sqlite:///{tmp_path / 's.db'}",
                         n_iter=4, cv=2, random_state=0, error_score="raise").fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_[-1].module.hidden_layer_sizes in TUPLES


def test_nested_names_reach_the_spec_a_default_stands_for():
    clf = NNClassifier().set_params(module__width=8, lr_schedule="step", lr_schedule__gamma=0.5)
    assert repr(clf.module) == repr(MLP(width=8))
    assert repr(clf.lr_schedule) == repr(LRSchedule("step", gamma=0.5))
    assert NNClassifier().set_params(module=None).module is None
