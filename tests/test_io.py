"""Pickle-free save/load: round trips, refusal of untrusted files, damaged files."""

import json
import os
import pickle
import warnings

import joblib
import numpy as np
import pytest
import safetensors.torch
import torch
from sklearn.datasets import load_diabetes, load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from skopt_nn import CNN, MLP, DivergenceError, Distillation, LRSchedule, NNClassifier, NNRegressor, TorchModule
from skopt_nn.persistence.io import FORMAT_VERSION, UntrustedTypeError, _digest, load, save
from skopt_nn.specs.pruning import Pruning

FAST = dict(lr=0.02, max_epochs=8, batch_size=32, random_state=0)


class TinyNet(nn.Module):
    def __init__(self, n_features_in, n_outputs, hidden=6, act=nn.Tanh):
        super().__init__()
        self.hidden = nn.Linear(n_features_in, hidden)
        self.act = act()
        self.out = nn.Linear(hidden, n_outputs)

    def forward(self, x):
        return self.out(self.act(self.hidden(x)))


@pytest.fixture
def path(tmp_path):
    return tmp_path / "model.safetensors"


@pytest.fixture(scope="module")
def digits_small():
    X, y = load_digits(return_X_y=True)
    return (X[:300] / 16.0).astype(np.float32), y[:300]


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X[:200], y[:200]


def round_trip(model, path, **kwargs):
    save(model, path)
    return load(path, **kwargs)


def assert_same_predictions(original, loaded, X):
    np.testing.assert_array_equal(loaded.predict(X), original.predict(X))
    if hasattr(original, "predict_proba"):
        np.testing.assert_array_equal(loaded.predict_proba(X), original.predict_proba(X))


def assert_same_fitted_attributes(original, loaded):
    for name in ("classes_", "n_features_in_", "feature_names_in_", "n_outputs_", "n_iter_",
                 "loss_curve_", "n_params_", "sparsity_", "pruning_summary_"):
        if hasattr(original, name):
            a, b = getattr(original, name), getattr(loaded, name)
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(b, a)
                assert b.dtype == a.dtype
            else:
                assert b == a, name
        else:
            assert not hasattr(loaded, name), name
    if original.warm_start:  # a model that goes on training keeps its history in the file
        assert len(loaded.history_) == len(original.history_)
        assert loaded.history_[-1, "train_loss"] == original.history_[-1, "train_loss"]
    else:  # a finished fit's file holds its losses (loss_curve_), not the per-epoch history
        assert len(loaded.history_) == 0 < len(original.history_)


# -- round trips ------------------------------------------------------------------
@pytest.mark.parametrize(
    "labels",
    [
        pytest.param(lambda y: np.array(["setosa", "versicolor", "virginica"])[y], id="str"),
        pytest.param(lambda y: np.array(["setosa", "versicolor", "virginica"], dtype=object)[y], id="object"),
        pytest.param(lambda y: y + 10, id="int"),
        pytest.param(lambda y: y == 0, id="bool"),
    ],
)
def test_classifier_round_trip_predicts_identically_for_any_label_type(iris, path, labels):
    X, y = iris
    y = labels(y)
    clf = NNClassifier(MLP((8,)), **FAST).fit(X, y)
    loaded = round_trip(clf, path)
    assert_same_predictions(clf, loaded, X)
    assert_same_fitted_attributes(clf, loaded)
    assert loaded.predict(X).dtype == clf.predict(X).dtype
    assert repr(loaded) == repr(clf)


def test_feature_names_and_path_parameters_round_trip(iris, path, tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = iris
    df = pd.DataFrame(X, columns=["sepal_l", "sepal_w", "petal_l", "petal_w"])
    clf = NNClassifier(MLP((8,)), **FAST).fit(df, y)
    # A Path-valued parameter; set after fitting, as logging needs tensorboard.
    clf.set_params(tensorboard_dir=tmp_path / "runs")
    loaded = round_trip(clf, path)
    assert list(loaded.feature_names_in_) == list(df.columns)
    assert loaded.tensorboard_dir == tmp_path / "runs"
    assert_same_predictions(clf, loaded, df)
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(df.rename(columns={"sepal_l": "x"}))


def test_regressor_round_trip_keeps_target_scaler(diabetes, path):
    X, y = diabetes
    reg = NNRegressor(MLP((8,)), **FAST).fit(X, y)
    loaded = round_trip(reg, path)
    assert_same_predictions(reg, loaded, X)
    mean, scale = loaded._y_scaler_
    np.testing.assert_array_equal(mean, reg._y_scaler_[0])
    np.testing.assert_array_equal(scale, reg._y_scaler_[1])
    assert mean.dtype == np.float64


def test_multi_output_regressor_round_trip(diabetes, path):
    X, y = diabetes
    Y = np.column_stack([y, -2 * y])
    reg = NNRegressor(MLP((8,)), **FAST).fit(X, Y)
    loaded = round_trip(reg, path)
    assert loaded.predict(X).shape == (len(X), 2)
    assert_same_predictions(reg, loaded, X)


def test_cnn_with_schedule_round_trip(digits_small, path):
    X, y = digits_small
    clf = NNClassifier(
        CNN((1, 8, 8), channels=(4,), hidden=16), lr=0.01, max_epochs=2, random_state=0,
        lr_schedule=LRSchedule("cosine", warmup_epochs=1, eta_min=1e-4), optimizer="sgd",
    ).fit(X, y)
    loaded = round_trip(clf, path)
    assert_same_predictions(clf, loaded, X)
    assert loaded.lr_schedule == clf.lr_schedule
    assert loaded.optimizer == "sgd"


def test_structured_pruning_saves_the_real_smaller_network(iris, path):
    X, y = iris
    clf = NNClassifier(
        MLP((16, 8), batch_norm=True), pruning=Pruning("ln_structured", amount=0.5), **FAST
    ).fit(X, y)
    assert clf.module_[0].out_features == 8  # physically smaller than the spec builds
    loaded = round_trip(clf, path)
    assert [tuple(p.shape) for p in loaded.module_.parameters()] == [
        tuple(p.shape) for p in clf.module_.parameters()
    ]
    assert loaded.module_[0].out_features == 8
    assert loaded.module_[1].num_features == 8
    assert_same_predictions(clf, loaded, X)
    assert_same_fitted_attributes(clf, loaded)


def test_structured_pruning_of_a_cnn_round_trips(digits_small, path):
    X, y = digits_small
    clf = NNClassifier(
        CNN((1, 8, 8), channels=(4, 8), hidden=8), lr=0.01, max_epochs=2, random_state=0,
        pruning=Pruning("ln_structured", amount=0.5),
    ).fit(X, y)
    loaded = round_trip(clf, path)
    assert loaded.n_params_ == clf.n_params_ < NNClassifier(
        CNN((1, 8, 8), channels=(4, 8), hidden=8), max_epochs=1
    ).fit(X[:20], y[:20]).n_params_
    assert_same_predictions(clf, loaded, X)


@pytest.mark.parametrize("method", ["l1_unstructured", "random_unstructured", "global_l1"])
def test_unstructured_pruning_round_trip_keeps_the_zeros(iris, path, method):
    X, y = iris
    clf = NNClassifier(MLP((16,)), pruning=Pruning(method, amount=0.6), **FAST).fit(X, y)
    loaded = round_trip(clf, path)
    assert loaded.sparsity_ == clf.sparsity_ > 0.5
    zeros = sum(int((p == 0).sum()) for p in loaded.module_.parameters())
    assert zeros == sum(int((p == 0).sum()) for p in clf.module_.parameters())
    assert repr(loaded.pruning) == repr(clf.pruning)
    assert_same_predictions(clf, loaded, X)


@pytest.mark.parametrize("augment", [None, "mixup"])
def test_distilled_student_round_trips_without_its_teacher(iris, path, augment):
    X, y = iris
    teacher = NNClassifier(MLP((32,)), **FAST)
    student = NNClassifier(
        MLP((4,)),
        distillation=Distillation(teacher, alpha=0.7, augment=augment, keep_teacher=True),
        **FAST,
    ).fit(X, y)
    assert hasattr(student, "teacher_")
    loaded = round_trip(student, path)
    assert_same_predictions(student, loaded, X)
    assert loaded.distillation.teacher is None
    assert loaded.distillation.alpha == 0.7 and loaded.distillation.augment == augment
    assert not hasattr(loaded, "teacher_")
    # Only the student's weights are in the file.
    stored = safetensors.torch.load_file(str(path))
    weights = [key for key in stored if key.startswith("net")]
    assert len(weights) == len(student.module_.state_dict())
    # Fitting again needs a teacher, and says so.
    with pytest.raises(ValueError, match="'teacher' parameter of Distillation"):
        loaded.fit(X, y)
    loaded.set_params(distillation__teacher=RandomForestClassifier(n_estimators=5)).fit(X, y)


def test_torch_module_needs_its_class_trusted(iris, path):
    X, y = iris
    clf = NNClassifier(TorchModule(TinyNet, hidden=5, act=nn.ReLU), **FAST).fit(X, y)
    save(clf, path)
    with pytest.raises(UntrustedTypeError, match=r"TinyNet"):
        load(path)
    loaded = load(path, trusted=[TinyNet])
    assert type(loaded.module_) is TinyNet
    assert loaded.module.kwargs == {"hidden": 5, "act": nn.ReLU}
    assert_same_predictions(clf, loaded, X)
    by_name = load(path, trusted=[f"{TinyNet.__module__}.TinyNet"])
    assert_same_predictions(clf, by_name, X)


def test_module_given_as_a_class_round_trips(iris, path):
    X, y = iris
    clf = NNClassifier(TinyNet, **FAST).fit(X, y)
    assert_same_predictions(clf, round_trip(clf, path, trusted=[TinyNet]), X)


def test_pipeline_with_scalers_round_trips_and_keeps_feature_names(iris, path):
    pd = pytest.importorskip("pandas")
    X, y = iris
    df = pd.DataFrame(X * 10 + 3, columns=["a", "b", "c", "d"])
    pipe = make_pipeline(StandardScaler(), MinMaxScaler(), NNClassifier(MLP((8,)), **FAST)).fit(df, y)
    loaded = round_trip(pipe, path)
    assert_same_predictions(pipe, loaded, df)
    np.testing.assert_array_equal(loaded[0].mean_, pipe[0].mean_)
    assert list(loaded.feature_names_in_) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(df.rename(columns={"a": "z"}))


def test_pipeline_with_an_arbitrary_transformer_is_refused_at_save(iris, path):
    X, y = iris
    pipe = make_pipeline(FunctionTransformer(np.tanh), NNClassifier(MLP((4,)), max_epochs=1)).fit(X, y)
    with pytest.raises(TypeError, match=r"steps\['functiontransformer'\].func.*ufunc.*joblib"):
        save(pipe, path)
    assert not path.exists()


def test_unfitted_estimator_round_trips_as_a_configuration(path):
    est = NNRegressor(MLP(width=8, n_layers=2), optimizer=torch.optim.AdamW,
                      pruning=Pruning("global_l1", schedule="gradual"))
    loaded = round_trip(est, path)
    assert repr(loaded) == repr(est)
    assert loaded.optimizer is torch.optim.AdamW
    assert not hasattr(loaded, "net_")


def test_loaded_model_continues_training_with_warm_start(iris, path):
    X, y = iris
    clf = NNClassifier(MLP((8,)), **FAST).fit(X, y)
    loaded = round_trip(clf, path).set_params(warm_start=True, max_epochs=3)
    loaded.fit(X, y)
    assert loaded.n_iter_ == clf.n_iter_ + 3
    assert len(loaded.loss_curve_) == len(clf.loss_curve_) + 3
    loaded.partial_fit(X, y)
    assert loaded.n_iter_ == clf.n_iter_ + 4


def test_callbacks_and_module_instances_are_refused_with_the_reason(iris, path):
    from skorch.callbacks import EpochTimer

    X, y = iris
    with pytest.raises(TypeError, match="callbacks=None"):
        save(NNClassifier(callbacks=[("timer", EpochTimer())]), path)
    with pytest.raises(TypeError, match="nn.Module instance.*TorchModule"):
        save(NNClassifier(nn.Linear(4, 3)), path)


def test_joblib_still_round_trips(iris, tmp_path):
    X, y = iris
    clf = NNClassifier(MLP((8,)), **FAST).fit(X, y)
    joblib.dump(clf, tmp_path / "m.joblib")
    assert_same_predictions(clf, joblib.load(tmp_path / "m.joblib"), X)


# -- files that try to run code --------------------------------------------------
class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_crafted(path, model_node, tensors=None):
    """A well-formed file (valid checksum) whose configuration says anything."""
    tensors = tensors or {}
    config = json.dumps({"format": "skopt_nn", "format_version": 1, "model": model_node})
    metadata = {"format": "skopt_nn", "format_version": "1", "config": config,
                "sha256": _digest(config, tensors)}
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))


@pytest.mark.parametrize("how", ["pickle", "joblib", "torch.save"])
def test_pickle_payload_is_refused_and_never_runs(tmp_path, path, how):
    marker = tmp_path / "pwned"
    if how == "pickle":
        path.write_bytes(pickle.dumps(_RunsCode(marker)))
    elif how == "joblib":
        joblib.dump(_RunsCode(marker), path)
    else:
        torch.save({"state": _RunsCode(marker)}, path)
    assert not marker.exists()
    with pytest.raises(ValueError, match="not a skopt_nn file.*joblib.load.*trust"):
        load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "node",
    [
        {"__object__": "os.system", "params": {"command": "touch {marker}"}},
        {"__object__": "skopt_nn.NNClassifier",
         "params": {"module": {"__class__": "os.system"}, "optimizer": {"__class__": "builtins.eval"}}},
        {"__object__": "subprocess.Popen", "params": {"args": {"__tuple__": ["touch", "{marker}"]}}},
        {"__object__": "torch.nn.functional.os.system", "params": {"command": "touch {marker}"}},
    ],
    ids=["object", "nested-classes", "popen", "dotted-escape"],
)
def test_config_naming_dangerous_callables_is_refused(tmp_path, path, node):
    marker = tmp_path / "pwned"
    write_crafted(path, json.loads(json.dumps(node).replace("{marker}", str(marker))))
    with pytest.raises(UntrustedTypeError, match="not trusted") as info:
        load(path)
    named = json.dumps(node)
    for bad in ("os.system", "builtins.eval", "subprocess.Popen"):
        if f'"{bad}"' in named:
            assert bad in str(info.value)
    assert not marker.exists()


def test_trusting_a_function_by_name_still_does_not_call_it(tmp_path, path):
    marker = tmp_path / "pwned"
    write_crafted(path, {"__object__": "os.system", "params": {"command": f"touch {marker}"}})
    with pytest.raises(ValueError, match="not a class"):
        load(path, trusted=["os.system"])
    assert not marker.exists()


def test_state_cannot_shadow_methods(path):
    write_crafted(path, {"__object__": "skopt_nn.NNClassifier", "params": {},
                         "state": {"predict": "boom"}})
    with pytest.raises(ValueError, match="cannot take the attribute 'predict'"):
        load(path)


# -- damaged files -----------------------------------------------------------------
@pytest.fixture
def saved(iris, path):
    X, y = iris
    save(NNClassifier(MLP((8,)), **FAST).fit(X, y), path)
    return path


def test_truncated_file_gets_a_clear_error(saved):
    data = saved.read_bytes()
    for cut in (len(data) - 10, 200, 4):
        saved.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="truncated"):
            load(saved)


def test_corrupted_weights_fail_the_checksum(saved):
    data = bytearray(saved.read_bytes())
    data[-3] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted: its checksum does not match"):
        load(saved)


def test_edited_configuration_fails_the_checksum(saved):
    data = saved.read_bytes()
    saved.write_bytes(data.replace(b"max_epochs", b"max_epochz"))
    with pytest.raises(ValueError, match="checksum"):
        load(saved)


def test_newer_format_version_is_refused(path):
    metadata = {"format": "skopt_nn", "format_version": str(FORMAT_VERSION + 1), "config": "{}"}
    path.write_bytes(safetensors.torch.save({}, metadata=metadata))
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}.*upgrade"):
        load(path)


def test_other_safetensors_files_are_not_taken_for_models(path):
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not one written by skopt_nn.save"):
        load(path)


def test_trusted_must_list_classes_or_names(saved):
    with pytest.raises(TypeError, match="trusted must"):
        load(saved, trusted=[3])


# -- resumable Bayesian searches ---------------------------------------------------
FITS = {"count": 0, "interrupt_at": None}


class CountingRegressor(NNRegressor):
    """Counts its fits, can play a Ctrl-C at a given fit, and fails above lr=1."""

    def fit(self, X, y):
        FITS["count"] += 1
        if FITS["count"] == FITS["interrupt_at"]:
            raise KeyboardInterrupt
        if self.lr > 1:
            raise DivergenceError("a stand-in for a diverging fit")
        return super().fit(X, y)


def bayes(path, n_iter, space=None):
    from skopt_nn import Real, make_search

    est = CountingRegressor(MLP((4,)), optimizer="sgd", max_epochs=2, batch_size=16, random_state=0)
    space = space or {"lr": Real(1e-4, 1e6, log=True)}
    return make_search(est, space, n_iter=n_iter, cv=2, random_state=0, checkpoint=str(path),
                       optimizer_kwargs={"n_initial_points": 3})


@pytest.fixture
def one_blas_thread():
    # skopt's Gaussian process is much slower when BLAS threads compete.
    with threadpool_limits(1):
        yield


@pytest.mark.slow
def test_interrupted_bayes_search_resumes_without_refitting(tmp_path, one_blas_thread):
    X, y = load_diabetes(return_X_y=True)
    X, y = X[:120], y[:120]
    path = tmp_path / "search.json"
    FITS.update(count=0, interrupt_at=2 * 4 + 1)  # during the 5th candidate
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the failed points' FitFailedWarnings
        bayes(path, n_iter=8).fit(X, y)
    stored = json.loads(path.read_text())["subspaces"][0]
    assert len(stored) == 4

    FITS.update(count=0, interrupt_at=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = bayes(path, n_iter=8).fit(X, y)
    assert FITS["count"] == 2 * (8 - 4) + 1  # the 4 new candidates and the refit
    results = search.cv_results_
    assert len(results["params"]) == 8
    replayed = [p["x"][0] for p in stored]
    assert [p["lr"] for p in results["params"][:4]] == replayed
    for k in range(2):
        np.testing.assert_array_equal(
            results[f"split{k}_test_score"][:4], [p["out"][k]["test_scores"] for p in stored]
        )
    assert np.isnan(results["mean_test_score"]).any()  # failed points replay as failures
    assert search.best_params_["lr"] == results["params"][int(np.nanargmax(results["mean_test_score"]))]["lr"]
    assert len(json.loads(path.read_text())["subspaces"][0]) == 8

    FITS.update(count=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = bayes(path, n_iter=8).fit(X, y)
    assert FITS["count"] == 1  # everything replayed; only the refit runs
    np.testing.assert_array_equal(again.cv_results_["mean_test_score"], results["mean_test_score"])


def test_checkpoint_of_another_search_is_refused(tmp_path, one_blas_thread):
    from skopt_nn import Real

    X, y = load_diabetes(return_X_y=True)
    path = tmp_path / "search.json"
    FITS.update(count=0, interrupt_at=None)
    small_lrs = {"lr": Real(1e-4, 1e-1, log=True)}
    bayes(path, n_iter=1, space=small_lrs).fit(X[:60], y[:60])
    with pytest.raises(ValueError, match="written by a different search"):
        bayes(path, n_iter=2, space={"lr": Real(1e-3, 1e-1, log=True)}).fit(X[:60], y[:60])
    path.write_text("not json")
    with pytest.raises(ValueError, match="not a readable search checkpoint"):
        bayes(path, n_iter=2, space=small_lrs).fit(X[:60], y[:60])


def test_checkpoint_is_for_bayesian_searches_only(tmp_path):
    from skopt_nn import make_search

    with pytest.raises(ValueError, match="checkpoint only applies to method='bayes'"):
        make_search(NNRegressor(), {"lr": [0.1, 0.01]}, "grid", checkpoint=str(tmp_path / "c.json"))


def test_loaded_model_trains_further_as_quietly_as_the_original(tmp_path, capsys):
    from sklearn.datasets import load_iris

    from skopt_nn import MLP, NNClassifier, load, save

    X, y = load_iris(return_X_y=True)
    clf = NNClassifier(MLP((8,)), max_epochs=2, verbose=1, warm_start=True, random_state=0).fit(X, y)
    save(clf, tmp_path / "m.safetensors")
    loaded = load(tmp_path / "m.safetensors")
    capsys.readouterr()
    loaded.fit(X, y)
    # verbose=1 draws a progress bar (stderr); skorch's epoch table would go to stdout
    assert "train_loss" not in capsys.readouterr().out


# -- a lean fitted model ----------------------------------------------------------
def _lean_models():
    recipe = dict(early_stopping=True, pruning=Pruning("ln_structured", amount=0.5),
                  lr_schedule=LRSchedule("cosine", warmup_epochs=1), n_iter_no_change=3)
    return [
        NNClassifier(MLP((16,)), verbose=1, **FAST, **recipe),
        NNRegressor(MLP((16,)), warm_start=True, **FAST, **recipe),
    ]


def _data_for(model, iris, diabetes):
    return iris if isinstance(model, NNClassifier) else diabetes


@pytest.mark.parametrize("model", _lean_models(), ids=lambda m: type(m).__name__)
def test_fitted_model_holds_no_training_machinery(model, iris, diabetes, capsys):
    skops_io = pytest.importorskip("skops.io")
    X, y = _data_for(model, iris, diabetes)
    model.fit(X, y)
    untrusted = skops_io.get_untrusted_types(data=skops_io.dumps(model))
    callable_types = [t for t in untrusted if t.startswith(("builtins.", "functools.", "skorch.callbacks."))]
    assert callable_types == []
    # what stays: our own classes, torch's, and skorch's history and data-set type
    assert all(t.startswith(("skopt_nn.", "torch.", "skorch.history.", "skorch.dataset.")) for t in untrusted)
    assert model.net_.callbacks_ == [] and model.net_.train_split is None
    # loading with exactly that list gives the same predictions
    loaded = skops_io.loads(skops_io.dumps(model), trusted=untrusted)
    assert_same_predictions(model, loaded, X)


@pytest.mark.parametrize("model", _lean_models(), ids=lambda m: type(m).__name__)
def test_lean_model_pickles_and_trains_on(model, iris, diabetes, tmp_path, capsys):
    X, y = _data_for(model, iris, diabetes)
    model.fit(X, y)
    method = "predict_proba" if isinstance(model, NNClassifier) else "predict"
    expected = getattr(model, method)(X)
    for loaded in (pickle.loads(pickle.dumps(model)), joblib.load(_joblib_dump(model, tmp_path))):
        np.testing.assert_array_equal(getattr(loaded, method)(X), expected)
        n_epochs = loaded.n_iter_
        if isinstance(loaded, NNClassifier):
            # (the cosine schedule has reached lr=0 at max_epochs)
            loaded.set_params(lr_schedule="constant").partial_fit(X, y)
            assert loaded.n_iter_ == n_epochs + 1
        else:  # warm_start=True
            loaded.set_params(early_stopping=False, n_iter_no_change=None, max_epochs=2).fit(X, y)
            assert loaded.n_iter_ == n_epochs + 2
        # the callbacks were built again for that fit, and dropped after it; a
        # finished fit was saved without its history, a warm-started one with it
        kept = n_epochs if loaded.warm_start else 0
        assert len(loaded.history_) == loaded.n_iter_ - n_epochs + kept and "lr" in loaded.history_[-1]
        assert loaded.net_.callbacks_ == []
        assert not np.array_equal(getattr(loaded, method)(X), expected)
        loaded.net_.set_params(lr=0.5)  # skorch's setters are back
    np.testing.assert_array_equal(getattr(model, method)(X), expected)


def _joblib_dump(model, tmp_path):
    target = tmp_path / "model.joblib"
    joblib.dump(model, target)
    return target


def test_saved_lean_model_loads_lean_and_warm_starts(iris, path):
    X, y = iris
    clf = NNClassifier(MLP((8,)), warm_start=True, early_stopping=True, **FAST).fit(X, y)
    loaded = round_trip(clf, path)
    assert_same_predictions(clf, loaded, X)
    assert loaded.net_.callbacks_ == []
    loaded.fit(X, y)
    assert loaded.n_iter_ > clf.n_iter_
