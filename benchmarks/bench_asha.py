"""Epochs, best score and wall time of ASHA against a full search and halving.

sklearn's digits (the first ``--rows`` rows), ``StandardScaler`` +
``NNClassifier(max_epochs=27)``, ``--candidates`` candidates over ``lr``
(log, 1e-4 to 0.3), the hidden sizes and the schedule, 3-fold CV. Every
engine searches the same candidates (one ``random_state``):

* a full random search: every candidate trained ``max_epochs`` per fold;
* ``method="halving"`` (sklearn's ``HalvingRandomSearchCV`` over epochs,
  rungs of 1, 3, 9 and 27 epochs, each restarted from scratch);
* ``method="asha"``, whose candidates continue from rung to rung, on joblib
  (``n_jobs=None``: one fit at a time) and with ``backend="ray"``.

The Ray search starts its own local Ray (one actor per CPU) inside the timed
block, so its wall time includes ``import ray``, ``ray.init``, the actors'
start and ``ray.shutdown``; with ``--ray-cpus K`` it starts ``ray.init(num_cpus=K)``
itself, also inside the timed block.

Epochs are counted (per fold, summed), not estimated; wall times are taken
side by side in this process, with one torch thread, and reported as ratios
(``wall / full`` and Ray's wall over joblib ASHA's).

Run: ``python benchmarks/bench_asha.py [--rows 1200] [--candidates 27] [--max-epochs 27] [--no-ray]
[--ray-cpus K] [--fuse]``
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
    parser.add_argument("--ray-cpus", type=int, default=None,
                        help="ray.init(num_cpus=K) before the Ray search (default: the search starts Ray)")
    parser.add_argument("--no-halving", action="store_true", help="skip method='halving'")
    parser.add_argument("--fuse", action="store_true", help="also time ASHA with fuse=True on Ray")
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
    rows = {"full": (full_epochs, full.best_score_, t_full, n)}
    if not args.no_halving:
        halving, t_halving = _timed(
            make_search(pipe, _space(), "halving", n_candidates=n, min_resources=1, factor=3,
                        **common), X, y)
        halving_epochs = int(np.sum(halving.cv_results_["n_resources"]) * cv)
        rows["halving"] = (halving_epochs, halving.best_score_, t_halving,
                           int(np.sum(halving.cv_results_["n_resources"] == halving.n_resources_[-1])))
    asha, t_asha = _timed(make_search(pipe, _space(), "asha", n_iter=n, **common), X, y)
    rows["asha"] = (asha.total_epochs_, asha.best_score_, t_asha,
                    int(np.sum(asha.cv_results_["epochs"] == epochs)))
    ray_kinds = [] if args.no_ray else [("asha, ray", False)] + ([("asha, ray, fuse", True)] if args.fuse else [])
    for name, fuse in ray_kinds:
        ray_search, t_ray = _ray_search(args, pipe, n, fuse, common, X, y)
        rows[name] = (ray_search.total_epochs_, ray_search.best_score_, t_ray,
                      int(np.sum(ray_search.cv_results_["epochs"] == epochs)))

    print(f"\n[asha] digits {len(X)} rows, {n} candidates, max_epochs={epochs}, cv={cv}, one torch thread")
    print(f"{'search':<11} {'epochs':>7} {'/ full':>7} {'best cv':>8} {'cv - full':>9} "
          f"{'wall s':>7} {'wall / full':>11} {'at top':>6}")
    for name, (ep, score, wall, top) in rows.items():
        print(f"{name:<11} {ep:7d} {ep / full_epochs:7.1%} {score:8.4f} {score - full.best_score_:+9.4f} "
              f"{wall:7.2f} {wall / t_full:11.2f} {top:6d}")
    out = {name: {"epochs": ep / full_epochs, "gap": full.best_score_ - score, "wall": wall / t_full}
           for name, (ep, score, wall, _) in rows.items()}
    if "halving" in rows:
        out["asha_vs_halving"] = {"epochs": rows["asha"][0] / rows["halving"][0],
                                  "wall": t_asha / rows["halving"][2]}
    for name, _ in ray_kinds:
        ep, score, wall, _ = rows[name]
        out[name]["vs_joblib"] = wall / t_asha
        print(f"{name}: wall {wall / t_asha:.2f}x joblib ASHA's (target <= 3x, goal 1.5x), "
              f"epochs {ep / full_epochs:.1%} of the full search (<= 20 %), "
              f"best CV {score - asha.best_score_:+.4f} from joblib ASHA's (within 0.02)")
    if ray_kinds:
        fixed = _ray_fixed_cost()
        out["ray_fixed"] = fixed
        print("of which Ray's fixed cost (measured apart, no training): "
              + ", ".join(f"{k} {v:.2f} s" for k, v in fixed.items()))
    return out


def _ray_fixed_cost():
    """``ray.init``, two actors importing the library, and ``ray.shutdown``, timed apart."""
    import logging

    start = time.perf_counter()
    import ray

    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    init = time.perf_counter()

    @ray.remote(num_cpus=1)
    class _Idle:
        def ready(self):
            import skopt_nn.search.asha  # noqa: F401  what a trainer actor imports first

            return True

    actors = [_Idle.remote() for _ in range(int(ray.available_resources().get("CPU", 1)))]
    ray.get([a.ready.remote() for a in actors])
    up = time.perf_counter()
    ray.shutdown()
    end = time.perf_counter()
    return {"ray.init": init - start, "actors up": up - init, "ray.shutdown": end - up}


def _ray_search(args, pipe, n, fuse, common, X, y):
    """The Ray ASHA search, timed from ``import ray`` to ``ray.shutdown``."""
    start = time.perf_counter()
    import ray

    if args.ray_cpus is None:  # the search starts (and stops) a local Ray
        search = make_search(pipe, _space(), "asha", n_iter=n, backend="ray", fuse=fuse, **common)
        search.fit(X, y)
    else:
        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        try:
            search = make_search(pipe, _space(), "asha", n_iter=n, backend="ray", fuse=fuse, **common)
            search.fit(X, y)
        finally:
            ray.shutdown()
    return search, time.perf_counter() - start


if __name__ == "__main__":
    main()
