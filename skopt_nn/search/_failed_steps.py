"""Letting a search step whose every fit failed through as a warning.

Sequential searches (Bayesian, Optuna, a progress-reporting search) evaluate
one or a few candidates at a time; sklearn's all-fits-failed check would end
them at the first bad step. Shared by every engine, so it sits below them.
"""

import contextlib
import threading
import warnings

import sklearn.model_selection._search as _sk_search
from sklearn.exceptions import FitFailedWarning

__all__ = ["_tolerate_failed_steps"]

_patch_lock = threading.Lock()
_patch_depth = 0
_original_check = getattr(_sk_search, "_warn_or_raise_about_fit_failures", None)


def _warn_even_if_all_failed(results, error_score):
    try:
        _original_check(results, error_score)
    except ValueError as exc:
        if not all(result.get("fit_error") is not None for result in results):
            raise
        warnings.warn(
            f"Every fit of this search step failed; its score is set to "
            f"{error_score} and the search goes on.{str(exc).partition('failed.')[2]}",
            FitFailedWarning,
        )


@contextlib.contextmanager
def _tolerate_failed_steps():
    """Let one all-failed batch of candidates through as a warning.

    sklearn raises when every fit of one ``evaluate_candidates`` call fails,
    a sound check for a grid evaluated at once but fatal to a sequential
    optimizer, whose every step is one or a few candidates. The check is
    looked up in sklearn's search module at call time, so it is swapped
    there for the length of a step, with a lock so overlapping searches
    restore it correctly.
    """
    global _patch_depth
    if _original_check is None:
        yield
        return
    with _patch_lock:
        _patch_depth += 1
        _sk_search._warn_or_raise_about_fit_failures = _warn_even_if_all_failed
    try:
        yield
    finally:
        with _patch_lock:
            _patch_depth -= 1
            if _patch_depth == 0:
                _sk_search._warn_or_raise_about_fit_failures = _original_check
