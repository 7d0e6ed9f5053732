"""Progress feedback for one fit: a bar that moves one step per epoch.

The bar is a skorch callback that ``fit`` adds when ``verbose=1``; it draws
with tqdm, which skorch already depends on. The bar over a search's
candidates lives in ``_search_progress``: it belongs to the search layer,
which sits above the estimators, so that this module (imported by the
estimators' base) never reaches up into search code.
"""

import math
import sys

from skorch.callbacks import Callback

__all__ = ["EpochProgressBar"]

# History columns shown next to the bar, with their short labels.
_SHOWN = (("train_loss", "loss"), ("valid_loss", "valid"), ("lr", "lr"), ("sparsity", "sparsity"))


def _tqdm():
    from tqdm.auto import tqdm

    return tqdm


class EpochProgressBar(Callback):
    """skorch callback drawing one bar step per epoch with the latest losses.

    ``NNClassifier(verbose=1)`` and ``NNRegressor(verbose=1)`` add it to
    every fit. It is internal: the documented way to get it is ``verbose=1``.

    Parameters
    ----------
    total : int or None, default=None
        Epochs the bar expects (``max_epochs``); a fit that stops early
        closes the bar where it stopped.
    desc : str or None, default=None
        Text before the bar.
    file : file-like or None, default=None
        Where to draw; standard error when None.

    Examples
    --------
    In a skorch net of one's own:

    >>> import io
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from skorch import NeuralNetClassifier
    >>> from torch import nn
    >>> from skopt_nn.training._progress import EpochProgressBar
    >>> X, y = load_iris(return_X_y=True)
    >>> out = io.StringIO()
    >>> net = NeuralNetClassifier(
    ...     nn.Sequential(nn.Linear(4, 3)), criterion=nn.CrossEntropyLoss,
    ...     max_epochs=3, train_split=None, verbose=0,
    ...     callbacks=[EpochProgressBar(3, file=out)],
    ... ).fit(X.astype(np.float32), y)
    >>> "3/3" in out.getvalue()
    True
    """

    def __init__(self, total=None, desc=None, file=None):
        self.total = total
        self.desc = desc
        self.file = file

    def on_train_begin(self, net, **kwargs):
        self.bar_ = _tqdm()(
            total=self.total,
            desc=self.desc,
            unit="epoch",
            file=self.file if self.file is not None else sys.stderr,
            dynamic_ncols=True,
            leave=True,
        )

    def on_epoch_end(self, net, **kwargs):
        bar = getattr(self, "bar_", None)
        if bar is None:
            return
        row = net.history[-1]
        shown = {}
        for key, label in _SHOWN:
            value = row.get(key) if hasattr(row, "get") else None
            if isinstance(value, (int, float)) and math.isfinite(value):
                shown[label] = f"{value:.4g}"
        bar.set_postfix(shown, refresh=False)
        bar.update(1)

    def on_train_end(self, net, **kwargs):
        bar = getattr(self, "bar_", None)
        if bar is not None:
            bar.close()
        # A tqdm bar holds a lock and a stream: neither belongs in a pickle.
        self.bar_ = None


def _fit_callbacks(estimator, epochs):
    """The feedback callbacks a fit of ``estimator`` asks for, as ``(name, cb)`` pairs."""
    callbacks = []
    if estimator.verbose == 1:
        callbacks.append(
            ("progress_bar", EpochProgressBar(epochs, desc=type(estimator).__name__))
        )
    if getattr(estimator, "tensorboard_dir", None) is not None:
        from ._tensorboard import TensorBoardLogger

        callbacks.append(("tensorboard", TensorBoardLogger.for_estimator(estimator)))
    return callbacks
