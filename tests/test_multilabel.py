"""Multilabel indicator targets in NNClassifier, as sklearn's MLPClassifier takes them."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_multilabel_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MultiLabelBinarizer, StandardScaler

from skopt_nn import MLP, Distillation, NNClassifier

FAST = dict(lr=0.01, max_epochs=30, random_state=0)


@pytest.fixture(scope="module")
def multilabel():
    X, Y = make_multilabel_classification(600, 20, n_classes=5, random_state=0)
    return StandardScaler().fit_transform(X), Y


def test_multilabel_fit_predicts_indicators_and_probabilities(multilabel):
    X, Y = multilabel
    clf = NNClassifier(MLP((32,)), **FAST).fit(X, Y)
    pred = clf.predict(X)
    assert pred.shape == (600, 5) and set(np.unique(pred)) <= {0, 1}
    proba = clf.predict_proba(X)
    assert proba.shape == (600, 5) and np.all((proba >= 0) & (proba <= 1))
    # labels are independent: a row's probabilities need not sum to one
    assert not np.allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    np.testing.assert_array_equal(clf.classes_, np.arange(5))
    # score is subset accuracy, as for every sklearn classifier
    assert clf.score(X, Y) == pytest.approx(accuracy_score(Y, pred))
    assert clf.score(X, Y) > 0.4  # well above chance (1/32 for 5 labels)


def test_multilabel_from_a_label_binarizer_and_sparse_indicators(multilabel):
    X, _ = multilabel
    tags = [["a"] if i % 3 == 0 else ["b", "c"] if i % 3 == 1 else ["a", "c"] for i in range(len(X))]
    binarizer = MultiLabelBinarizer(sparse_output=True)
    Y = binarizer.fit_transform(tags)
    assert sp.issparse(Y)
    clf = NNClassifier(MLP((8,)), max_epochs=2, random_state=0).fit(X, Y)
    assert clf.predict(X).shape == (len(X), 3)


def test_multilabel_works_in_grid_search_and_cross_val_score(multilabel):
    X, Y = multilabel
    clf = NNClassifier(MLP((16,)), lr=0.01, max_epochs=15, random_state=0)
    scores = cross_val_score(clf, X, Y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.2)
    search = GridSearchCV(clf, {"lr": [1e-4, 1e-2]}, cv=2).fit(X, Y)
    assert search.best_params_ == {"lr": 1e-2}
    assert search.predict(X[:3]).shape == (3, 5)


def test_multilabel_sample_weight_and_early_stopping(multilabel):
    X, Y = multilabel
    w = np.ones(len(X))
    w[Y[:, 0] == 1] = 0.0  # rows with label 0 count for nothing
    clf = NNClassifier(MLP((16,)), early_stopping=True, **FAST).fit(X, Y, sample_weight=w)
    assert "valid_score" in clf.history_[-1]
    plain = NNClassifier(MLP((16,)), **FAST).fit(X, Y)
    # ignoring every positive of label 0 teaches the net that label 0 is rare
    assert clf.predict_proba(X)[:, 0].mean() < plain.predict_proba(X)[:, 0].mean()


def test_multilabel_refuses_class_weight(multilabel):
    X, Y = multilabel
    with pytest.raises(ValueError, match="class_weight='balanced' is not supported for multilabel"):
        NNClassifier(class_weight="balanced", max_epochs=1).fit(X, Y)


def test_multilabel_partial_fit_and_type_change(multilabel):
    X, Y = multilabel
    clf = NNClassifier(MLP((8,)), random_state=0)
    clf.partial_fit(X, Y, classes=np.arange(5))
    clf.partial_fit(X, Y)
    assert clf.n_iter_ == 2
    with pytest.raises(ValueError, match="was fitted with a multilabel indicator matrix"):
        clf.partial_fit(X, Y[:, 0])
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match="y has 4 labels"):
        clf.partial_fit(X, Y[:, :4])
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_multiclass_multioutput_y_is_still_refused(multilabel):
    X, _ = multilabel
    with pytest.raises(ValueError, match="y should be a 1d array"):
        NNClassifier(max_epochs=1).fit(X, np.column_stack([np.arange(600) % 3, np.arange(600) % 2]))


@pytest.mark.parametrize("teacher", [RandomForestClassifier(n_estimators=10, random_state=0),
                                     KNeighborsClassifier()])
@pytest.mark.parametrize("augment", [None, "mixup"])
def test_multilabel_distillation(multilabel, teacher, augment):
    X, Y = multilabel
    clf = NNClassifier(MLP((16,)), distillation=Distillation(teacher, augment=augment), **FAST).fit(X, Y)
    assert clf.score(X, Y) > 0.4


def test_multilabel_model_pickles_and_saves(multilabel, tmp_path):
    from skopt_nn import load, save

    X, Y = multilabel
    clf = make_pipeline(StandardScaler(), NNClassifier(MLP((8,)), max_epochs=3, random_state=0)).fit(X, Y)
    for loaded in (pickle.loads(pickle.dumps(clf)),):
        np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    save(clf[-1], tmp_path / "m.skopt")
    np.testing.assert_allclose(load(tmp_path / "m.skopt").predict_proba(clf[0].transform(X)),
                               clf.predict_proba(X), rtol=1e-5)


def test_multilabel_onnx_export(multilabel, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from skopt_nn import export_onnx

    X, Y = multilabel
    clf = NNClassifier(MLP((8,)), max_epochs=5, random_state=0).fit(X, Y)
    session = ort.InferenceSession(str(export_onnx(clf, tmp_path / "ml.onnx")))
    proba, label = session.run(["probabilities", "label"], {"X": X.astype(np.float32)})
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(label, clf.predict(X))
