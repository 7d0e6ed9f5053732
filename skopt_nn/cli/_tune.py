"""``skopt-nn tune``: search a network's recipe on a data set and save the best model.

The data is a built-in sklearn data set or a CSV file; the model is a
preprocessing step (scaling, and imputation and one-hot encoding only when the
data needs them) and an MLP. The search runs on joblib's loky backend, on
Dask, or (ASHA) on Ray actors, and writes the best model, ``cv_results.csv``,
plots and ``report.html``.
"""

import contextlib
import os
import time

from ._io import (
    CLIError, _failures_line, _params_text, _print_files, _quiet_search, _save_model, _say, _short_name,
    load_dataset, read_space_file,
)

__all__ = ["run"]

# Dimensions of the default space a grid search keeps: the full default
# space has eight, whose grid would hold thousands of candidates.
_GRID_DIMENSIONS = ("lr", "lr_schedule", "module__width")


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
            raise CLIError("--scheduler only applies to --backend dask or ray.")
        return contextlib.nullcontext()
    if args.backend == "ray":  # ASHASearchCV drives Ray itself (backend="ray")
        return contextlib.nullcontext()
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise CLIError("--backend dask needs dask.distributed: pip install 'dask[distributed]'") from None

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


def run(args):
    """Run ``skopt-nn tune``; return its exit status."""
    import numpy as np
    from sklearn.pipeline import Pipeline
    from threadpoolctl import threadpool_limits

    from .. import MLP, NNClassifier, NNRegressor, default_space, make_search, search_progress
    from ..training._runtime import torch_threads
    from ._report import write_cv_results, write_plots, write_html
    from ..search.spaces import SearchSpace

    if args.n_iter is not None and args.n_iter < 1:
        raise CLIError(f"--n-iter must be at least 1; got {args.n_iter}.")
    if args.cv < 2:
        raise CLIError(f"--cv must be at least 2; got {args.cv}.")
    if args.backend == "ray":
        if args.search != "asha":
            raise CLIError(f"--backend ray applies to --search asha; got --search {args.search}.")
        from ..search._asha_ray import import_ray

        try:
            import_ray()
        except ImportError as exc:
            raise CLIError(str(exc)) from None
    if args.n_jobs is None:  # Ray: one actor per CPU it has; elsewhere one fit at a time
        args.n_jobs = -1 if args.backend == "ray" else 1
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
    if args.search in ("bayes", "random", "optuna"):  # optuna: make_search reads it as n_trials
        kwargs["n_iter"] = n_iter
    elif args.search == "asha":  # draws its own bar, over the rungs
        kwargs.update(n_iter=n_iter, verbose=1)
        if args.backend == "ray":
            kwargs.update(backend="ray", ray_address=args.scheduler)
    elif args.search == "halving":
        kwargs["n_candidates"] = n_iter
    if args.search != "grid":
        kwargs["random_state"] = args.random_state
    if getattr(args, "fuse", False):
        if args.search not in ("grid", "random", "asha"):
            raise CLIError(f"--fuse applies to --search grid, random or asha; got --search {args.search}.")
        kwargs["fuse"] = True
    objectives = _objectives(args, kwargs)
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
    with threadpool_limits(1), torch_threads(1), _backend(args), _quiet_search() as caught, \
            (contextlib.nullcontext() if args.search == "asha"
             else search_progress(search, desc=f"{args.search} search")):
        search.fit(data.X, data.y)
    elapsed = time.perf_counter() - start

    results = search.cv_results_
    scores = np.asarray(results[f"mean_test_{objectives[0]}" if objectives else "mean_test_score"], dtype=float)
    best_cv = scores[search.best_index_]
    if objectives:
        metric = objectives[0]
        picked = ", ".join(f"{name} {results[f'mean_test_{name}'][search.best_index_]:.4g}" for name in objectives)
        _say(f"\nrefit pick ({search.refit!r}): {picked}  ({len(scores)} candidates, {elapsed:.1f} s)")
        _say(f"Pareto front: {len(search.pareto_front_['index'])} of {len(scores)} candidates")
    else:
        metric = "accuracy" if data.task == "classification" else "R^2"
        _say(f"\nbest cv {metric}: {best_cv:.4f}  ({len(scores)} candidates, {elapsed:.1f} s)")
    _say(f"best parameters: {_params_text(search.best_params_)}")
    if args.search == "asha":
        full = len(scores) * args.max_epochs * args.cv
        _say(f"epochs trained: {search.total_epochs_} ({search.total_epochs_ / full:.0%} of the "
             f"{full} a full search of {len(scores)} candidates would train)")
    failures = _failures_line(search, caught)
    if failures:
        _say(failures)

    best = search.best_estimator_
    written, save_note = _save_model(best, out)
    written.append(write_cv_results(search, os.path.join(out, "cv_results.csv")))
    images, plot_note = write_plots(out, search=search, n_rows=len(data.X))
    written += images
    rows = [{"model": f"{cls.__name__} (best of {len(scores)})", "cv": f"{best_cv:.4f}",
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
    _print_files(written, notes=(save_note, plot_note))
    _say(f"\npredict with: skopt-nn predict {written[0]} DATA.csv")
    return 0


def _objectives(args, kwargs):
    """``--objectives`` and ``--within`` as ``make_search``'s ``objectives`` and ``refit``; the objectives."""
    from ..search.pareto import Within, default_refit

    if not args.objectives:
        if args.within is not None:
            raise CLIError("--within applies with --objectives (e.g. --objectives accuracy,neg_model_bytes).")
        return None
    objectives = [name.strip() for name in args.objectives.split(",") if name.strip()]
    kwargs["objectives"] = objectives
    if args.within is not None:
        if args.within < 0:
            raise CLIError(f"--within must be at least 0; got {args.within}.")
        try:
            refit = default_refit(objectives, objectives)
        except (KeyError, TypeError):
            refit = None
        if not isinstance(refit, Within):
            raise CLIError(
                f"--within needs a score and a cost among --objectives (e.g. accuracy,neg_model_bytes); "
                f"got {args.objectives}."
            )
        refit.tol = args.within
        kwargs["refit"] = refit
    return objectives


def search_space_names(search):
    for attr in ("search_spaces", "param_grid", "param_distributions"):
        value = getattr(search, attr, None)
        if value is not None:
            return list(value)
    return []
