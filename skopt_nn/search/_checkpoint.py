"""Checkpoints of Bayesian searches: the evaluated points, kept in a JSON file.

A search given ``checkpoint=path`` rewrites the file after every optimizer
step with each evaluated candidate: its point as the optimizer sees it and
sklearn's per-split results for it. A later search with the same path
replays them: the optimizer is told the points again (what skopt's ``x0`` and
``y0`` do for ``gp_minimize``) and sklearn's results are rebuilt from the
file instead of refitting, so ``cv_results_`` and ``best_params_`` cover
every point while none is fitted twice. The file is plain JSON: resuming
runs no pickle.
"""

import contextlib
import json
import os
import threading
import uuid

import numpy as np
import sklearn.model_selection._search as _sk_search

__all__ = ["SearchCheckpoint", "replaying"]

_FORMAT = "skopt_nn.bayes_checkpoint"
_VERSION = 1


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} in a search checkpoint")


def fingerprint(search, subspaces):
    """What must not change between a run and its resumption."""
    scoring = search.scoring
    if not (scoring is None or isinstance(scoring, str)):
        scoring = sorted(scoring) if isinstance(scoring, (list, tuple, set, dict)) else "callable"
    return {
        "spaces": [sorted(f"{name}: {dim!r}" for name, dim in dims.items()) for dims, _ in subspaces],
        "n_splits": int(search.n_splits_),
        "scoring": scoring,
        "return_train_score": bool(search.return_train_score),
    }


class SearchCheckpoint:
    """The evaluated points of one Bayesian search, mirrored in a JSON file.

    Parameters
    ----------
    path : str or path-like
        The file; read if it exists, written after every step.
    fingerprint : dict
        Search spaces, number of CV splits and scoring of the search; a file
        written for another search is refused rather than silently mixed in.
    """

    def __init__(self, path, fingerprint):
        self.path = os.fspath(path)
        self.fingerprint = fingerprint
        self.subspaces = [[] for _ in fingerprint["spaces"]]
        if os.path.exists(self.path):
            self._read()

    def _read(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            ok = data.get("format") == _FORMAT and isinstance(data.get("subspaces"), list)
        except (OSError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise ValueError(
                f"checkpoint={self.path!r} exists but is not a readable search checkpoint; "
                "delete it or pass another path."
            )
        if data.get("version", 0) > _VERSION:
            raise ValueError(f"checkpoint={self.path!r} was written by a newer skopt_nn.")
        if data.get("search") != self.fingerprint:
            raise ValueError(
                f"checkpoint={self.path!r} was written by a different search (another space, "
                "number of CV splits or scoring); delete it or pass another path to start afresh."
            )
        self.subspaces = data["subspaces"]

    def points(self, index):
        """Evaluated candidates of one subspace: dicts with ``x`` and ``out``."""
        return list(self.subspaces[index])

    def record(self, index, natives, outs, n_splits):
        """Add one step's candidates and rewrite the file atomically."""
        for c, x in enumerate(natives):
            split_outs = outs[c * n_splits : (c + 1) * n_splits]
            self.subspaces[index].append(
                {"x": list(x), "out": [_stored_out(out) for out in split_outs]}
            )
        data = {"format": _FORMAT, "version": _VERSION, "search": self.fingerprint,
                "subspaces": self.subspaces}
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, default=_plain)
        # A crash while writing leaves the previous checkpoint intact.
        os.replace(tmp, self.path)


def _stored_out(out):
    return {k: v for k, v in out.items() if k not in ("estimator", "parameters")}


class _Replay:
    """Stands in for sklearn's ``_fit_and_score`` while a search replays.

    It answers the calls of the search it was made for with the recorded
    results (by candidate and split index) and passes every other call on,
    so another search running in a thread of the same process is unaffected.
    """

    def __init__(self, token, records, real):
        self.token = token
        self.records = records
        self.real = real
        self.passthrough = False

    def __call__(self, *args, **kwargs):
        caller = kwargs.get("caller")
        ours = caller is None or getattr(caller, "_checkpoint_token", None) == self.token
        if self.passthrough or not ours:
            return self.real(*args, **kwargs)
        return self.answer(self.record(kwargs), args, kwargs)

    def record(self, kwargs):
        """The record of one of sklearn's per-fit calls: by candidate and split index."""
        cand, _ = kwargs["candidate_progress"]
        split, _ = kwargs["split_progress"]
        return self.records[cand][split]

    def answer(self, record, args, kwargs):
        """The result of one of sklearn's per-fit calls, from its record."""
        return dict(record)


_lock = threading.Lock()


@contextlib.contextmanager
def replaying(search, records, replay_class=_Replay):
    """Let ``evaluate_candidates`` return recorded results instead of fitting.

    sklearn's search looks ``_fit_and_score`` up in its module at call time,
    so it is swapped there for one ``evaluate_candidates`` call.
    ``replay_class`` (a ``_Replay`` subclass) decides how a call is answered.
    """
    token = uuid.uuid4().hex
    search._checkpoint_token = token
    with _lock:
        replay = replay_class(token, records, _sk_search._fit_and_score)
        _sk_search._fit_and_score = replay
    try:
        yield
    finally:
        with _lock:
            if _sk_search._fit_and_score is replay:
                previous = replay.real
                while isinstance(previous, _Replay) and previous.passthrough:
                    previous = previous.real
                _sk_search._fit_and_score = previous
            else:  # another replay was installed on top: become transparent
                replay.passthrough = True
        del search._checkpoint_token
