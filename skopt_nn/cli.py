"""The ``skopt-nn`` command: demo, tune, predict and inspect.

``skopt-nn demo`` runs the whole product on embedded data; ``skopt-nn tune``
searches a network's recipe on a built-in data set or a CSV file and writes
the best model, ``cv_results.csv`` and plots; ``skopt-nn predict`` and
``skopt-nn inspect`` use and describe a saved model. Mistakes in the input
are reported in one line and a non-zero exit status (2), never a traceback;
set ``SKOPT_NN_TRACEBACK=1`` to see the traceback of an unexpected error.
"""

import argparse
import contextlib
import math
import os
import sys
import time
import warnings

from ._cli_io import BUILTIN_DATASETS, CLIError, load_dataset, load_model, read_csv, read_space_file

__all__ = ["main", "build_parser"]

_METHODS = ("bayes", "grid", "random", "halving")
_DEFAULT_OUT = "skopt_nn_out"
# Dimensions of the default space a grid search keeps: the full default
# space has eight, whose grid would hold thousands of candidates.
_GRID_DIMENSIONS = ("lr", "lr_schedule", "module__width")


def _say(*args):
    print(*args, flush=True)


# -- shared pieces ----------------------------------------------------------------


@contextlib.contextmanager
def _quiet_search():
    """Hide the per-fit warnings of a search; keep the first fit error to report."""
    from sklearn.exceptions import FitFailedWarning

    caught = {"error": None}
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        yield caught
    for record in records:
        if issubclass(record.category, FitFailedWarning):
            lines = [line for line in str(record.message).splitlines() if line.strip()]
            caught["error"] = lines[-1].strip() if lines else None
            break


def _failures_line(search, caught):
    import numpy as np

    key = "mean_test_score" if "mean_test_score" in search.cv_results_ else None
    if key is None:
        return None
    scores = np.asarray(search.cv_results_[key], dtype=float)
    n_failed = int(np.isnan(scores).sum())
    if not n_failed:
        return None
    line = f"{n_failed} of {len(scores)} candidates failed to fit and were skipped"
    if caught.get("error"):
        line += f"; first error: {caught['error']}"
    return line


def _save_model(model, out_dir):
    """Write ``model.joblib`` and, when the model allows it, ``model.safetensors``."""
    import joblib

    paths = [os.path.join(out_dir, "model.joblib")]
    joblib.dump(model, paths[0])
    note = None
    try:
        from .io import save
    except ImportError as exc:  # safetensors is an optional extra
        note = f"pickle-free model.safetensors skipped: {exc}"
    else:
        path = os.path.join(out_dir, "model.safetensors")
        try:
            save(model, path)
            paths.append(path)
        except (TypeError, ValueError, ImportError) as exc:
            note = f"pickle-free model.safetensors skipped: {exc}"
    return paths, note


def _short_name(name):
    return name.split("__", 1)[1] if name.startswith(("nn__", "net__")) else name


def _show_value(value):
    if isinstance(value, float):
        return f"{value:.3g}"
    return repr(value) if not isinstance(value, str) else value


def _params_text(params):
    return ", ".join(f"{_short_name(k)}={_show_value(v)}" for k, v in params.items())


def _print_files(paths):
    _say("\nfiles written:")
    for path in paths:
        _say(f"  {path}")


# -- demo -------------------------------------------------------------------------


def _demo(args):
    import joblib
    import numpy as np
    from sklearn.base import clone
    from sklearn.datasets import load_digits
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    from . import (
        MLP, Categorical, Distillation, LRSchedule, NNClassifier, Pruning, Real, make_search,
        search_progress,
    )
    from ._report import format_table, human_bytes, size_on_disk, write_cv_results, write_html, write_plots

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
        # An unfitted teacher is fitted inside every fit of the student, on that
        # fit's rows only, so the cross-validation scores below are honest.
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
    search = make_search(
        student, space, "bayes", n_iter=n_iter, cv=cv, n_jobs=args.n_jobs,
        random_state=args.random_state,
    )
    _say(
        "recipe: MLP(256) student, Adam or AdamW, one-cycle or cosine learning rate, structured pruning\n"
        "(whole neurons removed, gradually), distillation from HistGradientBoosting\n"
        f"(max_iter={teacher_iter}) refitted on the training rows of every fit.\n"
        f"search: Bayesian, {n_iter} candidates x {cv}-fold CV over {', '.join(space)}\n"
    )

    # OpenMP (the teacher) and torch each default to every core; inside one
    # process that already shares the machine, one thread each is faster.
    with threadpool_limits(1), _torch_threads(1):
        start = time.perf_counter()
        teacher_fitted = clone(teacher).fit(X_train, y_train)
        teacher_time = time.perf_counter() - start

        start = time.perf_counter()
        with _quiet_search() as caught, search_progress(search, desc="Bayesian search"):
            search.fit(X_train, y_train)
        search_time = time.perf_counter() - start

        best = search.best_estimator_
        dense = clone(best).set_params(pruning=None, distillation=None)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dense.fit(X_train, y_train)
        dense_time = time.perf_counter() - start

    model_paths, save_note = _save_model(best, out)
    rows = [
        {
            "model": f"teacher: HistGradientBoosting ({teacher_iter} rounds)",
            "test": f"{teacher_fitted.score(X_test, y_test):.3f}",
            "size": human_bytes(size_on_disk(teacher_fitted)),
            "time": f"{teacher_time:.1f} s",
        },
        {
            "model": "student, dense (best lr and schedule only)",
            "test": f"{dense.score(X_test, y_test):.3f}",
            "sparsity": "0%",
            "params": f"{dense.n_params_:,}",
            "size": human_bytes(size_on_disk(dense)),
            "time": f"{dense_time:.1f} s",
        },
        {
            "model": "student, tuned: pruned + distilled",
            "test": f"{best.score(X_test, y_test):.3f}",
            "cv": f"{search.best_score_:.3f}",
            "sparsity": f"{best.sparsity_:.0%}",
            "params": f"{best.n_params_:,}",
            "size": human_bytes(os.path.getsize(model_paths[0])),
            "time": f"{search.refit_time_:.1f} s",
        },
    ]
    columns = [
        ("model", "model"),
        ("test", "test accuracy"),
        ("cv", "cv accuracy"),
        ("sparsity", "sparsity"),
        ("params", "parameters"),
        ("size", "size on disk"),
        ("time", "fit time"),
    ]
    table = format_table(rows, columns)
    _say("\n" + table + "\n")
    _say(f"best recipe: {_params_text(search.best_params_)}")
    _say(f"search time: {search_time:.1f} s for {n_iter} candidates x {cv} folds")
    failures = _failures_line(search, caught)
    if failures:
        _say(failures)

    written = list(model_paths)
    written.append(write_cv_results(search, os.path.join(out, "cv_results.csv")))
    results_csv = os.path.join(out, "results.csv")
    _write_rows(results_csv, rows, columns)
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
                "refitted inside every fit, so the CV scores are leak-free."
            ),
            table_rows=rows,
            columns=columns,
            details=details,
            images=images,
        )
    )
    for note in (save_note, plot_note):
        if note:
            _say(note)
    _print_files(written)
    _say(f"\nopen {os.path.join(out, 'report.html')} for the report; "
         f"try: skopt-nn inspect {model_paths[-1]}")
    return 0


@contextlib.contextmanager
def _torch_threads(n):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _write_rows(path, rows, columns):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([header for _, header in columns])
        for row in rows:
            writer.writerow(["" if row.get(k) is None else row[k] for k, _ in columns])


# -- tune -------------------------------------------------------------------------


def _preprocessor(X):
    """Scale numbers; impute and one-hot encode only when the data needs it.

    A plain ``StandardScaler`` keeps the model savable without pickle.
    """
    import pandas as pd
    from sklearn.preprocessing import StandardScaler

    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c])]
    other = [c for c in X.columns if c not in numeric]
    if not other and not X[numeric].isna().any().any():
        return StandardScaler(), "standard scaling"
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    parts = []
    if numeric:
        parts.append(("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric))
    if other:
        parts.append((
            "cat",
            make_pipeline(
                SimpleImputer(strategy="most_frequent"),
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
            ),
            other,
        ))
    text = f"{len(numeric)} numeric columns imputed and scaled"
    if other:
        text += f", {len(other)} categorical columns one-hot encoded"
    return ColumnTransformer(parts, sparse_threshold=0.0), text


def _backend(args):
    """The joblib backend block the search runs in."""
    import joblib

    if args.backend == "loky":
        if args.scheduler:
            raise CLIError("--scheduler only applies to --backend dask.")
        return contextlib.nullcontext()
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise CLIError("--backend dask needs dask.distributed: pip install 'skopt-nn[dask]'") from None

    @contextlib.contextmanager
    def block():
        with contextlib.ExitStack() as stack:
            if args.scheduler:
                try:
                    client = stack.enter_context(Client(args.scheduler, timeout="10s"))
                except (OSError, ValueError) as exc:  # unreachable, or not an address
                    raise CLIError(f"Cannot reach the Dask scheduler at {args.scheduler}: {exc}") from None
            else:
                n_workers = args.n_jobs if args.n_jobs and args.n_jobs > 0 else os.cpu_count() or 1
                cluster = stack.enter_context(
                    LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                 dashboard_address=None)
                )
                client = stack.enter_context(Client(cluster))
            _say(f"Dask: {len(client.scheduler_info().get('workers', {}))} workers at {client.scheduler.address}")
            stack.enter_context(joblib.parallel_config(backend="dask"))
            yield

    return block()


def _tune(args):
    import numpy as np
    from sklearn.pipeline import Pipeline
    from threadpoolctl import threadpool_limits

    from . import MLP, NNClassifier, NNRegressor, default_space, make_search, search_progress
    from ._report import write_cv_results, write_plots, write_html
    from .spaces import SearchSpace

    if args.n_iter is not None and args.n_iter < 1:
        raise CLIError(f"--n-iter must be at least 1; got {args.n_iter}.")
    if args.cv < 2:
        raise CLIError(f"--cv must be at least 2; got {args.cv}.")
    data = load_dataset(args.data, target=args.target, task=args.task)
    space, fixed = read_space_file(args.space) if args.space else (None, {})

    cls = NNClassifier if data.task == "classification" else NNRegressor
    prep, prep_text = _preprocessor(data.X)
    pipe = Pipeline([
        ("prep", prep),
        ("nn", cls(MLP(), max_epochs=args.max_epochs, random_state=args.random_state)),
    ])
    if fixed:
        try:
            pipe.set_params(**{f"nn__{k}": v for k, v in fixed.items()})
        except ValueError as exc:
            raise CLIError(f"Bad [params] in {args.space}: {exc}") from None
    if space is None:
        space = default_space(pipe)
        if args.search == "grid":
            space = SearchSpace({k: v for k, v in space.items() if _short_name(k) in _GRID_DIMENSIONS})

    kwargs = {"cv": args.cv, "n_jobs": args.n_jobs}
    n_iter = 10 if args.n_iter is None else args.n_iter
    if args.search in ("bayes", "random"):
        kwargs["n_iter"] = n_iter
    elif args.search == "halving":
        kwargs["n_candidates"] = n_iter
    if args.search != "grid":
        kwargs["random_state"] = args.random_state
    try:
        search = make_search(pipe, space, args.search, **kwargs)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"Bad search space: {exc}") from None

    out = args.out
    os.makedirs(out, exist_ok=True)
    _say(f"data: {data.name}: {len(data.X)} rows, {data.X.shape[1]} columns, target {data.target!r}")
    _say(f"task: {data.task} ({data.how})")
    _say(f"model: {prep_text}, then {cls.__name__}(MLP(), max_epochs={args.max_epochs})")
    dims = ", ".join(_short_name(k) for k in search_space_names(search))
    _say(f"search: {args.search} over {dims}; {args.cv}-fold CV\n")

    start = time.perf_counter()
    # Small networks train fastest on one thread per fit; --n-jobs uses more cores.
    with threadpool_limits(1), _torch_threads(1), _backend(args), _quiet_search() as caught, \
            search_progress(search, desc=f"{args.search} search"):
        search.fit(data.X, data.y)
    elapsed = time.perf_counter() - start

    scores = np.asarray(search.cv_results_["mean_test_score"], dtype=float)
    metric = "accuracy" if data.task == "classification" else "R^2"
    _say(f"\nbest cv {metric}: {search.best_score_:.4f}  ({len(scores)} candidates, {elapsed:.1f} s)")
    _say(f"best parameters: {_params_text(search.best_params_)}")
    failures = _failures_line(search, caught)
    if failures:
        _say(failures)

    best = search.best_estimator_
    written, save_note = _save_model(best, out)
    written.append(write_cv_results(search, os.path.join(out, "cv_results.csv")))
    images, plot_note = write_plots(out, search=search, n_rows=len(data.X))
    written += images
    rows = [{"model": f"{cls.__name__} (best of {len(scores)})", "cv": f"{search.best_score_:.4f}",
             "params": f"{best[-1].n_params_:,}", "time": f"{elapsed:.1f} s"}]
    columns = [("model", "model"), ("cv", f"cv {metric}"), ("params", "parameters"), ("time", "search time")]
    written.append(
        write_html(
            os.path.join(out, "report.html"),
            title=f"skopt-nn tune: {os.path.basename(data.name)}",
            intro=f"{args.search} search, {args.cv}-fold cross-validation; task: {data.task}.",
            table_rows=rows,
            columns=columns,
            details=[("best parameters", _params_text(search.best_params_)), ("preprocessing", prep_text)],
            images=images,
        )
    )
    for note in (save_note, plot_note):
        if note:
            _say(note)
    _print_files(written)
    _say(f"\npredict with: skopt-nn predict {written[0]} DATA.csv")
    return 0


def search_space_names(search):
    for attr in ("search_spaces", "param_grid", "param_distributions"):
        value = getattr(search, attr, None)
        if value is not None:
            return list(value)
    return []


# -- predict and inspect ------------------------------------------------------------


def _feature_frame(model, frame, path):
    """The columns of ``frame`` the model was trained on, in its order."""
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        missing = [str(n) for n in names if n not in frame.columns]
        if missing:
            raise CLIError(
                f"{path} lacks column(s) {missing} that the model was trained on."
            )
        return frame[list(names)]
    n = getattr(model, "n_features_in_", None)
    if n is not None and frame.shape[1] != n:
        raise CLIError(f"The model expects {n} columns; {path} has {frame.shape[1]}.")
    return frame.to_numpy()


def _predict(args):
    model = load_model(args.model)
    frame = read_csv(args.data)  # says so if pandas is missing
    import pandas as pd
    X = _feature_frame(model, frame, args.data)
    if args.proba:
        if not hasattr(model, "predict_proba"):
            raise CLIError("--proba needs a classifier; this model is a regressor.")
        proba = model.predict_proba(X)
        result = pd.DataFrame(proba, columns=[f"proba_{c}" for c in model.classes_])
    else:
        prediction = model.predict(X)
        result = pd.DataFrame(prediction.reshape(len(X), -1))
        result.columns = ["prediction"] if result.shape[1] == 1 else [
            f"prediction_{i}" for i in range(result.shape[1])
        ]
    if args.output:
        result.to_csv(args.output, index=False)
        print(f"wrote {len(result)} predictions to {args.output}", file=sys.stderr)
    else:
        result.to_csv(sys.stdout, index=False)
    return 0


def _compact(value):
    """One-line text for a parameter value: specs show only what differs from their defaults."""
    from ._tensorboard import _changed, _short

    text = _short(value)
    if text is not None:
        return text
    if hasattr(value, "get_params"):
        inner = ", ".join(f"{k}={v}" for k, v in _changed(value) if "." not in k)
        return f"{type(value).__name__}({inner})"
    return repr(value)


def _inspect(args):
    from ._report import human_bytes
    from ._tensorboard import _changed
    from .plotting import _fitted_nn

    model = load_model(args.model)
    try:
        nn = _fitted_nn(model, "skopt-nn inspect")
    except TypeError as exc:
        raise CLIError(str(exc)) from None
    _say(f"file:       {args.model} ({human_bytes(os.path.getsize(args.model))})")
    steps = getattr(model, "steps", None)
    if steps:
        _say("pipeline:   " + " -> ".join(f"{name} ({type(step).__name__})" for name, step in steps))
    _say(f"estimator:  {type(nn).__name__}")
    _say("recipe:")
    recipe = {k: v for k, v in nn.get_params(deep=False).items()
              if k in ("optimizer", "lr", "weight_decay", "batch_size", "max_epochs", "lr_schedule",
                       "early_stopping", "pruning", "distillation")}
    for key, value in recipe.items():
        _say(f"  {key:<15} {_compact(value)}")
    changed = [f"{k}={v}" for k, v in _changed(nn) if k.split(".")[0] not in recipe]
    if changed:
        _say(f"  {'other':<15} {', '.join(changed)}")
    _say("fitted:")
    _say(f"  {'features':<15} {nn.n_features_in_}")
    if hasattr(nn, "classes_"):
        shown = ", ".join(map(str, nn.classes_[:10])) + (" ..." if len(nn.classes_) > 10 else "")
        _say(f"  {'classes':<15} {len(nn.classes_)}: {shown}")
    else:
        _say(f"  {'targets':<15} {nn.n_outputs_}")
    if getattr(nn, "loss_curve_", None):
        _say(f"  {'epochs':<15} {nn.n_iter_} (final training loss {nn.loss_curve_[-1]:.4g})")
    _say(f"  {'parameters':<15} {nn.n_params_:,}")
    if hasattr(nn, "sparsity_"):
        _say(f"  {'sparsity':<15} {nn.sparsity_:.1%}")
        _say("layers:")
        for row in nn.pruning_summary_:
            shape = "x".join(map(str, row["final_shape"]))
            before = "x".join(map(str, row["shape"]))
            change = f" (was {before})" if row["final_shape"] != row["shape"] else ""
            _say(f"  {row['layer']:<12} {row['type']:<8} {shape:>10}{change}  sparsity {row['sparsity']:.1%}")
    _say("network:")
    for line in repr(nn.module_).splitlines():
        _say(f"  {line}")
    return 0


# -- the parser -----------------------------------------------------------------


def build_parser():
    """The ``skopt-nn`` argument parser."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="skopt-nn",
        description=(
            "Tune PyTorch networks and their training and compression recipe "
            "(learning-rate schedule, pruning, distillation) with sklearn searches."
        ),
    )
    parser.add_argument("--version", action="version", version=f"skopt-nn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="tune a pruned, distilled network on sklearn's digits and write a report",
        description=(
            "Tune a student MLP with a full recipe (one-cycle or cosine learning rate, "
            "structured pruning, distillation from a gradient-boosting teacher) by "
            "Bayesian search on sklearn's digits; print a results table and write the "
            "model, cv_results.csv and plots."
        ),
    )
    demo.add_argument("--out", metavar="DIR", default=_DEFAULT_OUT, help=f"output directory (default: ./{_DEFAULT_OUT})")
    demo.add_argument("--n-iter", type=int, metavar="N", default=None, help="Bayesian search candidates (default: 10)")
    demo.add_argument("--max-epochs", type=int, metavar="N", default=None, help="epochs per fit (default: 20)")
    demo.add_argument("--n-jobs", type=int, metavar="N", default=1, help="parallel fits (default: 1)")
    demo.add_argument("--random-state", type=int, metavar="SEED", default=0, help="seed (default: 0)")
    demo.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    demo.set_defaults(func=_demo)

    names = ", ".join(BUILTIN_DATASETS)
    tune = sub.add_parser(
        "tune",
        help="search a network's recipe on a data set and save the best model",
        description="Search a network's hyperparameters and recipe with cross-validation.",
    )
    tune.add_argument("--data", required=True, metavar="{" + names.replace(", ", ",") + ",PATH.csv}",
                      help=f"a built-in data set ({names}) or a CSV file")
    tune.add_argument("--target", metavar="COL", help="target column of the CSV (default: the last column)")
    tune.add_argument("--task", choices=("classification", "regression"),
                      help="default: inferred from the target")
    tune.add_argument("--search", choices=_METHODS, default="bayes", help="search engine (default: bayes)")
    tune.add_argument("--n-iter", type=int, metavar="N", default=None,
                      help="candidates for bayes, random and halving (default: 10)")
    tune.add_argument("--cv", type=int, metavar="K", default=3, help="cross-validation folds (default: 3)")
    tune.add_argument("--space", metavar="FILE", help="search space as TOML or JSON (default: default_space)")
    tune.add_argument("--max-epochs", type=int, metavar="N", default=30, help="epochs per fit (default: 30)")
    tune.add_argument("--n-jobs", type=int, metavar="N", default=1, help="parallel fits (default: 1)")
    tune.add_argument("--backend", choices=("loky", "dask"), default="loky",
                      help="joblib backend for the fits (default: loky)")
    tune.add_argument("--scheduler", metavar="ADDRESS",
                      help="Dask scheduler address, e.g. tcp://host:8786 (default: a local cluster)")
    tune.add_argument("--random-state", type=int, metavar="SEED", default=0, help="seed (default: 0)")
    tune.add_argument("--out", metavar="DIR", default=_DEFAULT_OUT, help=f"output directory (default: ./{_DEFAULT_OUT})")
    tune.set_defaults(func=_tune)

    predict = sub.add_parser("predict", help="predict a CSV file with a saved model",
                             description="Write predictions for the rows of a CSV file as CSV.")
    predict.add_argument("model", metavar="MODEL", help="model.safetensors or model.joblib")
    predict.add_argument("data", metavar="DATA.csv", help="rows to predict; extra columns are ignored")
    predict.add_argument("--proba", action="store_true", help="class probabilities instead of labels")
    predict.add_argument("--output", "-o", metavar="FILE", help="write here instead of standard output")
    predict.set_defaults(func=_predict)

    inspect = sub.add_parser("inspect", help="describe a saved model: recipe, sparsity, sizes",
                             description="Print a saved model's parameters, recipe, sparsity and size.")
    inspect.add_argument("model", metavar="MODEL", help="model.safetensors or model.joblib")
    inspect.set_defaults(func=_inspect)
    return parser


def main(argv=None):
    """Run the ``skopt-nn`` command; return its exit status.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        0 on success, 2 for a mistake in the input, 1 for an unexpected error.

    Examples
    --------
    >>> from skopt_nn.cli import main
    >>> main(["predict", "no-such-model.joblib", "data.csv"])
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"skopt-nn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("skopt-nn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``skopt-nn predict ... | head``): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if os.environ.get("SKOPT_NN_TRACEBACK"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"skopt-nn: error: {type(exc).__name__}: {message} "
            "(set SKOPT_NN_TRACEBACK=1 to see the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
