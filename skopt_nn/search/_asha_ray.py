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

from ._rungs import _ASHAState, _Fold, _advance_fused, _warn_fallbacks

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

    def __init__(self, shared, threads=None):
        self.shared = shared
        self.folds = {}
        self.threads = threads or _assigned_cpus()

    def pid(self):
        import os

        return os.getpid()

    def _fold(self, key, estimator):
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
        s = self.shared
        folds = [(key[0], rung, self._fold(key, estimator)) for key, estimator, rung in jobs]
        fallbacks = []
        results = _advance_fused(folds, s["X"], s["y"], s["rungs"], s["scorer"], s["max_members"], fallbacks)
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


def _quiet_init(ray, address, verbose):
    """``ray.init`` without its console chatter unless ``verbose``.

    Ray's own loggers print start-up notices (a local instance started, token
    authentication) through Python's last-resort handler; their level is
    raised for the call and put back after, so the user's logging is as it was.
    """
    logger = logging.getLogger("ray")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.ERROR)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose,
                 logging_level=logging.INFO if verbose else logging.ERROR, configure_logging=verbose)
    finally:
        logger.setLevel(level)


def _assigned_cpus():
    """CPUs Ray assigned to this actor (its torch threads), at least 1."""
    import ray

    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    except Exception:  # outside Ray (tests call the class directly)
        cpus = 1
    return max(1, int(cpus))


def _pool_size(ray, n_jobs):
    """Workers for the search: the CPUs Ray has free now, capped by ``n_jobs``."""
    free = int(ray.available_resources().get("CPU", 0))
    if n_jobs is not None and n_jobs > 0:
        return max(1, min(n_jobs, free) if free else n_jobs)
    return max(1, free)


class _Pool:
    """The workers of one search: Ray actors, and this process when Ray is ours.

    An actor takes seconds to start (a Python process importing torch and
    sklearn). When the search started a local Ray itself, this process is one
    of the workers (its CPU is one of Ray's), so it trains the first folds
    while the actors start; a fold goes to an actor only once the actor is up,
    and a fold trained once stays with the worker that holds it.
    """

    def __init__(self, ray, shared, local, n_workers):
        self.ray = ray
        self.local = _Trainer(local, threads=1) if local is not None else None
        n_actors = n_workers - (self.local is not None)
        trainer = ray.remote(num_cpus=1)(_Trainer)
        self.actors = [trainer.remote(shared) for _ in range(n_actors)]
        # worker index -> handle: 0 is this process when it trains
        self.workers = ([self.local] if self.local is not None else []) + self.actors
        offset = len(self.workers) - len(self.actors)
        self.pending = {actor.pid.remote(): offset + a for a, actor in enumerate(self.actors)}
        self.ready = set(range(offset))
        if not self.ready:  # no local worker: wait for the first actor
            self._poll(timeout=None, at_least=1)

    def _poll(self, timeout=0, at_least=None):
        if not self.pending:
            return
        done, _ = self.ray.wait(list(self.pending), num_returns=at_least or len(self.pending),
                                timeout=timeout)
        for ref in done:
            self.ready.add(self.pending.pop(ref))

    def run(self, method, jobs):
        """``method`` on every worker's job list; returns each worker's results."""
        refs = {w: getattr(self.workers[w], method).remote(jobs[w])
                for w in range(len(self.workers)) if jobs[w] and self.workers[w] is not self.local}
        done = {}
        if self.local is not None and jobs[0]:
            done[0] = getattr(self.local, method)(jobs[0])
        done.update(zip(refs, self.ray.get(list(refs.values()))))
        return done

    def forget(self, w, keys):
        if self.workers[w] is self.local:
            self.local.forget(keys)
        else:
            self.workers[w].forget.remote(keys)

    def close(self):
        for actor in self.actors:
            self.ray.kill(actor)


def _place(picks, owner, loads, ready, n_splits, rungs, reached):
    """Split a wave's ``(candidate, rung)`` picks over the workers.

    A fold trained before goes back to the worker holding it; a new fold
    goes to the ready worker with the fewest epochs to train in this wave.
    Returns one job list per worker and, per job, where its result lands.
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
        a = min(sorted(ready), key=loads.__getitem__)
        owner[key] = a
        loads[a] += work
        jobs[a].append((key, True, rung))  # True: build this fold from the candidate
        where.append((a, len(jobs[a]) - 1, p, k))
    return jobs, where


def run_ray(search, X, y, candidates, rungs, splits, scorer, progress, fit_params=None):
    """Run the search's rungs on Ray actors; return the records ``_publish`` reads."""
    ray = import_ray()
    verbose = bool(search.verbose)
    # Ray swaps builtins.print for its own; skorch then reads every fit as
    # verbose (its log prints unless its sink *is* print), so it is put back.
    own_print = builtins.print
    started = False
    pool = None
    try:
        if not ray.is_initialized():
            # Joins ``ray_address`` (a cluster) or starts a local Ray, quietly
            # unless verbose, and stops only a Ray it started itself.
            _quiet_init(ray, search.ray_address, verbose)
            started = True
        n_workers = _pool_size(ray, search.n_jobs)
        data = {
            "X": X, "y": y, "splits": splits, "scorer": scorer, "rungs": list(rungs),
            "fit_params": fit_params or {}, "max_members": search.fuse_max_members,
        }
        # This process trains too only on a local Ray it started (its CPU is
        # then one of Ray's); on a cluster the work stays on the cluster.
        local = data if started and search.ray_address is None else None
        pool = _Pool(ray, ray.put(data), local, n_workers)

        n_splits = len(splits)
        state = _ASHAState(
            len(candidates), rungs, search.reduction_factor, search._objectives, search.tie_break
        )
        owner, reached, fallbacks = {}, {}, []
        while True:
            # The joblib backend's waves for as many workers: the same
            # promotions, in the same order, for one random_state, whichever
            # worker trains a fold.
            wave = len(candidates) if search.fuse else max(1, -(-n_workers // n_splits))
            picks = state.next_jobs(wave)
            if not picks:
                break
            pool._poll()
            loads = [0] * n_workers
            jobs, where = _place(picks, owner, loads, pool.ready, n_splits, rungs, reached)
            for per_worker in jobs:
                for j, (key, new, rung) in enumerate(per_worker):
                    if new:  # the candidate's estimator travels once, with its first rung
                        per_worker[j] = (key, search._candidate_estimator(candidates[key[0]]), rung)
            done = pool.run("advance_fused" if search.fuse else "advance", jobs)
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
                        for w in {owner[key] for key in keys}:
                            pool.forget(w, keys)
                progress.update(rung, state.best_score())
        _warn_fallbacks(fallbacks)
        return state.records
    finally:
        if pool is not None:
            pool.close()
        if started:
            ray.shutdown()
        builtins.print = own_print
