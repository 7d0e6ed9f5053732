import os

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV

from skopt_nn import MLP, NNClassifier


def _threads_used(estimator, X, y):
    return estimator.n_threads_


def test_fits_in_parallel_workers_share_the_cores(iris):
    X, y = iris
    n_jobs = 2
    search = GridSearchCV(
        NNClassifier(MLP((8,)), max_epochs=2, random_state=0),
        {"lr": [1e-3, 1e-2]}, cv=2, n_jobs=n_jobs, scoring=_threads_used, refit=False,
    ).fit(X, y)
    per_worker = max(1, (os.cpu_count() or 1) // n_jobs)
    used = np.concatenate([search.cv_results_[f"split{i}_test_score"] for i in range(2)])
    assert (used >= 1).all() and (used <= per_worker).all()


def test_explicit_thread_count_is_used_and_restored(iris):
    X, y = iris
    before = torch.get_num_threads()
    clf = NNClassifier(MLP((8,)), max_epochs=1, n_threads=1).fit(X, y)
    assert clf.n_threads_ == 1
    assert torch.get_num_threads() == before


def test_read_only_memmap_fits_without_warnings_or_copies(tmp_path, iris):
    import warnings

    from skopt_nn.training.data import as_float_tensor

    X, y = iris
    path = tmp_path / "X.npy"
    np.save(path, np.ascontiguousarray(X, dtype=np.float32))
    X_mm = np.load(path, mmap_mode="r")  # what joblib hands to its workers
    assert as_float_tensor(X_mm).data_ptr() == X_mm.ctypes.data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = NNClassifier(MLP((8,)), max_epochs=2, random_state=0).fit(X_mm, y)
        clf.predict(X_mm)


def test_validation_split_shares_the_training_data():
    from skopt_nn.training.data import BatchIterator, TensorData

    X = torch.arange(20, dtype=torch.float32).reshape(10, 2)
    y = torch.arange(10)
    data = TensorData(X, y)
    train, valid = data.subset([0, 2, 4, 6, 8]), data.subset([1, 3, 5, 7, 9])
    assert train.X.data_ptr() == X.data_ptr() and valid.X.data_ptr() == X.data_ptr()
    batches = list(BatchIterator(train, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(0)))
    seen = torch.cat([yb for _, yb in batches])
    assert sorted(seen.tolist()) == [0, 2, 4, 6, 8]
    assert all(torch.equal(xb[:, 0], 2 * yb.float()) for xb, yb in batches)
    assert [yb.tolist() for _, yb in BatchIterator(valid, batch_size=3)] == [[1, 3, 5], [7, 9]]
