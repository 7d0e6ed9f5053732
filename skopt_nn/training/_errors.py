"""Errors of the training layer."""

__all__ = ["DivergenceError"]


class DivergenceError(ValueError):
    """Raised when the training loss stops being finite.

    Searches record such a fit as a failed point (``error_score``) and go on.
    """
