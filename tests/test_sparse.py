"""Sparse X: accepted wherever the first layer is linear, never densified whole."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import make_classification
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from torch import nn

from skopt_nn import CNN, MLP, Distillation, NNClassifier, NNRegressor, TorchModule


@pytest.fixture(scope="module")
def sparse_data():
    X, y = make_classification(200, 40, n_informative=8, random_state=0)
    X[np.abs(X) < 1.0] = 0.0  # about two thirds zeros
    return sp.csr_matrix(X), X, y


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("kind", [sp.csr_matrix, sp.csr_array])
def test_sparse_fit_gives_the_model_of_the_dense_fit(sparse_data, fmt, kind):
    Xs, X, y = sparse_data
    dense = NNClassifier(MLP((16,)), lr=0.01, max_epochs=15, random_state=0).fit(X, y)
    sparse = NNClassifier(MLP((16,)), lr=0.01, max_epochs=15, random_state=0).fit(kind(Xs).asformat(fmt), y)
    assert sparse.score(Xs, y) > 0.8
    np.testing.assert_allclose(sparse.predict_proba(Xs), dense.predict_proba(X), atol=1e-4)
    # predict takes sparse and dense rows alike
    np.testing.assert_array_equal(sparse.predict(Xs.tocsc()), sparse.predict(X))


def test_sparse_partial_fit_and_regressor(sparse_data):
    Xs, X, y = sparse_data
    clf = NNClassifier(MLP((8,)), lr=0.01, random_state=0)
    for _ in range(3):
        clf.partial_fit(Xs, y, classes=[0, 1])
    assert clf.n_iter_ == 3 and clf.predict_proba(Xs).shape == (200, 2)
    target = X[:, :2] @ [1.0, -1.0]
    reg = NNRegressor(MLP((16,)), lr=0.01, max_epochs=40, random_state=0).fit(Xs, target)
    assert reg.score(Xs, target) > 0.5


def test_sparse_early_stopping_and_sample_weight(sparse_data):
    Xs, X, y = sparse_data
    w = np.where(y == 1, 2.0, 1.0)
    clf = NNClassifier(MLP((16,)), lr=0.01, max_epochs=30, early_stopping=True, random_state=0)
    clf.fit(Xs, y, sample_weight=w)
    assert "valid_loss" in clf.history_[-1] and clf.score(Xs, y) > 0.8


def test_cnn_refuses_sparse_x_in_sklearns_words():
    X = sp.random(10, 16, density=0.3, format="csr", random_state=0)
    clf = NNClassifier(CNN(input_shape=(1, 4, 4), channels=(2,), hidden=4), max_epochs=1)
    with pytest.raises(TypeError, match="Sparse data was passed for X, but dense data is required"):
        clf.fit(X, np.arange(10) % 2)
    assert not clf.__sklearn_tags__().input_tags.sparse
    assert NNClassifier().__sklearn_tags__().input_tags.sparse


class _Dense(nn.Module):
    def __init__(self, n_features_in, n_outputs):
        super().__init__()
        self.linear = nn.Linear(n_features_in, n_outputs)

    def forward(self, x):
        return self.linear(x)


class _Sparse(_Dense):
    accepts_sparse = True


def test_torch_module_takes_sparse_only_when_it_says_so(sparse_data):
    Xs, _, y = sparse_data
    with pytest.raises(TypeError, match="dense data is required"):
        NNClassifier(TorchModule(_Dense), max_epochs=1).fit(Xs, y)
    clf = NNClassifier(TorchModule(_Sparse), lr=0.05, max_epochs=20, random_state=0).fit(Xs, y)
    assert clf.score(Xs, y) > 0.8


def test_a_failed_sparse_fit_keeps_the_fitted_model(sparse_data):
    Xs, X, y = sparse_data
    clf = NNClassifier(MLP((8,)), max_epochs=3, random_state=0).fit(Xs, y)
    before = clf.predict_proba(Xs)
    with pytest.raises(ValueError, match="X has 3 features"):
        clf.predict(Xs[:, :3])
    with pytest.raises(ValueError, match="at least 2 classes"):
        clf.fit(Xs, np.zeros(200))
    with pytest.raises(ValueError, match="diverged"):
        clf.set_params(optimizer="sgd", lr=1e12).fit(Xs * 1e6, y)
    np.testing.assert_array_equal(clf.predict_proba(Xs), before)


@pytest.mark.parametrize("augment", [None, "mixup", "noise"])
def test_distillation_on_sparse_rows(sparse_data, augment):
    Xs, _, y = sparse_data
    student = NNClassifier(
        MLP((16,)), lr=0.01, max_epochs=15, random_state=0,
        distillation=Distillation(LogisticRegression(), augment=augment),
    ).fit(Xs, y)
    assert student.score(Xs, y) > 0.8


def test_distillation_from_a_module_teacher_on_sparse_rows(sparse_data):
    Xs, _, y = sparse_data
    torch.manual_seed(0)
    teacher = _Sparse(40, 2)
    student = NNClassifier(MLP((8,)), max_epochs=2, random_state=0,
                           distillation=Distillation(teacher)).fit(Xs, y)
    assert student.predict(Xs).shape == (200,)


def test_sparse_model_pickles_and_predicts_dense_after_loading(sparse_data):
    Xs, X, y = sparse_data
    clf = NNClassifier(MLP((8,)), max_epochs=3, random_state=0).fit(Xs, y)
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(Xs), rtol=1e-5)


def _corpus(n=120, seed=0):
    rng = np.random.RandomState(seed)
    sport = ["goal", "match", "team", "score", "league", "coach"]
    money = ["bank", "stock", "market", "price", "trade", "fund"]
    filler = ["the", "a", "today", "new", "big", "report"]
    docs, labels = [], []
    for i in range(n):
        topic = sport if i % 2 else money
        words = list(rng.choice(topic, 4)) + list(rng.choice(filler, 3))
        rng.shuffle(words)
        docs.append(" ".join(words))
        labels.append("sport" if i % 2 else "money")
    return docs, np.array(labels)


def test_tfidf_pipeline_cross_validates():
    docs, labels = _corpus()
    pipe = make_pipeline(TfidfVectorizer(), NNClassifier(MLP((16,)), lr=0.02, max_epochs=20, random_state=0))
    scores = cross_val_score(pipe, docs, labels, cv=3)
    assert scores.mean() > 0.9
    assert set(pipe.fit(docs, labels).predict(["goal match team", "bank stock price"])) == {"sport", "money"}


_LARGE_FIT = """
import numpy as np, scipy.sparse as sp
from skopt_nn import NNClassifier

def memory(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

rng = np.random.default_rng(0)
n, d = 100_000, 50_000
nnz = int(n * d * 2e-4)
X = sp.csr_matrix((rng.random(nnz, dtype=np.float32), (rng.integers(0, n, nnz), rng.integers(0, d, nnz))),
                  shape=(n, d))
y = np.arange(n) % 2
with open("/proc/self/clear_refs", "w") as f:  # restart the peak at the current size
    f.write("5")
before = memory("VmRSS:")
clf = NNClassifier(max_epochs=1, batch_size=1024, random_state=0).fit(X, y)
assert clf.predict(X[:10]).shape == (10,)
print(memory("VmHWM:") - before)
"""


@pytest.mark.slow
def test_a_20_gb_dense_matrix_fits_sparse_in_bounded_memory(tmp_path):
    # 100 000 x 50 000 at density 2e-4: 8 MB as CSR, 20 GB dense (float32).
    import os
    import subprocess
    import sys

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc to measure the peak memory of a process")
    script = tmp_path / "large_fit.py"
    script.write_text(_LARGE_FIT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    growth = int(out.stdout.split()[-1])
    assert growth < 1.5e9, f"peak memory grew by {growth / 1e9:.2f} GB"


def test_onnx_export_of_a_sparse_trained_model_takes_dense_rows(sparse_data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from skopt_nn import export_onnx

    Xs, X, y = sparse_data
    clf = NNClassifier(MLP((8,)), max_epochs=3, random_state=0).fit(Xs, y)
    session = ort.InferenceSession(str(export_onnx(clf, tmp_path / "sparse.onnx")))
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {"X": X.astype(np.float32)})))
    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(Xs), atol=1e-5)


def test_save_and_load_a_sparse_trained_model(sparse_data, tmp_path):
    from skopt_nn import load, save

    Xs, _, y = sparse_data
    clf = NNClassifier(MLP((8,)), max_epochs=3, random_state=0).fit(Xs, y)
    save(clf, tmp_path / "m.skopt")
    np.testing.assert_allclose(load(tmp_path / "m.skopt").predict_proba(Xs), clf.predict_proba(Xs), rtol=1e-5)


@pytest.mark.parametrize("method", ["random", "asha"])
def test_search_over_a_tfidf_pipeline(method):
    from skopt_nn import Real, make_search

    docs, labels = _corpus()
    pipe = make_pipeline(TfidfVectorizer(), NNClassifier(MLP((8,)), max_epochs=8, random_state=0))
    search = make_search(pipe, {"lr": Real(1e-2, 1e-1, log=True)}, method=method, n_iter=2, cv=2,
                         random_state=0)
    search.fit(docs, labels)
    assert search.best_score_ > 0.8
    assert search.predict(["goal team coach"]) == ["sport"]
