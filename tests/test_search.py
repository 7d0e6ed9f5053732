"""make_search, default_space and the robust Bayesian search."""

import warnings

import joblib
import numpy as np
import pytest
import sklearn.model_selection._search as sk_search
import skopt.space
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.model_selection._validation import _warn_or_raise_about_fit_failures
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skopt import BayesSearchCV
from threadpoolctl import threadpool_limits

from skopt_nn import (
    MLP,
    Categorical,
    Integer,
    LRSchedule,
    NNClassifier,
    NNRegressor,
    Real,
    SearchSpace,
    default_space,
    make_search,
)
from skopt_nn.search import OptunaSearchCV, RobustBayesSearchCV

# The Gaussian process behind BayesSearchCV is 5-10x slower when its BLAS
# threads compete with other processes on a small machine.
pytestmark = pytest.mark.usefixtures("one_blas_thread")

TUPLES = [(8,), (8, 4)]
STEP = LRSchedule("step", step_size=1, gamma=0.5)


@pytest.fixture
def one_blas_thread():
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return X, y


def pipeline(**params):
    net = NNClassifier(MLP((8,)), max_epochs=3, batch_size=32, random_state=0)
    return make_pipeline(StandardScaler(), net.set_params(**params))


def full_space():
    return SearchSpace(
        {
            "lr": Real(1e-3, 1e-1, log=True),
            "batch_size": Integer(16, 64, log=True),
            "optimizer": Categorical(["adam", "sgd"]),
            "module__hidden_layer_sizes": Categorical(TUPLES),
            "lr_schedule": Categorical(["constant", STEP]),
        }
    )


ENGINES = {
    "grid": (GridSearchCV, {"grid_points": 2}),
    "random": (RandomizedSearchCV, {"n_iter": 4, "random_state": 0}),
    "bayes": (
        BayesSearchCV,
        {"n_iter": 5, "random_state": 0, "optimizer_kwargs": {"n_initial_points": 3}},
    ),
    "halving": (None, {"random_state": 0}),
    "optuna": (OptunaSearchCV, {"n_iter": 4, "random_state": 0}),
}


@pytest.mark.parametrize("method", list(ENGINES))
def test_one_space_drives_every_engine_over_a_pipeline(method, data):
    if method == "optuna":
        pytest.importorskip("optuna")
    X, y = data
    expected_class, options = ENGINES[method]
    search = make_search(pipeline(), full_space(), method, cv=2, **options)
    if expected_class is not None:
        assert isinstance(search, expected_class)
    search.fit(X, y)

    best = search.best_params_
    assert type(best["nnclassifier__module__hidden_layer_sizes"]) is tuple
    assert best["nnclassifier__module__hidden_layer_sizes"] in TUPLES
    assert best["nnclassifier__lr_schedule"] in ("constant", STEP)
    assert 1e-3 <= best["nnclassifier__lr"] <= 1e-1
    assert 16 <= best["nnclassifier__batch_size"] <= 64
    for params in search.cv_results_["params"]:
        assert params["nnclassifier__module__hidden_layer_sizes"] in TUPLES
    fitted = search.best_estimator_.named_steps["nnclassifier"]
    assert fitted.module.hidden_layer_sizes == best["nnclassifier__module__hidden_layer_sizes"]
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


CLASS_WEIGHTS = ["balanced", None, {0: 1, 1: 5}]


@pytest.mark.parametrize("method", ["grid", "random", "bayes", "optuna"])
def test_class_weight_choices_are_searchable_in_every_engine(method, data, tmp_path):
    if method == "optuna":
        pytest.importorskip("optuna")
    X, y = data
    options = {"grid": {}, "random": {"n_iter": 3, "random_state": 0},
               "bayes": {"n_iter": 4, "random_state": 0, "optimizer_kwargs": {"n_initial_points": 3}},
               # a JSON storage: the dict choice is stored as its key
               "optuna": {"n_iter": 4, "random_state": 0,
                          "storage": f"sqlite:///{tmp_path / 'cw.db'}", "study_name": "cw"}}[method]
    space = SearchSpace({"class_weight": Categorical(CLASS_WEIGHTS)})
    search = make_search(pipeline(), space, method, cv=2, **options).fit(X, y)
    tried = [params["nnclassifier__class_weight"] for params in search.cv_results_["params"]]
    assert all(any(choice == value and type(choice) is type(value) for value in CLASS_WEIGHTS)
               for choice in tried)
    if method == "grid":
        assert tried == CLASS_WEIGHTS
    best = search.best_params_["nnclassifier__class_weight"]
    assert search.best_estimator_.named_steps["nnclassifier"].class_weight == best
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_grid_spaces_log_ranges_geometrically(data):
    search = make_search(pipeline(), {"lr": Real(1e-3, 1e-1, log=True)}, "grid")
    assert search.param_grid == {"nnclassifier__lr": [1e-3, 1e-2, 1e-1]}


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
def test_bayes_search_records_diverging_fits_as_nan_and_finishes(data):
    X, y = data
    # Plain SGD: lr up to 1e30 overflows the loss on most of the log range.
    net = NNClassifier(MLP((8,)), optimizer="sgd", batch_size=16, max_epochs=2, random_state=0)
    space = {"lr": Real(1e-3, 1e30, log=True), "module__width": Integer(4, 16)}
    search = make_search(
        net, space, "bayes", n_iter=8, cv=2, random_state=0,
        optimizer_kwargs={"n_initial_points": 4},
    )
    with pytest.warns(FitFailedWarning, match="DivergenceError"):
        search.fit(X, y)

    scores = search.cv_results_["mean_test_score"]
    failed = np.isnan(scores)
    assert len(scores) == 8
    assert failed.any() and not failed.all()
    assert search.best_params_["lr"] < 1e15
    assert np.isfinite(search.best_score_)
    # Each failure was told to the optimizer as the worst finite score.
    told = -np.asarray(search.optimizers_[0].yi)
    assert np.isfinite(told).all()
    np.testing.assert_allclose(told[failed], np.nanmin(scores))
    np.testing.assert_allclose(told[~failed], scores[~failed])
    # sklearn's all-fits-failed check is back in place for other searches.
    assert sk_search._warn_or_raise_about_fit_failures is _warn_or_raise_about_fit_failures


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.FitFailedWarning")
def test_bayes_search_handles_subspaces_batches_and_multiple_metrics(data):
    X, y = data
    net = NNClassifier(MLP((8,)), optimizer="sgd", batch_size=16, max_epochs=2, random_state=0)
    spaces = [
        ({"lr": Real(1e-3, 1e30, log=True)}, 3),
        {"module__hidden_layer_sizes": TUPLES, "lr": Categorical([0.01, 1e25])},
    ]
    search = RobustBayesSearchCV(
        net, spaces, n_iter=4, n_points=2, cv=2, error_score=np.nan, random_state=0,
        scoring=["accuracy", "neg_log_loss"], refit="accuracy",
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == search.total_iterations == 7
    assert np.isnan(search.cv_results_["mean_test_accuracy"]).any()
    assert all(np.isfinite(opt.yi).all() for opt in search.optimizers_)
    assert search.best_params_["lr"] < 1e15


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
def test_bayes_search_where_every_fit_fails_says_so(data):
    X, y = data
    net = NNClassifier(MLP((4,)), optimizer="sgd", batch_size=16, max_epochs=2, random_state=0)
    search = make_search(net, {"lr": Real(1e25, 1e30, log=True)}, "bayes", n_iter=2, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitFailedWarning)
        with pytest.raises(ValueError, match="All the 2 candidates of the Bayesian search failed"):
            search.fit(X, y)


def test_robust_bayes_search_takes_raw_skopt_tuple_categories(data):
    X, y = data
    # Out of the box skopt fails on this space with "can only convert an
    # array of size 1 to a Python scalar".
    space = {
        "module__hidden_layer_sizes": skopt.space.Categorical(TUPLES),
        "random_state": [None, 0],
        "lr": (1e-3, 1e-1, "log-uniform"),
    }
    net = NNClassifier(MLP(), max_epochs=2, random_state=0)
    search = RobustBayesSearchCV(net, space, n_iter=3, cv=2, random_state=0)
    search.fit(X, y)
    assert type(search.best_params_["module__hidden_layer_sizes"]) is tuple
    assert search.total_iterations == 3
    assert clone(search).get_params()["search_spaces"] == space


def test_fitted_bayes_search_survives_a_pickle_round_trip(data, tmp_path):
    X, y = data
    search = make_search(pipeline(), full_space(), "bayes", n_iter=2, cv=2, random_state=0)
    search.fit(X, y)
    joblib.dump(search, tmp_path / "search.joblib")
    loaded = joblib.load(tmp_path / "search.joblib")
    assert loaded.best_params_ == search.best_params_
    np.testing.assert_array_equal(loaded.predict(X), search.predict(X))


def test_make_search_keeps_names_aimed_at_other_pipeline_steps(data):
    X, y = data
    space = {"lr": [0.01, 0.1], "standardscaler__with_mean": [True, False]}
    search = make_search(pipeline(), space, "grid", cv=2).fit(X, y)
    assert set(search.best_params_) == {"nnclassifier__lr", "standardscaler__with_mean"}


def test_make_search_with_an_explicit_prefix_uses_it():
    search = make_search(pipeline(), {"nnclassifier__lr": [0.1]}, "grid", prefix="")
    assert search.param_grid == {"nnclassifier__lr": [0.1]}


@pytest.mark.parametrize("estimator", [pipeline(), NNClassifier()], ids=["pipeline", "bare"])
def test_make_search_names_the_valid_parameters_for_an_unknown_one(estimator):
    message = "Invalid parameter 'learning_rate' for estimator NNClassifier"
    with pytest.raises(ValueError, match=message):
        make_search(estimator, {"learning_rate": [0.1]}, "grid")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"method": "tpe"},
            r"method must be one of \['asha', 'bayes', 'grid', 'halving', 'optuna', 'random'\]; got 'tpe'",
        ),
        ({"method": "random", "grid_points": 2}, "grid_points only applies to method='grid'"),
        ({"space": {}}, "at least one dimension"),
    ],
)
def test_make_search_rejects_bad_arguments(kwargs, message):
    kwargs = {"space": {"lr": [0.1]}, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_search(pipeline(), **kwargs)


def test_halving_search_spends_epochs_as_its_resource():
    search = make_search(pipeline(max_epochs=4), {"lr": [0.01, 0.1]}, "halving")
    assert search.resource == "nnclassifier__max_epochs"
    assert search.max_resources == 4
    with pytest.raises(ValueError, match="'nnclassifier__max_epochs' is the halving resource"):
        make_search(pipeline(), {"max_epochs": [2, 3]}, "halving")


def test_default_space_covers_the_optimizer_schedule_and_network():
    space = default_space(NNClassifier(MLP((32,))))
    assert space["lr"] == Real(1e-4, 1e-1, log=True)
    for name in ["batch_size", "optimizer", "lr_schedule", "weight_decay",
                 "module__width", "module__n_layers", "module__dropout"]:
        assert name in space
    assert not any(name.startswith(("pruning", "distillation")) for name in space)


class _RecipeSpec(BaseEstimator):
    """Stands in for a Pruning or Distillation spec: only its params matter."""

    def __init__(self, amount=0.5, schedule="one_shot", temperature=4.0, alpha=0.5):
        self.amount = amount
        self.schedule = schedule
        self.temperature = temperature
        self.alpha = alpha


def test_default_space_adds_pruning_and_distillation_only_when_set():
    net = NNRegressor(MLP(), pruning=_RecipeSpec(), distillation=_RecipeSpec())
    space = default_space(net)
    for name in ["pruning__amount", "pruning__schedule",
                 "distillation__temperature", "distillation__alpha"]:
        assert name in space
    assert "pruning__amount" not in default_space(net.set_params(pruning=None))


def test_default_space_pins_the_default_mlp_so_its_shape_is_searchable(data):
    X, y = data
    space = default_space(NNClassifier())
    (pinned,) = space["module"].choices
    assert isinstance(pinned, MLP) and pinned.get_params() == MLP().get_params()
    search = make_search(
        NNClassifier(max_epochs=2, random_state=0), None, "random", n_iter=2, cv=2, random_state=0
    ).fit(X, y)
    best = search.best_estimator_.module
    assert best.width == search.best_params_["module__width"]


def test_default_space_for_a_pipeline_carries_the_step_prefix():
    space = default_space(pipeline())
    assert "nnclassifier__lr" in space
    assert all(name.startswith("nnclassifier__") for name in space)


def test_default_space_refuses_a_non_skopt_nn_estimator():
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(TypeError, match="needs a skopt_nn estimator.*got LogisticRegression"):
        default_space(LogisticRegression())


@pytest.mark.slow
def test_search_runs_on_a_dask_local_cluster(data):
    distributed = pytest.importorskip("dask.distributed")
    X, y = data
    search = make_search(
        pipeline(), full_space(), "bayes", n_iter=2, n_points=2, cv=2, n_jobs=2, random_state=0
    )
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as tasks, joblib.parallel_config(backend="dask"):
            search.fit(X, y)
    assert tasks.data  # the fits ran on the cluster's workers
    assert len(search.cv_results_["params"]) == 2
    assert type(search.best_params_["nnclassifier__module__hidden_layer_sizes"]) is tuple
    serial = make_search(
        pipeline(), full_space(), "bayes", n_iter=2, n_points=2, cv=2, n_jobs=1, random_state=0
    ).fit(X, y)
    np.testing.assert_array_equal(
        search.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"]
    )


@pytest.mark.slow
def test_search_runs_on_ray_joblib_backend(data):
    ray = pytest.importorskip("ray")
    from ray.util.joblib import register_ray

    X, y = data
    register_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        search = make_search(pipeline(), {"lr": [0.01, 0.1]}, "grid", cv=2, n_jobs=2)
        with joblib.parallel_config(backend="ray"):
            search.fit(X, y)
    finally:
        ray.shutdown()
    assert len(search.cv_results_["params"]) == 2
