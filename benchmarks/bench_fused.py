"""Fused search against one-by-one searches, side by side in one process.

sklearn's digits, ``StandardScaler`` + ``NNClassifier(MLP((128,)),
max_epochs=20, n_iter_no_change=None)``:

1. ``grid``: ``lr`` in {1e-3, 3e-3, 1e-2, 3e-2} x ``weight_decay`` in
   {0, 1e-4, 1e-3}, ``cv=3`` (36 fits): ``make_search(..., method="grid",
   fuse=True)`` against ``GridSearchCV(n_jobs=1)`` and ``GridSearchCV(n_jobs=2)``
   (its workers started inside the timing, as a user's first search starts
   them), medians of three alternated runs; the largest difference of a candidate's ``mean_test_score`` and the
   difference of ``best_score_``;
2. ``pruning`` and ``distillation``: a pruning x ``lr`` grid (``ln_structured``
   at 50 and 75 %, gradual ``l1_unstructured`` at 90 %, two rates: 18 fits)
   and a distillation ``alpha`` x ``lr`` grid (a logistic-regression
   teacher, 12 fits), fused against ``GridSearchCV(n_jobs=1)``, medians of
   three alternated runs; the largest difference of a candidate's mean test
   score and, for pruning, of its mean sparsity (the ``sparsity`` scorer);
3. ``architectures``: the same with two hidden sizes, (64,) and (256, 128),
   x four learning rates (24 fits, two fused groups);
3. ``random``: a 12-candidate random search over ``lr``, ``weight_decay`` and
   ``module__dropout`` (36 fits), fused against one by one;
4. ``asha``: the ASHA search of ``bench_asha.py`` (1 200 rows, 27
   candidates over ``lr``, four hidden shapes and three schedules,
   ``max_epochs=27``, 3 folds), fused against its one-by-one form: wall
   time, epochs against a full search, best CV score;
5. ``members``: training alone (``fit_fused`` against plain fits, no search
   around them), K = 4, 16, 36, 64 members of ``MLP((128,))``, 10 epochs;
7. ``ensemble``: ``n_ensemble=5`` against one network (``MLP((128,))``, 30
   epochs) on digits and breast_cancer: test log-loss and accuracy, means
   over three train/test splits, and the fit time ratio;
6. ``width``: 16 members of one hidden layer of 32 to 2048 units: where the
   stacked step stops paying.

Every search includes its refit on all rows. Each timing is one run after a
warm-up fit; torch threads are left to ``n_threads=None`` (a fused group's
larger steps get more threads than a small plain fit, as the policy says).

Run: ``python benchmarks/bench_fused.py [--quick]``
"""

import argparse
import os
import sys
import time

import numpy as np
from joblib.externals.loky import get_reusable_executor
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn.linear_model import LogisticRegression

from skopt_nn import MLP, Distillation, NNClassifier, Pruning, make_search
from skopt_nn.search.scoring import resolve_scoring
from skopt_nn.training.fused import fit_fused

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _pipe(epochs, **module):
    return make_pipeline(StandardScaler(), NNClassifier(
        MLP(**(module or {"hidden_layer_sizes": (128,)})), max_epochs=epochs, n_iter_no_change=None,
        random_state=0))


def _compare(name, fused, plain):
    diff = np.nanmax(np.abs(fused.cv_results_["mean_test_score"] - plain.cv_results_["mean_test_score"]))
    return {"score_diff": float(diff), "best_diff": float(abs(fused.best_score_ - plain.best_score_))}


def grid(X, y, epochs, repeats=1):
    space = {"lr": [1e-3, 3e-3, 1e-2, 3e-2], "weight_decay": [0.0, 1e-4, 1e-3]}
    pipe = _pipe(epochs)
    t_fused, t_plain = [], []
    for _ in range(repeats):  # alternated, medians: single runs vary by about 20 % here
        fused, t = _timed(lambda: make_search(pipe, space, "grid", fuse=True, cv=3).fit(X, y))
        t_fused.append(t)
        grid_ = fused.param_grid
        plain, t = _timed(lambda: GridSearchCV(pipe, grid_, cv=3).fit(X, y))
        t_plain.append(t)
    t_fused, t_plain = float(np.median(t_fused)), float(np.median(t_plain))
    get_reusable_executor().shutdown(wait=True)  # the n_jobs=2 run starts its workers
    _, t_two = _timed(lambda: GridSearchCV(pipe, grid_, cv=3, n_jobs=2).fit(X, y))
    out = {"fused_s": t_fused, "plain_s": t_plain, "plain2_s": t_two,
           "speedup": t_plain / t_fused, "speedup_vs_2": t_two / t_fused, **_compare("grid", fused, plain)}
    print(f"[grid] 36 fits: GridSearchCV n_jobs=1 {t_plain:.1f} s, n_jobs=2 {t_two:.1f} s, fused "
          f"{t_fused:.1f} s -> {out['speedup']:.2f}x (vs n_jobs=2: {out['speedup_vs_2']:.2f}x); "
          f"max |d mean_test_score| {out['score_diff']:.4f}, |d best_score_| {out['best_diff']:.4f}")
    return out


def _recipe_grid(name, X, y, pipe, space, scoring, repeats):
    """A fused grid against GridSearchCV(n_jobs=1) over the same grid, alternated, medians."""
    t_fused, t_plain = [], []
    for _ in range(repeats):
        fused, t = _timed(lambda: make_search(pipe, space, "grid", fuse=True, cv=3, scoring=scoring,
                                              refit="score").fit(X, y))
        t_fused.append(t)
        grid_ = fused.param_grid
        plain, t = _timed(lambda: GridSearchCV(pipe, grid_, cv=3, scoring=resolve_scoring(scoring),
                                               refit="score").fit(X, y))
        t_plain.append(t)
    t_fused, t_plain = float(np.median(t_fused)), float(np.median(t_plain))
    diff = np.nanmax(np.abs(fused.cv_results_["mean_test_score"] - plain.cv_results_["mean_test_score"]))
    out = {"fused_s": t_fused, "plain_s": t_plain, "speedup": t_plain / t_fused, "score_diff": float(diff)}
    if "sparsity" in scoring:
        out["sparsity_diff"] = float(np.nanmax(np.abs(fused.cv_results_["mean_test_sparsity"]
                                                      - plain.cv_results_["mean_test_sparsity"])))
    n_fits = len(fused.cv_results_["params"]) * 3
    extra = f", max |d sparsity| {out['sparsity_diff']:.4f}" if "sparsity_diff" in out else ""
    print(f"[{name}] {n_fits} fits: GridSearchCV n_jobs=1 {t_plain:.1f} s, fused {t_fused:.1f} s -> "
          f"{out['speedup']:.2f}x; max |d mean_test_score| {out['score_diff']:.4f}{extra}")
    return out


def pruning_grid(X, y, epochs, repeats=1):
    """Structured and unstructured pruning amount x lr: every member prunes by its own schedule."""
    space = {"pruning": [Pruning("ln_structured", amount=a) for a in (0.5, 0.75)]
             + [Pruning("l1_unstructured", amount=0.9, schedule="gradual")],
             "lr": [3e-3, 1e-2]}
    return _recipe_grid("pruning x lr", X, y, _pipe(epochs), space,
                        {"score": "accuracy", "sparsity": "sparsity"}, repeats)


def distillation_grid(X, y, epochs, repeats=1):
    """Distillation alpha x lr from a logistic-regression teacher (one teacher per fold, shared)."""
    teacher = LogisticRegression(max_iter=300)
    pipe = _pipe(epochs)
    pipe.set_params(nnclassifier__distillation=Distillation(teacher, temperature=4.0))
    space = {"distillation__alpha": [0.3, 0.7], "lr": [3e-3, 1e-2]}
    return _recipe_grid("distillation alpha x lr", X, y, pipe, space, {"score": "accuracy"}, repeats)


def architectures(X, y, epochs):
    space = {"lr": [1e-3, 3e-3, 1e-2, 3e-2], "module__hidden_layer_sizes": [(64,), (256, 128)]}
    pipe = _pipe(epochs)
    fused, t_fused = _timed(lambda: make_search(pipe, space, "grid", fuse=True, cv=3).fit(X, y))
    plain, t_plain = _timed(lambda: GridSearchCV(pipe, fused.param_grid, cv=3).fit(X, y))
    out = {"speedup": t_plain / t_fused, **_compare("arch", fused, plain)}
    print(f"[architectures] 24 fits, 2 groups: plain {t_plain:.1f} s, fused {t_fused:.1f} s -> "
          f"{out['speedup']:.2f}x; max |d mean_test_score| {out['score_diff']:.4f}")
    return out


def random_search(X, y, epochs):
    from skopt_nn import Real

    space = {"lr": Real(1e-3, 3e-2, log=True), "weight_decay": Real(1e-5, 1e-3, log=True),
             "module__dropout": Real(0.0, 0.3)}
    pipe = _pipe(epochs)
    fused, t_fused = _timed(lambda: make_search(pipe, space, "random", fuse=True, n_iter=12, cv=3,
                                                random_state=0).fit(X, y))
    plain, t_plain = _timed(lambda: RandomizedSearchCV(pipe, fused.param_distributions, n_iter=12, cv=3,
                                                       random_state=0).fit(X, y))
    out = {"speedup": t_plain / t_fused, **_compare("random", fused, plain)}
    print(f"[random] 12 candidates x 3 folds (lr, weight_decay, dropout): plain {t_plain:.1f} s, fused "
          f"{t_fused:.1f} s -> {out['speedup']:.2f}x; max |d mean_test_score| {out['score_diff']:.4f}")
    return out


def asha(X, y, rows, candidates, epochs):
    from bench_asha import _space

    X, y = X[:rows], y[:rows]
    pipe = _pipe(epochs)
    pipe.set_params(nnclassifier__n_iter_no_change=10)
    kw = dict(n_iter=candidates, cv=3, random_state=0, refit=False)
    fused, t_fused = _timed(lambda: make_search(pipe, _space(), "asha", fuse=True, **kw).fit(X, y))
    plain, t_plain = _timed(lambda: make_search(pipe, _space(), "asha", **kw).fit(X, y))
    full = candidates * epochs * 3
    out = {"speedup": t_plain / t_fused, "epochs_fused": fused.total_epochs_ / full,
           "epochs_plain": plain.total_epochs_ / full, "best_fused": fused.best_score_,
           "best_plain": plain.best_score_}
    print(f"[asha] {candidates} candidates, max_epochs={epochs}: one by one {t_plain:.1f} s "
          f"({out['epochs_plain']:.1%} of a full search's epochs, best cv {plain.best_score_:.4f}); fused "
          f"{t_fused:.1f} s ({out['epochs_fused']:.1%}, best cv {fused.best_score_:.4f}) -> {out['speedup']:.2f}x")
    return out


def _members(Xs, y, k, width, epochs):
    lrs = np.geomspace(1e-3, 3e-2, k)
    base = NNClassifier(MLP((width,)), max_epochs=epochs, n_iter_no_change=None, random_state=0)
    ests = [clone(base).set_params(lr=float(lr), random_state=i) for i, lr in enumerate(lrs)]
    _, t_plain = _timed(lambda: [clone(e).fit(Xs, y) for e in ests])
    _, t_fused = _timed(lambda: fit_fused([(clone(e), Xs, y, None) for e in ests]))
    return t_plain, t_fused


def members(X, y, sizes, epochs):
    Xs = StandardScaler().fit_transform(X).astype(np.float32)
    out = {}
    for k in sizes:
        t_plain, t_fused = _members(Xs, y, k, 128, epochs)
        out[k] = t_plain / t_fused
        print(f"[members] K={k:3d}: {k} plain fits {t_plain:6.2f} s, fused {t_fused:5.2f} s -> {out[k]:.2f}x")
    return out


def width(X, y, widths, epochs):
    Xs = StandardScaler().fit_transform(X).astype(np.float32)
    out = {}
    for w in widths:
        t_plain, t_fused = _members(Xs, y, 16, w, epochs)
        out[w] = t_plain / t_fused
        print(f"[width] 16 members of MLP(({w},)): plain {t_plain:6.2f} s, fused {t_fused:5.2f} s -> {out[w]:.2f}x")
    return out


def ensemble(splits, epochs, k=5):
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import train_test_split

    out = {}
    for name, loader in (("digits", load_digits), ("breast_cancer", load_breast_cancer)):
        X, y = loader(return_X_y=True)
        rows = {1: [], k: []}
        for seed in range(splits):
            Xa, Xb, ya, yb = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
            for n in (1, k):
                model = _pipe(epochs)
                model.set_params(nnclassifier__n_ensemble=n, nnclassifier__n_iter_no_change=10,
                                 nnclassifier__random_state=seed)
                _, t = _timed(lambda: model.fit(Xa, ya))
                proba = model.predict_proba(Xb)
                rows[n].append((log_loss(yb, proba), accuracy_score(yb, model.predict(Xb)), t))
        single, many = np.mean(rows[1], axis=0), np.mean(rows[k], axis=0)
        out[name] = {"logloss_1": single[0], "logloss_k": many[0], "acc_1": single[1], "acc_k": many[1],
                     "time_ratio": many[2] / single[2]}
        print(f"[ensemble] {name}: one net log-loss {single[0]:.4f} acc {single[1]:.4f}; n_ensemble={k} "
              f"log-loss {many[0]:.4f} acc {many[1]:.4f}; fit time {many[2] / single[2]:.2f}x one net's "
              f"({splits} splits)")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and members, for a smoke run")
    parser.add_argument("--parts", nargs="+", default=None,
                        help="run only these parts (grid pruning distillation architectures random asha "
                             "members width ensemble)")
    args = parser.parse_args(argv)
    X, y = load_digits(return_X_y=True)
    epochs = 4 if args.quick else 20
    repeats = 1 if args.quick else 3
    # warm-up: the first fit of a process pays one-off set-up costs
    fit_fused([(NNClassifier(MLP((8,)), max_epochs=1), X[:100], y[:100], None)])
    NNClassifier(MLP((8,)), max_epochs=1).fit(X[:100], y[:100])
    if args.parts:
        parts = {"grid": lambda: grid(X, y, epochs, repeats),
                 "pruning": lambda: pruning_grid(X, y, epochs, repeats),
                 "distillation": lambda: distillation_grid(X, y, epochs, repeats)}
        return {name: parts[name]() for name in args.parts}
    results = {"grid": grid(X, y, epochs, repeats)}
    results["pruning"] = pruning_grid(X, y, epochs, repeats)
    results["distillation"] = distillation_grid(X, y, epochs, repeats)
    results["architectures"] = architectures(X, y, epochs)
    results["random"] = random_search(X, y, epochs)
    results["asha"] = asha(X, y, 300 if args.quick else 1200, 9 if args.quick else 27, 9 if args.quick else 27)
    results["members"] = members(X, y, (4, 16) if args.quick else (4, 16, 36, 64), 3 if args.quick else 10)
    results["width"] = width(X, y, (32, 512) if args.quick else (32, 128, 512, 2048), 2 if args.quick else 5)
    results["ensemble"] = ensemble(1 if args.quick else 3, 5 if args.quick else 30)
    return results


if __name__ == "__main__":
    main()
