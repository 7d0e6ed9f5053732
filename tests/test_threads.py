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


# -- the policy for n_threads=None: decisions, not timings -------------------
from skopt_nn.training import _runtime  # noqa: E402
from skopt_nn.training._runtime import PARALLEL_GRAIN, auto_threads, row_cost, threads_for  # noqa: E402


def test_tiny_work_gets_one_thread_whatever_the_cores():
    assert threads_for(1_000, free_cores=64) == 1
    assert threads_for(PARALLEL_GRAIN * 2 - 1, free_cores=64) == 1


def test_large_work_gets_the_free_cores():
    assert threads_for(PARALLEL_GRAIN * 100, free_cores=2) == 2
    assert threads_for(PARALLEL_GRAIN * 100, free_cores=16) == 16
    # in between: one thread per grain of work
    assert threads_for(PARALLEL_GRAIN * 3, free_cores=16) == 3


def test_a_busy_machine_gets_fewer_threads():
    big = PARALLEL_GRAIN * 100
    assert threads_for(big, free_cores=1) == 1
    assert threads_for(big, free_cores=3) < threads_for(big, free_cores=8)


def test_a_parallel_worker_keeps_to_its_share():
    big = PARALLEL_GRAIN * 100
    assert threads_for(big, free_cores=16, share=1) == 1
    assert threads_for(big, free_cores=1, share=4) == 4  # the workers divide the cores already
    assert threads_for(1_000, free_cores=16, share=4) == 1


def test_auto_threads_reads_the_worker_share(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(_runtime, "free_cores", lambda: 1 / 0)  # a worker never samples the load
    assert auto_threads(PARALLEL_GRAIN * 100) == 3
    assert auto_threads(10) == 1


def test_small_work_does_not_sample_the_load(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(_runtime, "free_cores", lambda: 1 / 0)
    assert auto_threads(10) == 1


def test_free_cores_subtracts_other_runnable_tasks(monkeypatch):
    monkeypatch.setattr(_runtime, "usable_cores", lambda: 4)
    monkeypatch.setattr(_runtime, "_own_running_threads", lambda: 1)
    reads = iter([4, 3, 5])  # a short-lived task comes and goes: the fewest count
    monkeypatch.setattr(_runtime, "_runnable_now", lambda: next(reads))
    assert _runtime.free_cores() == 2  # 3 runnable, one of them this thread
    monkeypatch.setattr(_runtime, "_runnable_now", lambda: 1)  # only ourselves
    assert _runtime.free_cores() == 4
    monkeypatch.setattr(_runtime, "_runnable_now", lambda: 40)
    assert _runtime.free_cores() == 1


def test_the_load_is_sampled_at_most_once_a_second(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    readings = []
    monkeypatch.setattr(_runtime, "free_cores", lambda: readings.append(1) or 1)
    monkeypatch.setattr(_runtime, "_reading", (-float("inf"), 1))
    clock = [100.0]
    monkeypatch.setattr(_runtime.time, "monotonic", lambda: clock[0])
    big = PARALLEL_GRAIN * 100
    assert auto_threads(big) == 1 and auto_threads(big) == 1
    assert len(readings) == 1  # the second decision takes the first reading
    clock[0] += _runtime.FREE_CORES_TTL
    monkeypatch.setattr(_runtime, "free_cores", lambda: readings.append(2) or 2)
    assert auto_threads(big) == 2  # a reading a second old is taken again
    assert readings == [1, 2]


def test_work_is_counted_in_multiply_adds_per_row():
    net = MLP((16, 8)).build(5, 3)
    assert row_cost(net, 5) == 5 * 16 + 16 * 8 + 8 * 3
    conv = torch.nn.Sequential(torch.nn.Unflatten(1, (1, 4, 4)), torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten())
    assert row_cost(conv, 16) == 2 * 9 * (2 * 2)  # weights x output positions


def test_a_tiny_fit_uses_one_thread_and_restores_torch(iris, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    X, y = iris
    before = torch.get_num_threads()
    clf = NNClassifier(MLP((8,)), max_epochs=1, random_state=0).fit(X, y)
    assert clf.n_threads_ == 1
    clf.predict(X)
    assert torch.get_num_threads() == before


def test_explicit_thread_count_wins_over_the_policy(iris, monkeypatch):
    X, y = iris
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    clf = NNClassifier(MLP((8,)), max_epochs=1, n_threads=2, random_state=0).fit(X, y)
    assert clf.n_threads_ == 2
    assert torch.get_num_threads() == before


def test_fit_inside_a_worker_uses_its_share_for_large_work(iris, monkeypatch):
    X, y = iris
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(_runtime, "PARALLEL_GRAIN", 1)  # make iris "large work"
    before = torch.get_num_threads()
    clf = NNClassifier(MLP((8,)), max_epochs=1, random_state=0).fit(X, y)
    assert clf.n_threads_ == 2
    assert torch.get_num_threads() == before


def test_the_thread_count_does_not_change_the_model(iris):
    X, y = iris
    fits = [NNClassifier(MLP((32,)), max_epochs=3, n_threads=k, random_state=0).fit(X, y) for k in (1, 2)]
    np.testing.assert_allclose(fits[0].predict_proba(X), fits[1].predict_proba(X), rtol=1e-5, atol=1e-6)


def test_lean_loop_keeps_history_and_user_callbacks(iris):
    from skorch.callbacks import Callback

    events = []  # shared by the copy each fit makes; a fitted model keeps no callbacks

    class Counter(Callback):
        def on_batch_end(self, net, training=None, **kwargs):
            if training:
                events.append("batch")

        def on_grad_computed(self, net, named_parameters, **kwargs):
            events.append("grad")

    X, y = iris
    clf = NNClassifier(MLP((8,)), max_epochs=2, batch_size=50, early_stopping=True, random_state=0,
                       callbacks=[("count", Counter())]).fit(X, y)
    row = clf.history_[-1]
    assert [b["train_batch_size"] for b in row["batches"] if "train_loss" in b] == [50, 50, 35]
    assert {"train_loss", "valid_loss", "valid_score", "lr", "dur", "epoch"} <= set(row)
    assert events.count("batch") == events.count("grad") == 6
