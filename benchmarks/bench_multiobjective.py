"""Multi-objective search: how much of the grid's accuracy-size front each engine finds at a quarter of its epochs.

The grid (48 candidates) is what a compression user would write for digits
(StandardScaler + NNClassifier, 3-fold CV, no early stopping):

- widths ``(64,)``, ``(256,)``, ``(256, 256)``;
- ``Pruning("ln_structured", amount=a)`` for a in 0.5, 0.75, 0.9, or none;
- ``Quantization("dynamic_int8")`` or none;
- learning rate 1e-3 or 1e-2;

and the objectives are ``["accuracy", "neg_model_bytes"]`` (mean test
accuracy, and the bytes ``joblib.dump`` writes for the fitted Pipeline).

Each method's front is scored by its **hypervolume**: the area that its
candidates' (accuracy, bytes) points dominate, up to a reference point. The
reference point (the same for every method of a seed, taken from the grid):
accuracy = the grid's best mean accuracy - 0.05; bytes = 1.1 x the smallest
saved size among the grid's candidates with that best accuracy. A point less
accurate or larger than the reference adds nothing; with a reference at
accuracy 0 every method would score close to 100 %, which says nothing.

Methods, all with the same budget in epochs (what multi-objective ASHA
trains, all folds and rungs counted, for the others as whole fits of
``max_epochs`` each):

- ``grid``: every candidate, the reference front (100 %);
- ``mo-asha``: ``make_search(method="asha", objectives=..., fuse=True)``,
  rungs ``[3, 9, 27]`` (``min_epochs=3``, ``reduction_factor=3``) run in
  waves (each rung complete before it promotes), 47 of the 48 candidates
  drawn (47 keeps it under a quarter of the grid's epochs); its points are
  the candidates that reached the top rung (trained as long as the
  grid's), its front as reported (``cv_results_`` at the rung each
  candidate reached) beside it; within a Pareto layer it promotes by the
  epsilon-net (``tie_break="epsilon_net"``, the default);
- ``mo-asha crowding``: the same waves, ``tie_break="crowding"`` (NSGA-II's
  crowding distance within each layer);
- ``mo-asha async``: the same, asynchronous (``n_jobs=1``, promotions as
  soon as a rung's best third grows), which trains more epochs;
- ``asha (accuracy)``: the waves promoting by accuracy alone;
- ``random``: ``RandomizedSearchCV`` over the grid's lists; since it trains
  each drawn candidate exactly as the grid did, ``random, expected`` is its
  mean over 2000 draws computed from the grid's scores (three draws vary
  by several points);
- ``optuna nsga-ii`` (population 4), ``optuna tpe`` (multi-objective TPE),
  ``bayes parego`` (``method="bayes"`` with objectives).

``--prune-end`` places the pruning: at 0.6 of ``max_epochs`` (Pruning's
default) the first two rungs come before it, and a rung scores the model
as it would finish there (pruned at once, without the fine-tuning the rest
of the schedule gives); at 0.1 every rung sees the pruned, fine-tuned model.

Each network seed (``--seeds``: the networks' initialisation, the grid) is
searched with each search seed (``--search-seeds``: the candidates drawn,
the samplers), and a method's figure is its mean over all of them, since
one draw of 11 candidates says little.

Acceptance (issue 42): mean over 3 seeds, mo-asha >= 95 % of the grid's
hypervolume with <= 25 % of its epochs, and above random, NSGA-II and TPE.

Run: ``python benchmarks/bench_multiobjective.py [--seeds 0 1 2] [--epochs 27] [--quick]``
"""

import argparse
import json
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import MLP, Categorical, NNClassifier, Pruning, Quantization, make_search

from _machine import cpu_flags  # benchmarks/ is on sys.path when a benchmark runs as a script

OBJECTIVES = ["accuracy", "neg_model_bytes"]


def space(widths, lrs, end=0.6):
    return {
        "module__hidden_layer_sizes": widths,
        "pruning": [None] + [Pruning("ln_structured", amount=a, end=end) for a in (0.5, 0.75, 0.9)],
        "quantization": [None, Quantization("dynamic_int8")],
        "lr": lrs,
    }


def model_space(grid):
    # the same finite choices for the model-based engines
    return {name: Categorical(list(values)) for name, values in grid.items()}


def hypervolume(accuracy, size, reference):
    """Area dominated by the points (accuracy up, bytes down) within the reference point."""
    ref_acc, ref_size = reference
    points = [(a - ref_acc, ref_size - s) for a, s in zip(accuracy, size)
              if np.isfinite(a) and np.isfinite(s) and a > ref_acc and s < ref_size]
    area, height = 0.0, 0.0
    for width, h in sorted(points, key=lambda p: (-p[0], -p[1])):
        if h > height:
            area += width * (h - height)
            height = h
    return area


def points(results, rows=None):
    acc = np.asarray(results["mean_test_accuracy"], dtype=float)
    size = -np.asarray(results["mean_test_neg_model_bytes"], dtype=float)
    if rows is not None:
        acc, size = acc[rows], size[rows]
    return acc, size


def run(X, y, seed, epochs, grid, n_iter_asha, search_seeds):
    """Every method on one network seed, the searches with each search seed; the figures."""
    pipe = make_pipeline(StandardScaler(), NNClassifier(MLP((64,)), max_epochs=epochs, early_stopping=False,
                                                         random_state=seed))
    common = dict(cv=3, objectives=OBJECTIVES)

    def timed(search):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            search.fit(X, y)
        return search, time.perf_counter() - start

    grid_search, grid_seconds = timed(make_search(pipe, grid, method="grid", n_jobs=1, **common))
    n_grid = len(grid_search.cv_results_["params"])
    grid_epochs = n_grid * epochs * 3
    acc, size = points(grid_search.cv_results_)
    best = np.nanmax(acc)
    reference = (best - 0.05, 1.1 * np.min(size[np.isclose(acc, best, atol=1e-12)]))
    full = hypervolume(acc, size, reference)
    figures = {"reference": [float(reference[0]), float(reference[1])], "grid_epochs": int(grid_epochs),
               "methods": {"grid": {"hypervolume": [1.0], "epochs_fraction": [1.0],
                                    "seconds": [round(grid_seconds, 1)]}}}

    def record(name, search, seconds, epochs_used, rows=None):
        entry = figures["methods"].setdefault(name, {"hypervolume": [], "epochs_fraction": [], "seconds": []})
        entry["hypervolume"].append(hypervolume(*points(search.cv_results_, rows), reference) / full)
        entry["epochs_fraction"].append(epochs_used / grid_epochs)
        entry["seconds"].append(round(seconds, 1))
        if rows is not None:
            entry.setdefault("hypervolume_as_reported", []).append(
                hypervolume(*points(search.cv_results_), reference) / full)
            entry.setdefault("top_rung", []).append(int(len(rows)))

    import optuna

    for s in search_seeds:
        rungs = dict(n_iter=n_iter_asha, min_epochs=3, reduction_factor=3, random_state=s)
        asha_runs = [
            # fuse=True runs the rungs in waves (successive halving with ASHA's promotion rule): a rung
            # is complete before it promotes; pruned candidates train as ordinary fits there
            ("mo-asha", dict(fuse=True, **rungs, **common)),
            ("mo-asha crowding", dict(fuse=True, tie_break="crowding", **rungs, **common)),
            ("mo-asha async", dict(n_jobs=1, **rungs, **common)),
            ("asha (accuracy)", dict(fuse=True, **rungs, cv=3, scoring=OBJECTIVES, refit="accuracy")),
        ]
        budget = None
        for name, kw in asha_runs:
            search, seconds = timed(make_search(pipe, grid, method="asha", **kw))
            budget = search.total_epochs_ if budget is None else budget
            # its points: the candidates trained as long as the grid's (the top rung)
            record(name, search, seconds, search.total_epochs_,
                   rows=np.flatnonzero(search.cv_results_["epochs"] == epochs))
        # the others get the whole fits nearest to the multi-objective waves' epochs
        trials = max(1, int(round(budget / (epochs * 3))))
        figures.setdefault("trials", trials)
        others = [
            ("random", dict(method="random", n_iter=trials, random_state=s)),
            ("optuna nsga-ii", dict(method="optuna", n_iter=trials,
                                    sampler=optuna.samplers.NSGAIISampler(population_size=4, seed=s))),
            ("optuna tpe", dict(method="optuna", n_iter=trials, sampler=optuna.samplers.TPESampler(seed=s))),
            ("bayes parego", dict(method="bayes", n_iter=trials, random_state=s)),
        ]
        for name, kw in others:
            space_ = grid if kw["method"] == "random" else model_space(grid)
            search, seconds = timed(make_search(pipe, space_, **kw, **common))
            record(name, search, seconds, trials * epochs * 3)
            if name == "random":
                figures.setdefault("random_vs_grid_max_abs_diff", []).append(
                    _same_as_grid(search.cv_results_, grid_search.cv_results_))
    # Random search trains each drawn candidate exactly as the grid did (same network seed, unfused),
    # so its expected hypervolume over many draws needs no training: the mean over 2000 draws of
    # `trials` grid candidates, beside the three draws above (which show that its scores are the grid's).
    rng = np.random.RandomState(seed)
    draws = [rng.choice(n_grid, trials, replace=False) for _ in range(2000)]
    figures["methods"]["random, expected"] = {
        "hypervolume": [float(np.mean([hypervolume(*points(grid_search.cv_results_, d), reference) for d in draws])
                              / full)],
        "epochs_fraction": [trials * epochs * 3 / grid_epochs], "seconds": [0.0]}
    return figures


def _same_as_grid(results, grid_results):
    """Largest difference between a search's mean accuracies and the grid's for the same candidates."""
    grid = {repr(sorted(p.items())): a for p, a in zip(grid_results["params"], grid_results["mean_test_accuracy"])}
    return float(max(abs(a - grid[repr(sorted(p.items()))])
                     for p, a in zip(results["params"], results["mean_test_accuracy"])))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=27)
    parser.add_argument("--search-seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds of the searches (draws, samplers), each run on every network seed")
    parser.add_argument("--prune-end", type=float, default=0.6,
                        help="Pruning's end: where its one-shot step falls, as a fraction of max_epochs "
                             "(0.6, the default of Pruning; 0.1 prunes before the first rung)")
    parser.add_argument("--quick", action="store_true", help="9 epochs, (64,) and (256,) only, 24 candidates")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    epochs = 9 if args.quick else args.epochs
    widths = [(64,), (256,)] if args.quick else [(64,), (256,), (256, 256)]
    grid = space(widths, [1e-3, 1e-2], end=args.prune_end)
    n_grid = int(np.prod([len(v) for v in grid.values()]))
    # the most candidates whose rungs stay within a quarter of the grid's epochs
    n_iter = n_grid
    while n_iter > 1 and _asha_epochs(n_iter, epochs) > 0.25 * n_grid * epochs:
        n_iter -= 1
    X, y = load_digits(return_X_y=True)
    print(f"digits, {n_grid} candidates, {epochs} epochs, 3-fold, pruning end={args.prune_end}; "
          f"mo-asha draws {n_iter}; CPU: {cpu_flags()}")
    runs = {}
    for seed in args.seeds:
        runs[seed] = f = run(X, y, seed, epochs, grid, n_iter, args.search_seeds)
        print(f"network seed {seed}: reference (accuracy {f['reference'][0]:.4f}, {f['reference'][1]:.0f} B); "
              f"others get {f['trials']} whole fits; search seeds {args.search_seeds}; random search's "
              f"accuracies against the grid's: max |diff| {max(f['random_vs_grid_max_abs_diff']):.1e}")
        for name, m in f["methods"].items():
            extra = ""
            if "hypervolume_as_reported" in m:
                extra = (f"  (as reported {np.mean(m['hypervolume_as_reported']):.1%}, "
                         f"top rung {m['top_rung']})")
            print(f"  {name:16s} hypervolume {np.mean(m['hypervolume']):6.1%} "
                  f"[{' '.join(f'{v:.3f}' for v in m['hypervolume'])}]  epochs "
                  f"{np.max(m['epochs_fraction']):5.1%}  {np.mean(m['seconds']):6.1f} s{extra}")
    names = list(next(iter(runs.values()))["methods"])
    mean = {name: float(np.mean([np.mean(runs[s]["methods"][name]["hypervolume"]) for s in runs]))
            for name in names}
    print("mean over seeds: " + ", ".join(f"{name} {value:.1%}" for name, value in mean.items()))
    mo = mean["mo-asha"]
    beats = all(mo > mean[other] for other in ("random", "optuna nsga-ii", "optuna tpe"))
    epochs_ok = all(max(runs[s]["methods"]["mo-asha"]["epochs_fraction"]) <= 0.25 for s in runs)
    print(f"target: mo-asha >= 95 % at <= 25 % of the epochs and above random, NSGA-II and TPE -> "
          f"{'met' if mo >= 0.95 and beats and epochs_ok else 'MISSED'} ({mo:.1%})")
    print(f"against random search's expectation ({mean['random, expected']:.1%}) rather than its own draws: "
          f"{'above' if mo > mean['random, expected'] else 'not above'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu_flags": cpu_flags(), "epochs": epochs, "prune_end": args.prune_end, "runs": runs,
                       "mean": mean}, f, indent=1)
    return runs, mean


def _asha_epochs(n, epochs, min_epochs=3, eta=3):
    """Epochs a synchronous count of ASHA's promotions trains per fold for n candidates."""
    from skopt_nn.search._rungs import rung_epochs

    rungs, total, count, done = rung_epochs(min_epochs, eta, epochs), 0, n, 0
    for rung in rungs:
        total += count * (rung - done)
        done, count = rung, count // eta
    return total


if __name__ == "__main__":
    main()
