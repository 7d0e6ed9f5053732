"""TensorBoard logging for the estimators' ``tensorboard_dir`` option.

The estimator holds a directory, never a writer: a writer holds an open file
and a thread, which ``clone``, pickling and the workers of a search cannot
carry. Each fit opens its own writer in a fresh run directory named after the
parameters that differ from the defaults, and closes it when training ends.
"""

import inspect
import math
import numbers
import os
import re

from skorch.callbacks import Callback

__all__ = ["TensorBoardLogger", "run_name"]

# History column -> TensorBoard tag.
_TAGS = {
    "train_loss": "loss/train",
    "valid_loss": "loss/valid",
    "valid_score": "score/valid",
    "lr": "lr",
    "sparsity": "sparsity",
}
# Parameters that say nothing about the model a run trained.
_SKIPPED = {"tensorboard_dir", "verbose", "callbacks", "warm_start", "device", "n_threads"}
_MAX_NAME = 120


def _defaults(obj):
    try:
        params = inspect.signature(type(obj).__init__).parameters
    except (TypeError, ValueError):
        return {}
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def _short(value):
    """A compact text form of a parameter value, or None for values not worth a name."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.3g}"
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(v, numbers.Number) for v in value):
        return "x".join(_short(v) for v in value) or "()"
    if isinstance(value, type):
        return value.__name__
    return None


def _same(a, b):
    try:
        return bool(a == b)
    except Exception:  # arrays and other values without a plain equality
        return a is b


def _changed(obj, prefix="", depth=0):
    """``[(name, text)]`` for the parameters of ``obj`` that differ from its defaults."""
    out = []
    defaults = _defaults(obj)
    for key, value in obj.get_params(deep=False).items():
        if depth == 0 and key in _SKIPPED:
            continue
        if key in defaults and _same(value, defaults[key]):
            continue
        text = _short(value)
        if text is not None:
            out.append((prefix + key, text))
        elif hasattr(value, "get_params") and depth < 2:
            # A nested spec: its kind, then what was changed in it.
            # An LRSchedule is known by its name, the rest by their class.
            named = type(value).__name__ == "LRSchedule"
            out.append((prefix + key, str(value.name) if named else type(value).__name__))
            out += [
                item
                for item in _changed(value, prefix + key + ".", depth + 1)
                if not (named and item[0] == f"{prefix}{key}.name")
            ]
        else:
            out.append((prefix + key, type(value).__name__))
    return out


def run_name(estimator):
    """Directory name for one fit of ``estimator``, made of its changed parameters.

    Parameters
    ----------
    estimator : estimator
        A skopt_nn estimator.

    Returns
    -------
    str
        ``"lr=0.01,optimizer=sgd,..."``, safe as a file name and at most 120
        characters, or ``"defaults"``.

    Examples
    --------
    >>> from skopt_nn import MLP, NNClassifier
    >>> from skopt_nn.training._tensorboard import run_name
    >>> run_name(NNClassifier(MLP((64, 32)), lr=0.01, optimizer="sgd"))
    'lr=0.01,module=MLP,module.hidden_layer_sizes=64x32,optimizer=sgd'
    """
    parts = [f"{k}={v}" for k, v in _changed(estimator)]
    name = ",".join(parts) or "defaults"
    name = re.sub(r"[^A-Za-z0-9_.,=+\-x]", "", name)
    return name[:_MAX_NAME].rstrip(",") or "defaults"


def _fresh_dir(root, name):
    """Create and return ``root/name``, or ``root/name-2``... when taken.

    ``makedirs`` without ``exist_ok`` is atomic, so parallel fits (the CV
    folds of one candidate share their name) never share a directory.
    """
    os.makedirs(root, exist_ok=True)
    for i in range(1, 100_000):
        path = os.path.join(root, name if i == 1 else f"{name}-{i}")
        try:
            os.makedirs(path)
        except FileExistsError:
            continue
        return path
    raise OSError(f"Too many TensorBoard runs named {name!r} in {root!r}.")


class TensorBoardLogger(Callback):
    """skorch callback writing per-epoch losses, learning rate and sparsity.

    Estimators add it when ``tensorboard_dir`` is set. Each fit writes one
    run directory below ``log_dir``; the scalars are ``loss/train``,
    ``loss/valid`` and ``score/valid`` (accuracy or R², with
    ``early_stopping``), ``lr`` and ``sparsity`` (with
    ``pruning``), one point per epoch, and the text ``params`` holds the
    estimator's full parameters.

    Parameters
    ----------
    log_dir : str or path-like
        Directory holding the runs (TensorBoard's ``--logdir``).
    name : str, default="run"
        Run directory name; made unique by a ``-2``, ``-3``... suffix.
    params_text : str, default=""
        Text logged once under the tag ``params``.
    """

    def __init__(self, log_dir, name="run", params_text=""):
        self.log_dir = log_dir
        self.name = name
        self.params_text = params_text

    @classmethod
    def for_estimator(cls, estimator):
        _require_tensorboard(type(estimator).__name__)
        return cls(os.fspath(estimator.tensorboard_dir), run_name(estimator), repr(estimator))

    def on_train_begin(self, net, **kwargs):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir_ = _fresh_dir(os.fspath(self.log_dir), self.name)
        self.writer_ = SummaryWriter(log_dir=self.run_dir_)
        if self.params_text:
            self.writer_.add_text("params", f"```\n{self.params_text}\n```", 0)

    def on_epoch_end(self, net, **kwargs):
        writer = getattr(self, "writer_", None)
        if writer is None:
            return
        row = net.history[-1]
        step = len(net.history)
        for key, tag in _TAGS.items():
            value = row.get(key) if hasattr(row, "get") else None
            if isinstance(value, numbers.Real) and math.isfinite(value):
                writer.add_scalar(tag, float(value), step)

    def on_train_end(self, net, **kwargs):
        writer = getattr(self, "writer_", None)
        if writer is not None:
            writer.close()
        # The writer holds a file and a thread: keep it out of pickles.
        self.writer_ = None


def _require_tensorboard(owner):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ImportError(
            f"The 'tensorboard_dir' parameter of {owner} needs the tensorboard "
            "package: pip install tensorboard"
        ) from None
