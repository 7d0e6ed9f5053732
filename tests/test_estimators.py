import pickle
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from torch import nn

from skopt_nn import CNN, MLP, DivergenceError, LRSchedule, NNClassifier, NNRegressor, TorchModule

FAST = dict(lr=0.01, max_epochs=30, random_state=0)


def test_string_labels_come_back_as_given(iris):
    X, y = iris
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = NNClassifier(MLP((16,)), **FAST).fit(X, labels)
    assert set(clf.predict(X)) <= set(labels)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert clf.score(X, labels) > 0.9


def test_bool_labels(iris):
    X, y = iris
    yb = y == 0
    pred = NNClassifier(MLP((8,)), **FAST).fit(X, yb).predict(X)
    assert pred.dtype == bool
    assert (pred == yb).mean() > 0.95


def test_pandas_dataframe_sets_feature_names(iris):
    pd = pytest.importorskip("pandas")
    X, y = iris
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = NNClassifier(MLP((8,)), **FAST).fit(df, pd.Series(y))
    assert list(clf.feature_names_in_) == ["a", "b", "c", "d"]
    assert clf.predict(df).shape == (len(df),)


def test_pipeline_with_column_transformer():
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    df = pd.DataFrame({"num": rng.normal(size=200), "cat": rng.choice(["a", "b", "c"], size=200)})
    y = (df["num"] > 0) ^ (df["cat"] == "a")
    pre = ColumnTransformer([("num", StandardScaler(), ["num"]), ("cat", OneHotEncoder(), ["cat"])])
    model = make_pipeline(pre, NNClassifier(MLP((32,)), lr=0.02, max_epochs=60, random_state=0))
    assert model.fit(df, y).score(df, y) > 0.9


@pytest.mark.parametrize("search_cls", [GridSearchCV, RandomizedSearchCV])
def test_sklearn_searches_tune_recipe_and_module(iris, search_cls):
    X, y = iris
    grid = {
        "lr": [0.003, 0.03],
        "optimizer": ["adam", "sgd"],
        "lr_schedule": ["constant", "cosine"],
        "module__hidden_layer_sizes": [(8,), (16, 8)],
    }
    est = NNClassifier(MLP(), max_epochs=5, random_state=0)
    kw = {"n_iter": 4, "random_state": 0} if search_cls is RandomizedSearchCV else {}
    search = search_cls(est, grid, cv=3, error_score="raise", **kw).fit(X, y)
    assert isinstance(search.best_params_["module__hidden_layer_sizes"], tuple)
    assert search.best_estimator_.module_[0].out_features == search.best_params_["module__hidden_layer_sizes"][0]
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_bayes_search_over_recipe(iris):
    skopt = pytest.importorskip("skopt")
    from skopt.space import Categorical, Integer, Real

    X, y = iris
    space = {
        "lr": Real(1e-3, 1e-1, prior="log-uniform"),
        "optimizer": Categorical(["adam", "sgd"]),
        "lr_schedule": Categorical(["constant", "onecycle"]),
        "module__width": Integer(4, 32),
    }
    search = skopt.BayesSearchCV(
        NNClassifier(MLP(), max_epochs=5, random_state=0), space, n_iter=5, cv=3, random_state=0,
        error_score="raise",
    ).fit(X, y)
    assert search.best_params_["optimizer"] in {"adam", "sgd"}
    assert search.best_estimator_.module_[0].out_features == search.best_params_["module__width"]


def test_nested_schedule_options_are_searchable(iris):
    X, y = iris
    est = NNClassifier(MLP((8,)), lr_schedule=LRSchedule("step", step_size=1), max_epochs=3, random_state=0)
    search = GridSearchCV(est, {"lr_schedule__gamma": [0.1, 0.5]}, cv=2, error_score="raise").fit(X, y)
    assert search.best_params_["lr_schedule__gamma"] in (0.1, 0.5)
    lrs = search.best_estimator_.history_[:, "lr"]
    assert lrs[1] == pytest.approx(lrs[0] * search.best_params_["lr_schedule__gamma"])


@pytest.mark.slow
def test_joblib_roundtrip_in_fresh_process(tmp_path, iris):
    X, y = iris
    clf = NNClassifier(MLP((16,)), **FAST).fit(X, y)
    path = tmp_path / "model.joblib"
    joblib.dump(clf, path)
    np.save(tmp_path / "X.npy", X)
    code = textwrap.dedent(f"""
        import joblib, numpy as np
        m = joblib.load({str(path)!r})
        np.save({str(tmp_path / 'p.npy')!r}, m.predict_proba(np.load({str(tmp_path / 'X.npy')!r})))
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), clf.predict_proba(X))


def _optimizer_state_size(model):
    net = pickle.loads(pickle.dumps(model)).net_
    return len(net.optimizer_.state_dict()["state"])


def test_pickle_holds_optimizer_state_only_with_warm_start(iris):
    X, y = iris
    cold = NNClassifier(MLP((16,)), **FAST).fit(X, y)
    warm = NNClassifier(MLP((16,)), warm_start=True, **FAST).fit(X, y)
    assert _optimizer_state_size(cold) == 0
    assert _optimizer_state_size(warm) > 0
    assert len(pickle.dumps(cold)) < len(pickle.dumps(warm))


def test_same_random_state_gives_identical_predictions(iris):
    X, y = iris
    est = NNClassifier(MLP((16,), dropout=0.2), optimizer="sgd", early_stopping=True, **FAST)
    p1 = est.fit(X, y).predict_proba(X)
    p2 = est.fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    other = NNClassifier(MLP((16,), dropout=0.2), optimizer="sgd", lr=0.01, max_epochs=30, random_state=1)
    assert not np.array_equal(p1, other.fit(X, y).predict_proba(X))


def test_fit_does_not_change_global_torch_rng(iris):
    X, y = iris
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    NNClassifier(MLP((4,)), max_epochs=2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_divergence_raises_clear_error(iris):
    X, y = iris
    with pytest.raises(DivergenceError, match="diverged.*lower lr"):
        NNClassifier(MLP((16,)), optimizer="sgd", lr=1e6, max_epochs=5, random_state=0).fit(X * 1e3, y)
    assert issubclass(DivergenceError, ValueError)


def test_failed_fit_keeps_previous_model(iris):
    X, y = iris
    clf = NNClassifier(MLP((16,)), **FAST).fit(X, y)
    before = clf.predict_proba(X)
    clf.set_params(optimizer="sgd", lr=1e6)
    with pytest.raises(DivergenceError):
        clf.fit(X * 1e3, y)
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    with pytest.raises(ValueError):
        clf.fit(X[:, :2], y)  # fails validation after a new n_features_in_ would be set
    assert clf.n_features_in_ == 4
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_failed_warm_start_fit_restores_weights(iris):
    X, y = iris
    clf = NNClassifier(MLP((16,)), warm_start=True, **FAST).fit(X, y)
    before = clf.predict_proba(X)
    clf.set_params(optimizer="sgd", lr=1e6)
    with pytest.raises(DivergenceError):
        clf.fit(X * 1e3, y)
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    # and the restored model is as lean as a fitted one
    assert clf.net_.callbacks_ == [] and clf.net_.train_split is None


@pytest.mark.parametrize(
    "X, message",
    [
        (np.array([[np.nan, 1.0], [1.0, 2.0]]), "Input X contains NaN"),
        (np.array([[np.inf, 1.0], [1.0, 2.0]]), "Input X contains infinity"),
        (np.empty((0, 2)), "0 sample"),
        (np.array([1.0, 2.0]), "Expected 2D array"),
        (np.array([[1 + 1j, 2], [3, 4]]), "Complex data not supported"),
    ],
)
def test_bad_input_gets_sklearn_errors(X, message):
    y = np.array([0, 1])[: max(len(X) if not sp.issparse(X) else 2, 0)] if X.ndim > 1 else np.array([0, 1])
    with pytest.raises((ValueError, TypeError), match=message):
        NNClassifier(max_epochs=1).fit(X, y)


def test_wrong_feature_count_and_unfitted_predict(iris):
    X, y = iris
    with pytest.raises(NotFittedError):
        NNClassifier().predict(X)
    clf = NNClassifier(MLP((4,)), max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but NNClassifier is expecting 4 features"):
        clf.predict(X[:, :3])


def test_continuous_target_rejected_by_classifier(iris):
    X, _ = iris
    with pytest.raises(ValueError, match="Unknown label type"):
        NNClassifier(max_epochs=1).fit(X, np.linspace(0, 1, len(X)))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"optimizer": "adamx"}, r"'optimizer'.*\['adagrad', 'adam', 'adamw', 'rmsprop', 'sgd'\]"),
        ({"lr_schedule": "cosin"}, r"'lr_schedule'.*'cosine'.*'onecycle'"),
        ({"lr_schedule": LRSchedule("cosine", gama=2)}, r"Unknown option.*gama.*eta_min"),
        ({"lr": -1.0}, r"'lr' parameter of NNClassifier must be a float in the range \(0.0, inf\)"),
        ({"module": "big"}, r"'module' parameter"),
        ({"module": MLP(activation="sigmoidd")}, r"'activation'.*'relu'"),
        ({"device": "gpu9"}, r"'device' parameter"),
    ],
)
def test_invalid_hyperparameters_fail_at_fit_naming_the_parameter(iris, params, message):
    X, y = iris
    est = NNClassifier(max_epochs=1)
    est.set_params(**params)  # never raises
    with pytest.raises(ValueError, match=message):
        est.fit(X, y)


def test_registry_names_are_case_insensitive(iris):
    X, y = iris
    clf = NNClassifier(MLP((4,)), optimizer="AdamW", lr_schedule="Cosine", max_epochs=2).fit(X, y)
    assert type(clf.net_.optimizer_).__name__ == "AdamW"


def test_custom_optimizer_class(iris):
    X, y = iris
    clf = NNClassifier(MLP((4,)), optimizer=torch.optim.NAdam, max_epochs=2).fit(X, y)
    assert isinstance(clf.net_.optimizer_, torch.optim.NAdam)


def test_mlp_depth_and_width_from_scalars(iris):
    X, y = iris
    clf = NNClassifier(MLP(n_layers=3, width=7), max_epochs=1).fit(X, y)
    linears = [m for m in clf.module_ if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [7, 7, 7, 3]
    clf.set_params(module__n_layers=1).fit(X, y)
    assert len([m for m in clf.module_ if isinstance(m, nn.Linear)]) == 2


def test_cnn_runs_on_digits_after_scaler(digits):
    X, y = digits
    model = make_pipeline(
        StandardScaler(),
        NNClassifier(CNN(input_shape=(1, 8, 8), channels=(8, 16), hidden=32), lr=0.005,
                     batch_size=32, max_epochs=5, random_state=0),
    )
    assert model.fit(X[:1200], y[:1200]).score(X[1200:], y[1200:]) > 0.85


def test_cnn_rejects_wrong_input_shape(digits):
    X, y = digits
    with pytest.raises(ValueError, match="needs 784 features"):
        NNClassifier(CNN(), max_epochs=1).fit(X, y)


class _Net(nn.Module):
    def __init__(self, n_features_in, n_outputs, hidden=8):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features_in, hidden), nn.Tanh(), nn.Linear(hidden, n_outputs))

    def forward(self, x):
        return self.body(x)


def test_torch_module_kwargs_are_searchable(iris):
    X, y = iris
    est = NNClassifier(TorchModule(_Net), max_epochs=2, random_state=0)
    search = GridSearchCV(est, {"module__hidden": [3, 5]}, cv=2, error_score="raise").fit(X, y)
    assert search.best_estimator_.module_.body[0].out_features == search.best_params_["module__hidden"]
    assert NNClassifier(_Net, max_epochs=1).fit(X, y).module_.body[0].out_features == 8


@pytest.mark.parametrize(
    "name", ["constant", "step", "multistep", "exponential", "cosine", "cosine_restarts", "onecycle", "plateau", "linear"]
)
def test_every_schedule_trains(iris, name):
    X, y = iris
    clf = NNClassifier(MLP((16,)), lr=0.05, lr_schedule=name, max_epochs=30, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.85
    assert len(clf.history_[:, "lr"]) == clf.n_iter_


def test_onecycle_step_count_follows_training_rows(iris):
    X, y = iris
    est = NNClassifier(MLP((4,)), lr=0.1, lr_schedule="onecycle", batch_size=10, max_epochs=4,
                       n_iter_no_change=100, early_stopping=True, validation_fraction=0.2, random_state=0)
    est.fit(X, y)
    # 120 training rows after the split -> 12 batches per epoch; the cycle ends at the last batch.
    batches = [sum("train_loss" in b for b in row["batches"]) for row in est.history_]
    assert batches == [12] * 4
    last_lr = est.net_.optimizer_.param_groups[0]["lr"]
    assert last_lr < 0.1 / 25 / 100


def test_warmup_ramps_learning_rate():
    lrs = LRSchedule("constant", warmup_epochs=2).preview(lr=1.0, max_epochs=4, steps_per_epoch=2)
    assert lrs[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert lrs[4:] == [1.0] * 4


def test_early_stopping_restores_best_weights(iris):
    X, y = iris
    est = NNClassifier(MLP((32,)), lr=0.05, early_stopping=True, n_iter_no_change=3, max_epochs=200,
                       random_state=0).fit(X, y)
    valid = est.history_[:, "valid_loss"]
    assert est.n_iter_ < 200
    assert np.argmin(valid) == len(valid) - 1 - 3 or min(valid) <= valid[-1]


def test_partial_fit_needs_classes_then_learns(iris):
    X, y = iris
    clf = NNClassifier(MLP((16,)), lr=0.02, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    for _ in range(15):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert clf.n_iter_ == 15
    assert clf.score(X, y) > 0.85


def test_warm_start_continues_training(iris):
    X, y = iris
    clf = NNClassifier(MLP((16,)), max_epochs=3, n_iter_no_change=100, warm_start=True, random_state=0)
    clf.fit(X, y)
    first = clf.module_[0].weight.detach().clone()
    clf.fit(X, y)
    assert clf.n_iter_ == 6 and len(clf.loss_curve_) == 6
    assert not torch.equal(first, clf.module_[0].weight)


def test_regressor_multioutput_and_scale(iris):
    X, _ = iris
    y = np.c_[X[:, 0] * 1000 + 5000, X[:, 1] - 3]
    reg = NNRegressor(MLP((32,)), lr=0.01, max_epochs=80, random_state=0).fit(X, y)
    assert reg.predict(X).shape == (len(X), 2)
    assert reg.score(X, y) > 0.95
    assert NNRegressor(MLP((8,)), max_epochs=2).fit(X, y[:, 0]).predict(X).shape == (len(X),)


def test_float32_input_is_not_copied(iris):
    from skopt_nn.training.data import as_float_tensor

    X = np.ascontiguousarray(iris[0], dtype=np.float32)
    assert as_float_tensor(X).data_ptr() == X.ctypes.data
    X.setflags(write=False)
    assert as_float_tensor(X).data_ptr() == X.ctypes.data


def test_pickle_stores_each_weight_once(iris):
    X, y = iris
    clf = NNClassifier(MLP((64, 64)), max_epochs=1).fit(X, y)
    weight_bytes = sum(p.numel() * p.element_size() for p in clf.module_.parameters())
    blob = pickle.dumps(clf)
    assert len(blob) < 1.3 * weight_bytes + 20_000
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("param", ["pruning", "distillation"])
def test_wrong_recipe_type_names_the_parameter(iris, param):
    X, y = iris
    with pytest.raises(ValueError, match=f"'{param}' parameter of NNClassifier must be None or a"):
        NNClassifier(max_epochs=1, **{param: "yes"}).fit(X, y)


def test_validation_score_is_recorded_with_early_stopping(iris):
    from sklearn.metrics import r2_score

    X, y = iris
    clf = NNClassifier(MLP((16,)), lr=0.05, early_stopping=True, validation_fraction=0.3,
                       max_epochs=15, n_iter_no_change=100, random_state=0).fit(X, y)
    scores = clf.history_[:, "valid_score"]
    assert len(scores) == 15 and scores[-1] > 0.8
    reg = NNRegressor(MLP((16,)), lr=0.01, early_stopping=True, validation_fraction=0.3,
                      max_epochs=30, n_iter_no_change=100, random_state=0)
    target = X[:, 0] * 50 + 10
    reg.fit(X[:, 1:], target)
    assert reg.history_[-1, "valid_score"] == pytest.approx(
        r2_score(target, reg.predict(X[:, 1:])), abs=0.1
    )


def test_the_classifier_signature_is_the_shared_one_plus_class_weight():
    # NNClassifier spells out its __init__ (sklearn reads parameters from the
    # signature, and the regressor takes no class_weight); a parameter added
    # to the shared constructor must reach it too, with the same default.
    import inspect

    from skopt_nn.training._base import BaseNN

    shared = inspect.signature(BaseNN.__init__).parameters
    own = dict(inspect.signature(NNClassifier.__init__).parameters)
    assert own.pop("class_weight").default is None
    assert [(p.name, p.default, p.kind) for p in own.values()] == [
        (p.name, p.default, p.kind) for p in shared.values()
    ]


@pytest.mark.parametrize("cls, epochs", [(NNClassifier, 200), (NNRegressor, 50)])
def test_auto_defaults_train_a_network_from_scratch_as_before(cls, epochs):
    # "auto" stands for sklearn-MLP-like settings unless the network's spec
    # (a pretrained Transformer) has its own fine-tuning recipe
    rng = np.random.RandomState(0)
    X = rng.normal(size=(150, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) if cls is NNClassifier else X[:, 0] + 0.1 * X[:, 1]
    auto = cls(MLP((8,)), n_iter_no_change=None, random_state=0).fit(X, y)
    explicit = cls(MLP((8,)), lr=1e-3, batch_size=128, max_epochs=epochs, lr_schedule="constant",
                   early_stopping=False, n_iter_no_change=None, random_state=0).fit(X, y)
    assert auto.n_iter_ == explicit.n_iter_ == epochs
    np.testing.assert_array_equal(auto.predict(X), explicit.predict(X))
    assert {auto.get_params()[k] for k in ("lr", "batch_size", "max_epochs", "lr_schedule", "early_stopping")} == {
        "auto"}
    with pytest.raises(ValueError, match="'lr' parameter of .* must be .* or a str among {'auto'}"):
        cls(lr="fast").fit(X, y)
