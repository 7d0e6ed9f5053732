"""A progress bar over the rungs of an ASHA search (``verbose=1``)."""

import sys

__all__ = ["RungProgress"]


class RungProgress:
    """One bar step per candidate finishing a rung, with per-rung counts.

    The bar's length is the number of rung completions successive halving
    plans for (all candidates at the first rung, ``1 / eta`` of them at each
    next one); the text after it reads ``epochs:done`` per rung.

    Parameters
    ----------
    rungs : list of int
        Epochs at each rung.
    n_candidates : int
    enabled : bool, default=True
        ``False`` draws nothing.
    eta : int, default=3
    file : file-like, default=None
        Standard error when None.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> bar = RungProgress([1, 3], 3, file=out)
    >>> for rung in (0, 0, 0, 1):
    ...     bar.update(rung, best=0.9)
    >>> bar.counts
    [3, 1]
    >>> bar.close()
    >>> "1ep:3 3ep:1" in out.getvalue()
    True
    """

    def __init__(self, rungs, n_candidates, *, enabled=True, eta=3, file=None):
        self.rungs = list(rungs)
        self.counts = [0] * len(self.rungs)
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            planned, n = 0, n_candidates
            for _ in self.rungs:
                planned += n
                n = max(1, n // eta)
            self._bar = tqdm(total=planned, desc="asha", unit="rung",
                             file=file or sys.stderr, leave=True, dynamic_ncols=True)

    def update(self, rung, best=None):
        """Record that one candidate finished ``rung``."""
        self.counts[rung] += 1
        if self._bar is None:
            return
        text = " ".join(f"{e}ep:{c}" for e, c in zip(self.rungs, self.counts))
        if best is not None:
            text += f" best={best:.4g}"
        self._bar.set_postfix_str(text, refresh=False)
        self._bar.update(1)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
