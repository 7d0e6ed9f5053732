"""The ``skopt-nn`` command."""

import argparse
import sys
import time
import warnings

__all__ = ["main"]


def _demo(args):
    import numpy as np
    from skopt import BayesSearchCV
    from skopt.space import Categorical, Real
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from . import MLP, NNClassifier

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=args.random_state
    )
    pipe = Pipeline([
        ("scale", StandardScaler()),
        ("net", NNClassifier(MLP((128,)), max_epochs=args.max_epochs, random_state=args.random_state)),
    ])
    space = {
        "net__lr": Real(1e-4, 3e-1, prior="log-uniform"),
        "net__optimizer": Categorical(["adam", "adamw", "sgd", "rmsprop"]),
        "net__lr_schedule": Categorical(["constant", "cosine", "onecycle", "step"]),
    }
    search = BayesSearchCV(
        pipe, space, n_iter=args.n_iter, cv=3, n_jobs=args.n_jobs, random_state=args.random_state
    )
    print(
        f"Tuning lr, optimizer and lr schedule of an MLP on sklearn's digits "
        f"({len(X_train)} training rows, {args.n_iter} Bayesian steps, 3-fold CV)..."
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X_train, y_train)
    elapsed = time.perf_counter() - start
    scores = search.cv_results_["mean_test_score"]
    print(f"{'step':>4}  {'cv accuracy':>11}  params")
    for i, (params, score) in enumerate(zip(search.cv_results_["params"], scores), 1):
        shown = ", ".join(f"{k.split('__', 1)[1]}={v:.3g}" if isinstance(v, float) else f"{k.split('__', 1)[1]}={v}"
                          for k, v in params.items())
        print(f"{i:>4}  {score:11.3f}  {shown}")
    best = {k.split("__", 1)[1]: v for k, v in search.best_params_.items()}
    print(f"\nbest parameters: {best}")
    print(f"best cv accuracy: {np.nanmax(scores):.3f}")
    print(f"test accuracy:    {search.score(X_test, y_test):.3f}")
    print(f"search time:      {elapsed:.1f} s")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="skopt-nn",
        description="Tune PyTorch networks, their training and compression recipe, with sklearn searches.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="tune a network on sklearn's digits data and report the result")
    demo.add_argument("--n-iter", type=int, default=12, help="Bayesian search steps (default: 12)")
    demo.add_argument("--max-epochs", type=int, default=25, help="epochs per fit (default: 25)")
    demo.add_argument("--n-jobs", type=int, default=1, help="parallel fits (default: 1)")
    demo.add_argument("--random-state", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    """Entry point of the ``skopt-nn`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"skopt-nn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
