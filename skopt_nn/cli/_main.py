"""The ``skopt-nn`` command: demo, tune, predict and inspect.

``skopt-nn demo`` runs the whole product on embedded data; ``skopt-nn tune``
searches a network's recipe on a built-in data set or a CSV file and writes
the best model, ``cv_results.csv`` and plots; ``skopt-nn predict`` and
``skopt-nn inspect`` use and describe a saved model. Mistakes in the input
are reported in one line and a non-zero exit status (2), never a traceback;
set ``SKOPT_NN_TRACEBACK=1`` to see the traceback of an unexpected error.
"""

import argparse
import os
import sys

from . import _demo, _tune
from ._io import BUILTIN_DATASETS, CLIError, _say, load_model, read_csv

__all__ = ["main", "build_parser"]

_METHODS = ("bayes", "grid", "random", "halving", "asha", "optuna")
_DEFAULT_OUT = "skopt_nn_out"


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
    from ..training._tensorboard import _changed, _short

    text = _short(value)
    if text is not None:
        return text
    if hasattr(value, "get_params"):
        inner = ", ".join(f"{k}={v}" for k, v in _changed(value) if "." not in k)
        return f"{type(value).__name__}({inner})"
    return repr(value)


def _inspect(args):
    from ._report import human_bytes
    from ..training._tensorboard import _changed
    from ..plotting import _fitted_nn

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
                       "early_stopping", "pruning", "distillation", "quantization")}
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
    summary = getattr(nn, "quantization_summary_", None)
    if summary:
        _say(f"  {'quantized':<15} {summary['method']}, {len(summary['layers'])} layers: weights "
             f"{human_bytes(summary['float_bytes'])} -> {human_bytes(summary['quantized_bytes'])}")
    _say("network:")
    for line in repr(nn.module_).splitlines():
        _say(f"  {line}")
    return 0


# -- the parser -----------------------------------------------------------------


def build_parser():
    """The ``skopt-nn`` argument parser."""
    from .._version import __version__

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
    demo.set_defaults(func=_demo.run)

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
                      help="candidates for bayes, random, halving, asha and optuna (default: 10)")
    tune.add_argument("--cv", type=int, metavar="K", default=3, help="cross-validation folds (default: 3)")
    tune.add_argument("--space", metavar="FILE", help="search space as TOML or JSON (default: default_space)")
    tune.add_argument("--max-epochs", type=int, metavar="N", default=30, help="epochs per fit (default: 30)")
    tune.add_argument("--n-jobs", type=int, metavar="N", default=None,
                      help="parallel fits (default: 1; with --backend ray, one per CPU Ray has)")
    tune.add_argument("--fuse", action="store_true",
                      help="train the candidates of one architecture, on all folds, as one stacked "
                           "model (--search grid, random or asha)")
    tune.add_argument("--backend", choices=("loky", "dask", "ray"), default="loky",
                      help="where the fits run: joblib's loky or Dask, or Ray actors "
                           "(--search asha only) (default: loky)")
    tune.add_argument("--scheduler", metavar="ADDRESS",
                      help="Dask scheduler address, e.g. tcp://host:8786, or Ray cluster address, "
                           "e.g. ray://host:10001 (default: a local cluster)")
    tune.add_argument("--objectives", metavar="A,B",
                      help="scoring entries to trade, comma-separated, e.g. accuracy,neg_model_bytes: a "
                           "multi-objective search whose Pareto front the report draws")
    tune.add_argument("--within", type=float, metavar="TOL",
                      help="with a cost among --objectives: refit the cheapest model within TOL of the best "
                           "score (default: 0.01)")
    tune.add_argument("--random-state", type=int, metavar="SEED", default=0, help="seed (default: 0)")
    tune.add_argument("--out", metavar="DIR", default=_DEFAULT_OUT, help=f"output directory (default: ./{_DEFAULT_OUT})")
    tune.set_defaults(func=_tune.run)

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
