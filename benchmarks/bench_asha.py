"""Epochs, best score and wall time of ASHA against a full search and halving.

sklearn's digits (the first ``--rows`` rows), ``StandardScaler`` +
``NNClassifier(max_epochs=27)``, ``--candidates`` candidates over ``lr``
(log, 1e-4 to 0.3), the hidden sizes and the schedule, 3-fold CV. Every
engine searches the same candidates (one ``random_state``):

* a full random search: every candidate trained ``max_epochs`` per fold;
* ``method="halving"`` (sklearn's ``HalvingRandomSearchCV`` over epochs,
  rungs of 1, 3, 9 and 27 epochs, each restarted from scratch);
* ``method="asha"``, whose candidates continue from rung to rung, on joblib
  and with ``backend="ray"``.

Epochs are counted (per fold, summed), not estimated; wall times are taken
side by side in this process, with one torch thread, and reported as ratios.

Run: ``python benchmarks/bench_asha.py [--rows 1200] [--candidates 27] [--max-epochs 27] [--no-ray]``
"""

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import MLP, Categorical, LRSchedule, NNClassifier, Real, make_search


def _space():
    return {
        "lr": Real(1e-4, 0.3, log=True),
        "module__hidden_layer_sizes": Categorical([(32,), (128,), (128, 64), (256, 128)]),
        "lr_schedule": Categorical(["constant", "cosine", LRSchedule("onecycle")]),
    }


def _timed(search, X, y):
    start = time.perf_counter()
    search.fit(X, y)
    return search, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--candidates", type=int, default=27)
    parser.add_argument("--max-epochs", type=int, default=27)
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true", help="skip backend='ray'")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    X, y = load_digits(return_X_y=True)
    X, y = X[: args.rows].astype(np.float32), y[: args.rows]
    pipe = make_pipeline(StandardScaler(), NNClassifier(MLP(), max_epochs=args.max_epochs,
                                                        random_state=0))
    n, epochs, cv = args.candidates, args.max_epochs, args.cv
    common = dict(cv=cv, random_state=0, refit=False)

    full, t_full = _timed(make_search(pipe, _space(), "random", n_iter=n, **common), X, y)
    full_epochs = n * epochs * cv
    halving, t_halving = _timed(
        make_search(pipe, _space(), "halving", n_candidates=n, min_resources=1, factor=3,
                    **common), X, y)
    halving_epochs = int(np.sum(halving.cv_results_["n_resources"]) * cv)
    asha, t_asha = _timed(make_search(pipe, _space(), "asha", n_iter=n, **common), X, y)

    rows = {
        "full": (full_epochs, full.best_score_, t_full, n),
        "halving": (halving_epochs, halving.best_score_, t_halving,
                    int(np.sum(halving.cv_results_["n_resources"] == halving.n_resources_[-1]))),
        "asha": (asha.total_epochs_, asha.best_score_, t_asha,
                 int(np.sum(asha.cv_results_["epochs"] == epochs))),
    }
    if not args.no_ray:
        import ray

        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
        try:
            ray_search, t_ray = _timed(
                make_search(pipe, _space(), "asha", n_iter=n, backend="ray", **common), X, y)
        finally:
            ray.shutdown()
        rows["asha, ray"] = (ray_search.total_epochs_, ray_search.best_score_, t_ray,
                             int(np.sum(ray_search.cv_results_["epochs"] == epochs)))

    print(f"\n[asha] digits {len(X)} rows, {n} candidates, max_epochs={epochs}, cv={cv}, one torch thread")
    print(f"{'search':<11} {'epochs':>7} {'/ full':>7} {'best cv':>8} {'cv - full':>9} "
          f"{'wall / full':>11} {'at top':>6}")
    for name, (ep, score, wall, top) in rows.items():
        print(f"{name:<11} {ep:7d} {ep / full_epochs:7.1%} {score:8.4f} {score - full.best_score_:+9.4f} "
              f"{wall / t_full:11.2f} {top:6d}")
    out = {name: {"epochs": ep / full_epochs, "gap": full.best_score_ - score, "wall": wall / t_full}
           for name, (ep, score, wall, _) in rows.items()}
    out["asha_vs_halving"] = {"epochs": rows["asha"][0] / halving_epochs, "wall": t_asha / t_halving}
    return out


if __name__ == "__main__":
    main()
