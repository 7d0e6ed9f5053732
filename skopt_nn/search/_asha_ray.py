"""The ASHA search on Ray (``backend="ray"``): our rungs, long-lived Ray actors.

The search process drives the rungs with the same promotion rule and the
same waves as the joblib backend (``_ASHAState``), so both backends promote
the same candidates for one ``random_state``. Each wave's ``(candidate,
fold, epochs)`` work runs on a small pool of Ray actors, one per CPU Ray
offers (or ``n_jobs``), each with as many torch threads as CPUs Ray gives
it. The data, the CV splits, the scorer and the fit parameters go into
Ray's object store once; an actor keeps the folds it trained (fitted
preprocessing, the network mid-fit) between rungs, so a promotion sends
only a key and an epoch count. With ``fuse=True`` an actor trains its share
of a wave as stacked groups (``fit_fused``), many members at once.

Ray Tune's ``Tuner`` is not used: it runs each trial in its own process
with its own reporting round-trips, which costs far more than the small
fits of an epoch-level search (see docs/scaling_out.md). Ray is imported
only here, and only when ``backend="ray"``.
"""

import builtins
import logging
import warnings

__all__ = ["run_ray", "import_ray"]


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "backend='ray' needs the optional Ray: pip install 'skopt-nn[ray]'"
        ) from exc
    return ray


class _Trainer:
    """A Ray actor's state: the shared data and the folds it is training.

    ``shared`` holds ``X``, ``y``, the CV splits, the scorer, the rungs, the
    fit parameters and ``fuse_max_members``; Ray hands it over from the
    object store (numpy arrays without a copy).
    """

    def __init__(self, shared):
        self.shared = shared
        self.folds = {}
        self.threads = _assigned_cpus()

    def pid(self):
        import os

        return os.getpid()

    def _fold(self, key, estimator):
        from .asha import _Fold

        if estimator is not None:  # a new candidate's fold
            train, test = self.shared["splits"][key[1]]
            self.folds[key] = _Fold(estimator, train, test, self.shared["fit_params"])
        return self.folds[key]

    def advance(self, jobs):
        """Train each ``(key, estimator or None, rung)``; return ``[(score, error)]``."""
        s = self.shared
        out = []
        for key, estimator, rung in jobs:
            fold, score, error = self._fold(key, estimator).advance(
                s["X"], s["y"], s["rungs"][rung], s["scorer"], self.threads)
            self._keep(key, fold, rung, error)
            out.append((score, error))
        return out, []

    def advance_fused(self, jobs):
        """``advance`` with the networks of all ``jobs`` trained as stacked groups."""
        from .asha import _advance_fused

        s = self.shared
        folds = [(key[0], rung, self._fold(key, estimator)) for key, estimator, rung in jobs]
        fallbacks = []
        results = _advance_fused(folds, s["X"], s["y"], s["rungs"], s["scorer"], s["max_members"],
                                 fallbacks)
        out = []
        for (key, _, rung), (fold, score, error) in zip(jobs, results):
            self._keep(key, fold, rung, error)
            out.append((score, error))
        return out, fallbacks

    def forget(self, keys):
        for key in keys:
            self.folds.pop(key, None)

    def _keep(self, key, fold, rung, error):
        # A failed fold or one at the top rung trains no more: free its network.
        if error is not None or rung == len(self.shared["rungs"]) - 1:
            self.folds.pop(key, None)
        else:
            self.folds[key] = fold


def _assigned_cpus():
    """CPUs Ray assigned to this actor (its torch threads), at least 1."""
    import ray

    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    except Exception:  # outside Ray (tests call the class directly)
        cpus = 1
    return max(1, int(cpus))


def _pool_size(ray, n_jobs):
    """Actors to start: the CPUs Ray has free now, capped by ``n_jobs``."""
    free = int(ray.available_resources().get("CPU", 0))
    if n_jobs is not None and n_jobs > 0:
        return max(1, min(n_jobs, free) if free else n_jobs)
    return max(1, free)


def _place(picks, owner, loads, n_splits, rungs, reached):
    """Split a wave's ``(candidate, rung)`` picks over the actors.

    A fold trained before goes back to the actor holding it; a new fold
    goes to the actor with the fewest epochs to train in this wave.
    Returns one job list per actor and, per job, where its result lands.
    """
    jobs = [[] for _ in loads]
    where = []
    fresh = []
    for p, (cand, rung) in enumerate(picks):
        for k in range(n_splits):
            key = (cand, k)
            work = rungs[rung] - reached.get(key, 0)
            if key in owner:
                a = owner[key]
                loads[a] += work
                jobs[a].append((key, None, rung))
                where.append((a, len(jobs[a]) - 1, p, k))
            else:
                fresh.append((key, rung, work, p, k))
    for key, rung, work, p, k in fresh:
        a = min(range(len(loads)), key=loads.__getitem__)
        owner[key] = a
        loads[a] += work
        jobs[a].append((key, True, rung))  # True: build this fold from the candidate
        where.append((a, len(jobs[a]) - 1, p, k))
    return jobs, where


def run_ray(search, X, y, candidates, rungs, splits, scorer, progress, fit_params=None):
    """Run the search's rungs on Ray actors; return the records ``_publish`` reads."""
    from .asha import _ASHAState

    ray = import_ray()
    verbose = bool(search.verbose)
    # Ray swaps builtins.print for its own; skorch then reads every fit as
    # verbose (its log prints unless its sink *is* print), so it is put back.
    own_print = builtins.print
    started = False
    actors = []
    try:
        if not ray.is_initialized():
            # Joins ``ray_address`` (a cluster) or starts a local Ray, quietly
            # unless verbose, and stops only a Ray it started itself.
            ray.init(address=search.ray_address, include_dashboard=False, log_to_driver=verbose,
                     logging_level=logging.INFO if verbose else logging.ERROR,
                     configure_logging=verbose)
            started = True
        n_actors = _pool_size(ray, search.n_jobs)
        shared = ray.put({
            "X": X, "y": y, "splits": splits, "scorer": scorer, "rungs": list(rungs),
            "fit_params": fit_params or {}, "max_members": search.fuse_max_members,
        })
        trainer = ray.remote(num_cpus=1)(_Trainer)
        actors = [trainer.remote(shared) for _ in range(n_actors)]

        n_splits = len(splits)
        state = _ASHAState(len(candidates), rungs, search.reduction_factor)
        owner, reached, fallbacks = {}, {}, []
        while True:
            # The joblib backend's waves for as many workers as actors: the
            # same promotions, in the same order, for one random_state.
            wave = len(candidates) if search.fuse else max(1, -(-n_actors // n_splits))
            picks = state.next_jobs(wave)
            if not picks:
                break
            loads = [0] * n_actors
            jobs, where = _place(picks, owner, loads, n_splits, rungs, reached)
            for per_actor in jobs:
                for j, (key, new, rung) in enumerate(per_actor):
                    if new:  # the candidate's estimator travels once, with its first rung
                        per_actor[j] = (key, search._candidate_estimator(candidates[key[0]]), rung)
            method = "advance_fused" if search.fuse else "advance"
            refs = {a: getattr(actors[a], method).remote(jobs[a]) for a in range(n_actors) if jobs[a]}
            done = dict(zip(refs, ray.get(list(refs.values()))))
            scores = [[None] * n_splits for _ in picks]
            fold_errors = [[None] * n_splits for _ in picks]
            for a, j, p, k in where:
                scores[p][k], fold_errors[p][k] = done[a][0][j]
                reached[(picks[p][0], k)] = rungs[picks[p][1]]
            for _, extra in done.values():
                fallbacks.extend(extra)
            for p, (cand, rung) in enumerate(picks):
                errors = [e for e in fold_errors[p] if e is not None]
                if errors and search.error_score == "raise":
                    raise ValueError(f"Candidate {candidates[cand]} failed: {errors[0]}")
                state.report(cand, rung, scores[p], errors[0] if errors else None)
                if errors or rung == len(rungs) - 1:
                    keys = [(cand, k) for k in range(n_splits)]
                    for key in keys:
                        reached.pop(key, None)
                    if errors:  # its other folds train no more either
                        for a in {owner[key] for key in keys}:
                            actors[a].forget.remote(keys)
                progress.update(rung, state.best_score())
        if fallbacks:
            reasons = sorted(set(fallbacks))
            warnings.warn(
                f"fuse=True: {len(fallbacks)} fold trainings could not train fused and ran as "
                f"ordinary fits ({'; '.join(reasons)}).",
                UserWarning,
                stacklevel=3,
            )
        return state.records
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
        builtins.print = own_print
