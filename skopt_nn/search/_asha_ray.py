"""The ASHA search as Ray Tune trials (``backend="ray"``); imports Ray lazily.

Each candidate is one trial that trains its folds rung by rung and reports
the mean validation score after every rung; Ray Tune's ``ASHAScheduler``
stops the trials that fall behind. The candidates are the ones the joblib
backend draws, so both backends search the same points.
"""

import builtins
import math
import shutil
import tempfile

import numpy as np

__all__ = ["run_ray", "import_ray"]


def import_ray():
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "backend='ray' needs the optional Ray Tune: pip install 'skopt-nn[ray]'"
        ) from exc
    return ray


def _trial(config, *, search, X, y, candidates, rungs, splits, scorer, fit_params):
    """One candidate: every fold trained to each rung, one report per rung."""
    from ray import tune

    folds = search._candidate_folds(candidates[config["candidate"]], splits, fit_params)
    for rung, epochs in enumerate(rungs):
        scores, error = [], None
        for k, fold in enumerate(folds):
            folds[k], score, error = fold.advance(X, y, epochs, scorer, 1)
            if error is not None:
                break
            scores.append(score)
        report = {"epochs": epochs, "rung": rung, "error": error or ""}
        if error is not None:
            # Scored below every candidate so the scheduler never prefers it.
            tune.report({**report, "score": -math.inf})
            return
        report.update({f"split{k}": s for k, s in enumerate(scores)})
        tune.report({**report, "score": float(np.mean(scores))})


def run_ray(search, X, y, candidates, rungs, splits, scorer, progress, fit_params=None):
    """Run the search on Ray Tune; return the records ``_publish`` reads."""
    ray = import_ray()
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    # Ray swaps builtins.print for its own; skorch then reads every fit as
    # verbose (its log prints unless its sink *is* print), so it is put back.
    own_print = builtins.print
    started = False
    if not ray.is_initialized():
        # Joins ``ray_address`` (a cluster) or starts a local Ray, and stops
        # only a Ray it started itself.
        ray.init(address=search.ray_address, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        started = True

    class _Progress(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if not result.get("error"):
                progress.update(int(result["rung"]), None)

    storage = tempfile.mkdtemp(prefix="skopt_nn_asha_")
    try:
        trainable = tune.with_parameters(
            _trial, search=search, X=X, y=y, candidates=candidates, rungs=rungs,
            splits=splits, scorer=scorer, fit_params=fit_params or {},
        )
        scheduler = ASHAScheduler(
            time_attr="epochs", max_t=rungs[-1], grace_period=rungs[0],
            reduction_factor=search.reduction_factor,
        )
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"candidate": tune.grid_search(list(range(len(candidates))))},
            tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler,
                                        max_concurrent_trials=search.n_jobs if search.n_jobs
                                        and search.n_jobs > 0 else None),
            run_config=tune.RunConfig(storage_path=storage, verbose=0, callbacks=[_Progress()]),
        )
        grid = tuner.fit()
        records = [{"scores": [], "error": None, "epochs": 0} for _ in candidates]
        n_splits = len(splits)
        for result in grid:
            rec = records[result.config["candidate"]]
            if result.error is not None:
                rec["error"] = f"{type(result.error).__name__}: {result.error}"
            frame = result.metrics_dataframe
            if frame is None:
                continue
            for row in frame.to_dict("records"):
                if row.get("error"):
                    rec["error"] = row["error"]
                    continue
                rec["scores"].append((int(row["rung"]), [float(row[f"split{k}"]) for k in range(n_splits)]))
                rec["epochs"] = int(row["epochs"])
        return records
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        if started:
            ray.shutdown()
        builtins.print = own_print
