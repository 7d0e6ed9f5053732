"""What a distillation search costs: teacher fits, wall time, the distillation step.

The demo's setting (``skopt-nn demo``): sklearn's digits scaled to [0, 1],
its 75 % training split; the student ``MLP((256,))``, batch 64, 20 epochs,
one-cycle, gradual structured pruning, ``random_state=0``; the teacher
``HistGradientBoostingClassifier(max_iter=50)``; one thread for torch and
OpenMP. Measured side by side in one run:

1. a 12-candidate x 3-fold ``GridSearchCV`` over ``lr`` and
   ``distillation__alpha`` with refit: teacher fits counted, CPU and wall time,
   with the teacher shared (``reuse_teacher=True``, the default), with a
   teacher fitted in every fit (``reuse_teacher=False``), and the same grid
   without distillation; the fold scores of the first two are compared;
2. a 2 x 2 grid over ``distillation__teacher__max_iter`` and ``lr``,
   3 folds, refit: teacher fits counted, shared and not;
3. a distilled fit against a plain fit of the same student, with a teacher
   fitted beforehand (``FrozenEstimator``): median ratio of their CPU times
   over interleaved repeats (wall time too, which a busy machine blurs),
   with the teacher's scores on the rows kept from an earlier fit (every fit
   of a search on a fold after the first) and with the rows scored in the
   fit (the cache cleared first);
4. the fingerprint that keys a shared teacher: its time on the training
   rows as a share of one plain fit, and its throughput on 100k x 100;
5. optionally (``--n-jobs 2``), the 12 x 3 grid with loky workers: teacher
   fits counted across the workers.

Run: ``python benchmarks/bench_teacher_reuse.py [--quick] [--n-jobs 2]``
"""

import argparse
import os
import statistics
import tempfile
import time
import warnings

import numpy as np
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, train_test_split
from threadpoolctl import threadpool_limits

from skopt_nn import MLP, Distillation, LRSchedule, NNClassifier, Pruning
from skopt_nn.specs._teacher_cache import fingerprint
from skopt_nn.specs.distillation import clear_teacher_cache

# Worker processes count their fits in this file (one line per fit).
_COUNT_FILE = os.environ.setdefault("SKOPT_NN_BENCH_TEACHER_FITS",
                                    os.path.join(tempfile.gettempdir(), f"teacher_fits_{os.getpid()}"))


class CountedHGB(HistGradientBoostingClassifier):
    """The demo's teacher, counting its fits (in any process) in a file."""

    def fit(self, X, y, sample_weight=None):
        with open(os.environ["SKOPT_NN_BENCH_TEACHER_FITS"], "a") as f:
            f.write("fit\n")
        return super().fit(X, y, sample_weight=sample_weight)


def _fits():
    try:
        with open(_COUNT_FILE) as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _reset():
    clear_teacher_cache()
    if os.path.exists(_COUNT_FILE):
        os.remove(_COUNT_FILE)


def data():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    return X_train, y_train


def student(epochs, teacher=None, reuse=True):
    return NNClassifier(
        MLP((256,)), batch_size=64, lr=0.01, max_epochs=epochs, lr_schedule=LRSchedule("onecycle"),
        pruning=Pruning("ln_structured", amount=0.7, schedule="gradual", start=0.1, end=0.6, n_steps=4),
        distillation=None if teacher is None else Distillation(teacher, reuse_teacher=reuse),
        random_state=0,
    )


GRID = {"lr": [3e-3, 1e-2, 2e-2, 5e-2], "distillation__alpha": [0.2, 0.5, 0.8]}


def grid_search(X, y, estimator, grid, n_jobs=1, cpu=None):
    """The fitted search, its wall time and its teacher fits; its CPU time into ``cpu``."""
    _reset()
    start, start_cpu = time.perf_counter(), time.process_time()
    search = GridSearchCV(estimator, grid, cv=3, n_jobs=n_jobs).fit(X, y)
    if cpu is not None:
        cpu.append(time.process_time() - start_cpu)
    return search, time.perf_counter() - start, _fits()


def search_figures(X, y, epochs, teacher_iter):
    teacher = CountedHGB(max_iter=teacher_iter)
    plain = student(epochs)
    # The same 12 candidates x 3 folds, none of them distilled.
    plain_grid = {"lr": GRID["lr"], "distillation": [None] * 3}
    cpu = []
    shared, t_shared, n_shared = grid_search(X, y, student(epochs, teacher), GRID, cpu=cpu)
    alone, t_alone, n_alone = grid_search(X, y, student(epochs, teacher, reuse=False), GRID, cpu=cpu)
    _, t_plain, _ = grid_search(X, y, plain, plain_grid, cpu=cpu)
    c_shared, c_alone, c_plain = cpu
    same = all(np.array_equal(shared.cv_results_[f"split{k}_test_score"], alone.cv_results_[f"split{k}_test_score"])
               for k in range(3))
    print("12 candidates x 3 folds + refit (37 student fits, 4 training sets):")
    print(f"  teacher fits: shared {n_shared}, one per fit {n_alone}")
    print(f"  CPU time / same grid without a teacher: shared {c_shared / c_plain:.2f}x, "
          f"one per fit {c_alone / c_plain:.2f}x")
    print(f"  wall time / same grid without a teacher: shared {t_shared / t_plain:.2f}x, "
          f"one per fit {t_alone / t_plain:.2f}x")
    print(f"  fold scores identical, shared vs one per fit: {same}")
    print(f"  (wall: shared {t_shared:.1f} s, one per fit {t_alone:.1f} s, no teacher {t_plain:.1f} s)")

    teacher_grid = {"distillation__teacher__max_iter": [10, 20], "lr": [1e-2, 3e-2]}
    _, _, p_shared = grid_search(X, y, student(epochs, CountedHGB()), teacher_grid)
    _, _, p_alone = grid_search(X, y, student(epochs, CountedHGB(), reuse=False), teacher_grid)
    print("2 teacher settings x 2 lr x 3 folds + refit (13 student fits, 6 (setting, fold) pairs + refit):")
    print(f"  teacher fits: shared {p_shared}, one per fit {p_alone}")
    return dict(shared=t_shared / t_plain, alone=t_alone / t_plain, fits_shared=n_shared, fits_alone=n_alone,
                shared_cpu=c_shared / c_plain, alone_cpu=c_alone / c_plain,
                param_fits_shared=p_shared, param_fits_alone=p_alone, same=same)


def step_ratio(X, y, epochs, teacher_iter, repeats):
    frozen = FrozenEstimator(HistGradientBoostingClassifier(max_iter=teacher_iter, random_state=0).fit(X, y))
    plain, distilled = student(epochs), student(epochs, frozen)
    clone(plain).fit(X, y)  # warm-up: the first fit of a process pays torch's start-up
    clone(distilled).fit(X, y)  # the frozen teacher's scores on these rows are kept from here on
    # CPU time of the process (one thread): on a shared machine, wall time
    # mostly measures the neighbours. "kept": the teacher's scores come from
    # the cache, as in every fit of a search on one fold after the first;
    # "scored": the cache is cleared first, so the fit scores the rows.
    ratios, cold, walls = [], [], []
    for _ in range(repeats):  # interleaved, so that all see the same conditions
        cpu, wall = [], []
        for est, clear in ((plain, False), (distilled, False), (distilled, True)):
            est = clone(est)
            if clear:
                clear_teacher_cache()
            start, start_wall = time.process_time(), time.perf_counter()
            est.fit(X, y)
            cpu.append(time.process_time() - start)
            wall.append(time.perf_counter() - start_wall)
        ratios.append(cpu[1] / cpu[0])
        cold.append(cpu[2] / cpu[0])
        walls.append(wall[1] / wall[0])
    ratio = statistics.median(ratios)
    print(f"distilled fit / plain fit, FrozenEstimator teacher: {ratio:.3f}x CPU time with its scores "
          f"kept, {statistics.median(cold):.3f}x scoring the rows in the fit; median of {repeats} "
          f"triples (wall {statistics.median(walls):.3f}x)")
    return ratio, cpu[0]


def fingerprint_cost(X, y, fit_seconds):
    def timed(*arrays):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            fingerprint(*arrays)
            best = min(best, time.perf_counter() - start)
        return best

    small = timed(X, y)
    big = np.random.default_rng(0).random((100_000, 100))
    t_big = timed(big)
    print(f"fingerprint of the training rows: {small / fit_seconds:.4f} of one plain fit; "
          f"{big.nbytes / t_big / 1e9:.2f} GB/s on 100k x 100 float64 ({t_big * 1e3:.0f} ms)")
    return small / fit_seconds


def parallel_figures(X, y, epochs, teacher_iter, n_jobs):
    teacher = CountedHGB(max_iter=teacher_iter)
    _, t_shared, n_shared = grid_search(X, y, student(epochs, teacher), GRID, n_jobs=n_jobs)
    _, t_alone, n_alone = grid_search(X, y, student(epochs, teacher, reuse=False), GRID, n_jobs=n_jobs)
    print(f"12 x 3 grid + refit, n_jobs={n_jobs} (loky): teacher fits shared {n_shared}, one per fit "
          f"{n_alone}; wall shared / one per fit {t_shared / t_alone:.2f}")
    return dict(fits_shared=n_shared, fits_alone=n_alone, wall=t_shared / t_alone)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and teacher rounds")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--only", choices=["search", "step"], default=None)
    args = parser.parse_args(argv)
    epochs, teacher_iter = (4, 10) if args.quick else (20, 50)
    X, y = data()
    torch.set_num_threads(1)
    out = {}
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if args.only != "search":
            out["step"], fit_seconds = step_ratio(X, y, epochs, teacher_iter, args.repeats)
            out["fingerprint"] = fingerprint_cost(X, y, fit_seconds)
        if args.only != "step":
            out.update(search_figures(X, y, epochs, teacher_iter))
        if args.n_jobs > 1:
            out["parallel"] = parallel_figures(X, y, epochs, teacher_iter, args.n_jobs)
    _reset()
    return out


if __name__ == "__main__":
    main()
