"""``skopt-nn demo``: the whole product, end to end, on embedded data.

A student MLP with a full recipe (schedule, structured pruning, distillation
from a gradient-boosting teacher) is tuned by Bayesian search on sklearn's
digits; the results table, the model, ``cv_results.csv``, ``results.csv``,
plots and ``report.html`` are written to ``--out``.
"""

import os
import time
import warnings

from ._io import _failures_line, _params_text, _print_files, _quiet_search, _save_model, _say

__all__ = ["run"]


def run(args):
    """Run ``skopt-nn demo``; return its exit status."""
    import numpy as np
    from sklearn.base import clone
    from sklearn.datasets import load_digits
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    from .. import (
        MLP, Categorical, Distillation, LRSchedule, NNClassifier, Pruning, Quantization, Real,
        make_search, search_progress, within,
    )
    from ..specs._teacher_cache import TEACHERS
    from ..training._runtime import torch_threads
    from ._report import format_table, human_bytes, size_on_disk, write_cv_results, write_html, write_plots, write_rows

    quick = args.quick
    n_iter = args.n_iter if args.n_iter is not None else (3 if quick else 10)
    max_epochs = args.max_epochs if args.max_epochs is not None else (3 if quick else 20)
    cv = 2 if quick else 3
    teacher_iter = 10 if quick else 50
    out = args.out
    os.makedirs(out, exist_ok=True)

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)  # pixel intensities 0..16 -> 0..1
    if quick:
        X, y = X[:600], y[:600]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=args.random_state
    )
    _say(
        "skopt-nn demo: tune a small, pruned student network that learns from a\n"
        f"gradient-boosting teacher, on sklearn's digits ({len(X_train)} training and "
        f"{len(X_test)} test images of 8x8 pixels, 10 classes).\n"
    )

    teacher = HistGradientBoostingClassifier(max_iter=teacher_iter, random_state=args.random_state)
    student = NNClassifier(
        MLP((256,)),
        batch_size=64,
        lr=0.01,
        max_epochs=max_epochs,
        lr_schedule=LRSchedule("onecycle"),
        pruning=Pruning("ln_structured", amount=0.7, schedule="gradual", start=0.1, end=0.6, n_steps=4),
        # An unfitted teacher is fitted on each fit's rows only, so the
        # cross-validation scores below are honest; fits on the same rows (the
        # candidates on one fold) share it, so the search fits it once per fold.
        distillation=Distillation(teacher, temperature=4.0, alpha=0.5),
        random_state=args.random_state,
    )
    space = {
        "lr": Real(2e-3, 5e-2, log=True),
        "optimizer": Categorical(["adam", "adamw"]),
        "lr_schedule": Categorical(["onecycle", "cosine"]),
        "pruning__amount": Real(0.5, 0.9),
        "distillation__temperature": Real(1.0, 8.0, log=True),
        "distillation__alpha": Real(0.1, 0.9),
    }
    # Scored on accuracy and on the saved size, refitted on accuracy; the
    # smallest model within one point of the best is picked from the same
    # results (skopt_nn.within) and shown beside it.
    search = make_search(
        student, space, "bayes", n_iter=n_iter, cv=cv, n_jobs=args.n_jobs,
        random_state=args.random_state,
        scoring={"accuracy": "accuracy", "bytes": "neg_model_bytes"}, refit="accuracy",
    )
    _say(
        "recipe: MLP(256) student, Adam or AdamW, one-cycle or cosine learning rate, structured pruning\n"
        "(whole neurons removed, gradually), distillation from HistGradientBoosting\n"
        f"(max_iter={teacher_iter}) fitted on the training rows of each fold and shared by the\n"
        "candidates on that fold.\n"
        f"search: Bayesian, {n_iter} candidates x {cv}-fold CV over {', '.join(space)}\n"
    )

    # OpenMP (the teacher) and torch each default to every core; inside one
    # process that already shares the machine, one thread each is faster.
    with threadpool_limits(1), torch_threads(1):
        start = time.perf_counter()
        teacher_fitted = clone(teacher).fit(X_train, y_train)
        teacher_time = time.perf_counter() - start

        start = time.perf_counter()
        fits_before = TEACHERS.fits
        with _quiet_search() as caught, search_progress(search, desc="Bayesian search"):
            search.fit(X_train, y_train)
        search_time = time.perf_counter() - start
        teacher_fits = TEACHERS.fits - fits_before

        best = search.best_estimator_
        dense = clone(best).set_params(pruning=None, distillation=None)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dense.fit(X_train, y_train)
        dense_time = time.perf_counter() - start

        # The tuned recipe once more, its weights stored in int8 at the end
        # (the same seed: the same training, then quantization).
        quantized = clone(best).set_params(quantization=Quantization("dynamic_int8"))
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantized.fit(X_train, y_train)
        quantized_time = time.perf_counter() - start
        # The smallest saved model within one point of the best CV accuracy.
        results = search.cv_results_
        small_index = within("accuracy", tol=0.01, minimize="bytes")(results)
        small, small_time = best, search.refit_time_
        if small_index != search.best_index_:
            small = clone(student).set_params(**results["params"][small_index])
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                small.fit(X_train, y_train)
            small_time = time.perf_counter() - start
        n_predict = 5_000 if quick else 50_000
        predict_seconds = _predict_seconds({"dense": dense, "small": small, "best": best, "int8": quantized},
                                           np.resize(X_test, (n_predict, X_test.shape[1])))

    model_paths, save_note = _save_model(best, out)
    # Plain numbers, so results.csv holds numbers; the columns say how to show them.
    rows = [
        {
            "model": f"teacher: HistGradientBoosting ({teacher_iter} rounds)",
            "test_accuracy": float(teacher_fitted.score(X_test, y_test)),
            "size_bytes": size_on_disk(teacher_fitted),
            "fit_seconds": round(teacher_time, 3),
        },
        {
            "model": "student, dense (best lr and schedule only)",
            "test_accuracy": float(dense.score(X_test, y_test)),
            "sparsity": 0.0,
            "parameters": int(dense.n_params_),
            "size_bytes": size_on_disk(dense),
            "fit_seconds": round(dense_time, 3),
            "predict_seconds": predict_seconds["dense"],
        },
        {
            "model": "student, smallest within 1 point" + (" (= tuned)" if small is best else ""),
            "test_accuracy": float(small.score(X_test, y_test)),
            "cv_accuracy": float(results["mean_test_accuracy"][small_index]),
            "sparsity": float(getattr(small, "sparsity_", 0.0)),
            "parameters": int(small.n_params_),
            "size_bytes": size_on_disk(small),
            "fit_seconds": round(small_time, 3),
            "predict_seconds": predict_seconds["small"],
        },
        {
            "model": "student, tuned: pruned + distilled",
            "test_accuracy": float(best.score(X_test, y_test)),
            "cv_accuracy": float(search.best_score_),
            "sparsity": float(best.sparsity_),
            "parameters": int(best.n_params_),
            "size_bytes": os.path.getsize(model_paths[0]),
            "fit_seconds": round(search.refit_time_, 3),
            "predict_seconds": predict_seconds["best"],
        },
        {
            "model": "student, tuned + int8 weights",
            "test_accuracy": float(quantized.score(X_test, y_test)),
            "sparsity": float(quantized.sparsity_),
            "parameters": int(quantized.n_params_),
            "size_bytes": size_on_disk(quantized),
            "fit_seconds": round(quantized_time, 3),
            "predict_seconds": predict_seconds["int8"],
        },
    ]
    columns = [
        ("model", "model"),
        ("test_accuracy", "test accuracy", "{:.3f}"),
        ("cv_accuracy", "cv accuracy", "{:.3f}"),
        ("sparsity", "sparsity", "{:.0%}"),
        ("parameters", "parameters", "{:,}"),
        ("size_bytes", "size on disk", human_bytes),
        ("fit_seconds", "fit time", "{:.1f} s"),
        ("predict_seconds", f"predict {n_predict:,} rows", "{:.3f} s"),
    ]
    table = format_table(rows, columns)
    _say("\n" + table + "\n")
    _say(f"best recipe: {_params_text(search.best_params_)}")
    sizes = -np.asarray(results["mean_test_bytes"], dtype=float)
    accuracy = np.asarray(results["mean_test_accuracy"], dtype=float)
    best_i = search.best_index_
    _say(
        f"accuracy-only pick: cv accuracy {accuracy[best_i]:.3f}, {human_bytes(sizes[best_i])}; "
        f"smallest within 1 point: cv accuracy {accuracy[small_index]:.3f}, "
        f"{human_bytes(sizes[small_index])} ({sizes[best_i] / sizes[small_index]:.1f}x smaller)"
        + ("" if small is best else f": {_params_text(results['params'][small_index])}")
    )
    _say(f"search time: {search_time:.1f} s for {n_iter} candidates x {cv} folds")
    _say(_teacher_line(teacher_fits, n_fits=n_iter * cv + 1, n_sets=cv + 1, n_jobs=args.n_jobs))
    failures = _failures_line(search, caught)
    if failures:
        _say(failures)

    written = list(model_paths)
    written.append(write_cv_results(search, os.path.join(out, "cv_results.csv")))
    results_csv = os.path.join(out, "results.csv")
    write_rows(results_csv, rows, [column[0] for column in columns])
    written.append(results_csv)
    images, plot_note = write_plots(out, search=search, n_rows=len(X_train))
    written += images
    details = [
        ("best recipe", _params_text(search.best_params_)),
        ("search", f"Bayesian, {n_iter} candidates x {cv}-fold CV, {search_time:.1f} s"),
        ("data", f"digits: {len(X_train)} training, {len(X_test)} test images"),
    ]
    written.append(
        write_html(
            os.path.join(out, "report.html"),
            title="skopt-nn demo: a pruned, distilled network on digits",
            intro=(
                "A student MLP tuned by Bayesian search over its learning rate, "
                "schedule, pruning amount and distillation settings; the teacher is "
                "fitted on each fit's own rows, so the CV scores are leak-free, and "
                "shared by the fits on the same rows."
            ),
            table_rows=rows,
            columns=columns,
            details=details,
            images=images,
        )
    )
    _print_files(written, notes=(save_note, plot_note))
    _say(f"\nopen {os.path.join(out, 'report.html')} for the report; "
         f"try: skopt-nn inspect {model_paths[-1]}")
    return 0


def _predict_seconds(models, X):
    """Median predict time of each model on ``X``, the models taken in turn (the order moves timings)."""
    times = {name: [] for name in models}
    for model in models.values():
        model.predict(X[:100])  # warm-up
    for _ in range(3):
        for name, model in models.items():
            start = time.perf_counter()
            model.predict(X)
            times[name].append(time.perf_counter() - start)
    return {name: round(sorted(t)[1], 4) for name, t in times.items()}


def _teacher_line(teacher_fits, *, n_fits, n_sets, n_jobs):
    """How many teachers the search fitted, next to the student fits it made."""
    if n_jobs != 1:  # the workers' fits are counted in the workers
        return (f"teacher: fitted once per training set in each worker ({n_sets} training sets, "
                f"{n_fits} student fits)")
    return (f"teacher fits: {teacher_fits} for {n_fits} student fits ({n_sets} training sets: "
            "one teacher per fold and one for the refit, shared by the candidates)")
