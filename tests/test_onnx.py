"""export_onnx: the ONNX graph predicts what the fitted model predicts."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler
from torch import nn

from skopt_nn import CNN, MLP, NNClassifier, NNRegressor, Pruning, export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

FAST = dict(lr=0.02, max_epochs=15, batch_size=32, random_state=0)


def run(path, X):
    session = ort.InferenceSession(str(path))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": np.asarray(X, dtype=np.float32)})))


@pytest.fixture(scope="module")
def raw_iris():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)  # unscaled, so the scaler in the graph matters


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True)


def test_standard_scaler_pipeline_classifier_matches_predict_proba(raw_iris, tmp_path):
    X, y = raw_iris
    model = make_pipeline(StandardScaler(), NNClassifier(MLP((16,)), **FAST)).fit(X, y)

    out = run(export_onnx(model, tmp_path / "clf.onnx"), X)

    np.testing.assert_allclose(out["probabilities"], model.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(out["label"], model.predict(X))


def test_regressor_predicts_in_original_units(diabetes, tmp_path):
    X, y = diabetes
    model = make_pipeline(StandardScaler(), NNRegressor(MLP((16,)), **FAST)).fit(X, y)

    out = run(export_onnx(model, tmp_path / "reg.onnx"), X)

    assert out["predictions"].shape == y.shape
    np.testing.assert_allclose(out["predictions"], model.predict(X), rtol=1e-4)
    assert abs(out["predictions"].mean() - y.mean()) < 20  # not standardised units


def test_multi_output_regressor(diabetes, tmp_path):
    X, y = diabetes
    Y = np.column_stack([y, -3 * y + 1000])
    reg = NNRegressor(MLP((8,)), **FAST).fit(X, Y)

    out = run(export_onnx(reg, tmp_path / "reg2.onnx"), X)

    assert out["predictions"].shape == (len(X), 2)
    np.testing.assert_allclose(out["predictions"], reg.predict(X), rtol=1e-4)


def test_structurally_pruned_net_exports_at_its_real_size(raw_iris, tmp_path):
    X, y = raw_iris
    model = make_pipeline(
        StandardScaler(),
        NNClassifier(MLP((16, 8), batch_norm=True), pruning=Pruning("ln_structured", amount=0.5), **FAST),
    ).fit(X, y)
    path = export_onnx(model, tmp_path / "pruned.onnx")

    weights = [tuple(t.dims) for t in onnx.load(str(path)).graph.initializer if len(t.dims) == 2]
    assert sorted(weights) == sorted([(8, 4), (4, 8), (3, 4)])  # from (16, 4), (8, 16), (3, 8)
    out = run(path, X)
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(X), atol=1e-5)


def test_pruned_1d_cnn_exports(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(120, 2 * 16)).astype(np.float32)
    y = (X[:, :16].mean(1) > X[:, 16:].mean(1)).astype(int)
    clf = NNClassifier(
        CNN(input_shape=(2, 16), channels=(8,), hidden=8), pruning=Pruning("ln_structured", amount=0.5), **FAST
    ).fit(X, y)
    assert [m.out_channels for m in clf.module_ if isinstance(m, nn.Conv1d)] == [4]

    out = run(export_onnx(clf, tmp_path / "cnn.onnx"), X)

    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(X), atol=1e-5)


def test_string_labels_come_back_as_strings_with_class_order_in_metadata(raw_iris, tmp_path):
    X, y = raw_iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = make_pipeline(StandardScaler(), NNClassifier(MLP((8,)), **FAST)).fit(X, names)
    path = export_onnx(model, tmp_path / "str.onnx")

    out = run(path, X)

    np.testing.assert_array_equal(out["label"], model.predict(X))
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(X), atol=1e-5)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["classes"]) == ["setosa", "versicolor", "virginica"]
    assert meta["task"] == "classification"


@pytest.mark.parametrize(
    "scalers",
    [
        [MinMaxScaler(feature_range=(-1, 1), clip=True)],
        [MaxAbsScaler()],
        [RobustScaler()],
        [StandardScaler(with_mean=False), "passthrough", RobustScaler(with_centering=False)],
    ],
    ids=["minmax-clip", "maxabs", "robust", "chain"],
)
def test_every_trusted_scaler_is_folded_in(raw_iris, tmp_path, scalers):
    X, y = raw_iris
    model = make_pipeline(*scalers, NNClassifier(MLP((8,)), **FAST)).fit(X[::2], y[::2])
    X_new = X * 1.3  # outside the training range: MinMaxScaler's clip must act
    out = run(export_onnx(model, tmp_path / "s.onnx"), X_new)
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(X_new), atol=1e-5)


def test_a_fitted_search_exports_its_best_estimator(raw_iris, tmp_path):
    X, y = raw_iris
    search = GridSearchCV(
        make_pipeline(StandardScaler(), NNClassifier(MLP((8,)), **FAST)), {"nnclassifier__lr": [0.01, 0.03]}, cv=2
    ).fit(X, y)
    out = run(export_onnx(search, tmp_path / "search.onnx"), X)
    np.testing.assert_allclose(out["probabilities"], search.predict_proba(X), atol=1e-5)


def test_unsupported_step_is_named(raw_iris, tmp_path):
    X, y = raw_iris
    model = make_pipeline(StandardScaler(), PCA(2), NNClassifier(MLP((4,)), max_epochs=1)).fit(X, y)
    with pytest.raises(TypeError, match=r"cannot convert the Pipeline step 'pca' \(PCA\)"):
        export_onnx(model, tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="got StandardScaler"):
        export_onnx(StandardScaler().fit(X), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_unfitted_models_raise_not_fitted_error(tmp_path):
    with pytest.raises(NotFittedError):
        export_onnx(NNClassifier(), tmp_path / "x.onnx")
    with pytest.raises(NotFittedError):
        export_onnx(make_pipeline(StandardScaler(), NNRegressor()), tmp_path / "x.onnx")
