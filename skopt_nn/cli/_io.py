"""What the ``skopt-nn`` command reads and writes: data sets, space files, models.

It also holds what ``demo`` and ``tune`` share once a search has run: the
saved model files and the lines printed about the outcome.

Every problem a user can cause (a missing file, an unknown column, a bad
space file) raises :class:`CLIError` with one line that says what to change;
the command prints it without a traceback.
"""

import contextlib
import json
import numbers
import os
import warnings

__all__ = ["CLIError", "BUILTIN_DATASETS", "load_dataset", "read_space_file", "load_model"]


class CLIError(Exception):
    """A mistake in the command's input, told to the user in one line."""


# name -> (loader name in sklearn.datasets, task)
BUILTIN_DATASETS = {
    "digits": ("load_digits", "classification"),
    "breast_cancer": ("load_breast_cancer", "classification"),
    "wine": ("load_wine", "classification"),
    "iris": ("load_iris", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}

# A column of integers with at most this many distinct values is read as labels.
_MAX_INTEGER_CLASSES = 20


class Dataset:
    """Features, target and what is known about them."""

    def __init__(self, X, y, *, name, task, target, how):
        self.X = X
        self.y = y
        self.name = name
        self.task = task
        self.target = target
        self.how = how  # why the task is what it is, for the user


def _pandas():
    try:
        import pandas
    except ImportError:
        raise CLIError("Reading data sets and CSV files needs pandas: pip install pandas") from None
    return pandas


def load_dataset(source, *, target=None, task=None):
    """Load a built-in data set by name or a CSV file, as a DataFrame and a Series."""
    pd = _pandas()

    if source in BUILTIN_DATASETS:
        import sklearn.datasets

        loader, known_task = BUILTIN_DATASETS[source]
        bunch = getattr(sklearn.datasets, loader)(as_frame=True)
        frame = bunch.frame
        target = target or "target"
        how = f"the {source} data set is a {known_task} problem"
    else:
        if not source.lower().endswith(".csv") and not os.path.exists(source):
            names = ", ".join(BUILTIN_DATASETS)
            raise CLIError(f"--data must be one of {names} or a CSV file; got {source!r}.")
        frame = read_csv(source)
        known_task = None
        if target is None:
            target = frame.columns[-1]
        how = None
    if target not in frame.columns:
        raise CLIError(
            f"--target {target!r} is not a column of {source}; columns are {list(map(str, frame.columns))}."
        )
    y = frame[target]
    X = frame.drop(columns=[target])
    if X.shape[1] == 0:
        raise CLIError(f"{source} has no feature columns besides the target {target!r}.")
    if y.isna().any():
        raise CLIError(f"The target column {target!r} of {source} has {int(y.isna().sum())} missing values.")
    if task is None:
        task, how = (known_task, how) if known_task else _infer_task(y, target)
    else:
        how = "set by --task"
    if task == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise CLIError(f"--task regression needs a numeric target; {target!r} holds {y.dtype} values.")
    return Dataset(X, y, name=str(source), task=task, target=str(target), how=how)


def _infer_task(y, target):
    import numpy as np
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return "classification", f"the target {target!r} holds labels ({y.dtype})"
    values = y.to_numpy()
    n_unique = len(np.unique(values))
    if np.all(np.mod(values, 1) == 0) and n_unique <= _MAX_INTEGER_CLASSES:
        return (
            "classification",
            f"the target {target!r} holds {n_unique} distinct integers; pass --task regression if they are amounts",
        )
    return "regression", f"the target {target!r} holds numbers"


def read_csv(path):
    pd = _pandas()

    if not os.path.exists(path):
        raise CLIError(f"No such file: {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CLIError(f"Cannot read {path} as CSV: {str(exc).strip().splitlines()[0]}") from None
    if frame.empty:
        raise CLIError(f"{path} holds no rows.")
    return frame


# -- search-space files -------------------------------------------------------


def _read_document(path):
    if not os.path.exists(path):
        raise CLIError(f"No such space file: {path}")
    ext = os.path.splitext(path)[1].lower()
    with open(path, "rb") as f:
        raw = f.read()
    if ext == ".json":
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CLIError(f"Bad space file {path}: not valid JSON ({exc}).") from None
    if ext == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python < 3.11
            try:
                import tomli as tomllib
            except ModuleNotFoundError:
                raise CLIError(
                    "Reading a TOML space file on Python < 3.11 needs tomli: pip install tomli"
                ) from None
        try:
            return tomllib.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CLIError(f"Bad space file {path}: not valid TOML ({exc}).") from None
    raise CLIError(f"The space file must end in .toml or .json; got {path}.")


def _tuples(value):
    """JSON and TOML have no tuples; layer sizes and milestones need them."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _dimension(name, spec, path):
    from ..search.spaces import Categorical, Integer, Real

    if isinstance(spec, list):
        return Categorical([_tuples(v) for v in spec])
    if not isinstance(spec, dict):
        raise CLIError(
            f"Bad space file {path}: {name!r} must be a list of choices or a table "
            f"with low/high or choices; got {spec!r}."
        )
    kind = str(spec.get("type", "")).lower()
    known = {"type", "low", "high", "log", "choices"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise CLIError(
            f"Bad space file {path}: {name!r} has unknown key(s) {unknown}; valid keys are {sorted(known)}."
        )
    if "choices" in spec or kind == "categorical":
        if not isinstance(spec.get("choices"), list):
            raise CLIError(f"Bad space file {path}: {name!r} needs a list of choices.")
        return Categorical([_tuples(v) for v in spec["choices"]])
    if "low" not in spec or "high" not in spec:
        raise CLIError(f"Bad space file {path}: {name!r} needs both low and high (or choices).")
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if kind not in ("", "real", "integer"):
        raise CLIError(
            f"Bad space file {path}: the type of {name!r} must be real, integer or categorical; got {kind!r}."
        )
    is_int = isinstance(low, numbers.Integral) and isinstance(high, numbers.Integral)
    cls = Integer if kind == "integer" or (kind == "" and is_int) else Real
    try:
        return cls(low, high, log=log)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"Bad space file {path}: {name!r}: {exc}") from None


def _fixed_value(name, value, path):
    """A fixed estimator parameter from a file: tables become recipe specs."""
    from ..specs.modules import CNN, MLP
    from ..specs.pruning import Pruning
    from ..specs.schedules import LRSchedule

    if not isinstance(value, dict):
        return _tuples(value)
    try:
        if name == "pruning":
            return Pruning(**{k: _tuples(v) for k, v in value.items()})
        if name == "lr_schedule":
            options = dict(value)
            return LRSchedule(options.pop("name", "constant"), **{k: _tuples(v) for k, v in options.items()})
        if name == "module":
            options = dict(value)
            kind = str(options.pop("type", "mlp")).lower()
            specs = {"mlp": MLP, "cnn": CNN}
            if kind not in specs:
                raise CLIError(f"Bad space file {path}: module type must be mlp or cnn; got {kind!r}.")
            return specs[kind](**{k: _tuples(v) for k, v in options.items()})
    except TypeError as exc:
        raise CLIError(f"Bad space file {path}: [params.{name}]: {exc}") from None
    raise CLIError(
        f"Bad space file {path}: params.{name} is a table, but only pruning, "
        "lr_schedule and module can be given as tables."
    )


def read_space_file(path):
    """Read ``(space, fixed_params)`` from a TOML or JSON file.

    The file is either a table of dimensions, or has a ``space`` table of
    dimensions and a ``params`` table of fixed parameters. A dimension is a
    list of choices or a table ``{low, high, log, type}`` or ``{choices}``;
    lists inside choices become tuples (``hidden_layer_sizes``).
    """
    from ..search.spaces import SearchSpace

    doc = _read_document(path)
    if not isinstance(doc, dict):
        raise CLIError(f"Bad space file {path}: the top level must be a table of parameters.")
    if "space" in doc or "params" in doc:
        extra = sorted(set(doc) - {"space", "params"})
        if extra:
            raise CLIError(
                f"Bad space file {path}: with a [space] table, the only other table is "
                f"[params]; got {extra}."
            )
        dims, fixed = doc.get("space", {}), doc.get("params", {})
    else:
        dims, fixed = doc, {}
    if not isinstance(dims, dict) or not isinstance(fixed, dict):
        raise CLIError(f"Bad space file {path}: [space] and [params] must be tables.")
    if not dims:
        raise CLIError(f"Bad space file {path}: it defines no dimensions to search.")
    space = SearchSpace({name: _dimension(name, spec, path) for name, spec in dims.items()})
    fixed = {name: _fixed_value(name, value, path) for name, value in fixed.items()}
    return space, fixed


# -- models ---------------------------------------------------------------------


def load_model(path):
    """Load a model written by ``skopt-nn tune``: pickle-free when it can be."""
    if not os.path.exists(path):
        raise CLIError(f"No such model file: {path}")
    if path.endswith((".joblib", ".pkl", ".pickle")):
        import joblib

        try:
            return joblib.load(path)
        except Exception as exc:  # a corrupt or foreign pickle fails in many ways
            raise CLIError(f"Cannot load {path} with joblib: {exc}") from None
    from ..persistence.io import load

    try:
        return load(path)
    except ValueError as exc:
        raise CLIError(f"Cannot load {path}: {exc}") from None


# -- what the command prints and saves after a search ------------------------------


def _say(*args):
    print(*args, flush=True)


@contextlib.contextmanager
def _quiet_search():
    """Hide the per-fit warnings of a search; keep the first fit error to report."""
    from sklearn.exceptions import FitFailedWarning

    caught = {"error": None}
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        yield caught
    for record in records:
        if issubclass(record.category, FitFailedWarning):
            lines = [line for line in str(record.message).splitlines() if line.strip()]
            caught["error"] = lines[-1].strip() if lines else None
            break


def _failures_line(search, caught):
    import numpy as np

    key = "mean_test_score"
    if key not in search.cv_results_ and isinstance(getattr(search, "refit", None), str):
        key = f"mean_test_{search.refit}"  # multi-metric: the metric the search refits on
    if key not in search.cv_results_:
        return None
    scores = np.asarray(search.cv_results_[key], dtype=float)
    n_failed = int(np.isnan(scores).sum())
    if not n_failed:
        return None
    line = f"{n_failed} of {len(scores)} candidates failed to fit and were skipped"
    if caught.get("error"):
        line += f"; first error: {caught['error']}"
    return line


def _save_model(model, out_dir):
    """Write ``model.joblib`` and, when the model allows it, ``model.safetensors``."""
    import joblib

    paths = [os.path.join(out_dir, "model.joblib")]
    joblib.dump(model, paths[0])
    note = None
    try:
        from ..persistence.io import save
    except ImportError as exc:  # safetensors is an optional extra
        note = f"pickle-free model.safetensors skipped: {exc}"
    else:
        path = os.path.join(out_dir, "model.safetensors")
        try:
            save(model, path)
            paths.append(path)
        except (TypeError, ValueError, ImportError) as exc:
            note = f"pickle-free model.safetensors skipped: {exc}"
    return paths, note


def _short_name(name):
    return name.split("__", 1)[1] if name.startswith(("nn__", "net__")) else name


def _show_value(value):
    if isinstance(value, float):
        return f"{value:.3g}"
    return repr(value) if not isinstance(value, str) else value


def _params_text(params):
    return ", ".join(f"{_short_name(k)}={_show_value(v)}" for k, v in params.items())


def _print_files(paths, notes=()):
    """Print the notes that are not None, then the files written."""
    for note in notes:
        if note:
            _say(note)
    _say("\nfiles written:")
    for path in paths:
        _say(f"  {path}")
