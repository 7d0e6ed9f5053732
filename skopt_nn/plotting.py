"""Plots of training, schedules, pruning and searches (needs matplotlib).

matplotlib is an optional dependency (``pip install matplotlib``) and
is imported only when a function here is called. Every function draws on the
``ax`` it is given, or on a new figure, and returns what it drew on, so plots
combine with the rest of a matplotlib figure.
"""

import numbers

import numpy as np

__all__ = [
    "plot_learning_curve",
    "plot_lr_schedule",
    "plot_sparsity",
    "plot_search_results",
    "plot_convergence",
    "plot_rungs",
    "plot_pareto_front",
]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "skopt_nn.plotting needs matplotlib: pip install matplotlib"
        ) from None
    return plt


def _axes(ax):
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=(6, 4), layout="constrained")
    return ax


def _log_axis(ax, which):
    """Log scale labelled 1, 2, 5 per decade in plain numbers (0.02, not 2x10^-2)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _fitted_nn(model, what):
    """The fitted skopt_nn estimator inside ``model`` (a search, a Pipeline or itself)."""
    from .training._find import shallowest_networks

    model = getattr(model, "best_estimator_", model)
    found = shallowest_networks(model)
    if not found:
        raise TypeError(
            f"{what} needs a fitted NNClassifier or NNRegressor, a Pipeline "
            f"holding one or a fitted search; got {type(model).__name__}."
        )
    model = found[-1][1]
    if not hasattr(model, "net_"):
        raise ValueError(f"{what} needs a fitted model; this {type(model).__name__} is not fitted.")
    return model


# -- training -------------------------------------------------------------------


def plot_learning_curve(model, *, ax=None, show_lr=True):
    """Plot the training (and validation) loss of a fit, epoch by epoch.

    Parameters
    ----------
    model : estimator
        A fitted ``NNClassifier``/``NNRegressor``, a Pipeline ending in one,
        or a fitted search (its ``best_estimator_``).
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    show_lr : bool, default=True
        Also draw the learning rate of each epoch, on a second (log) axis.

    Returns
    -------
    ax : matplotlib Axes
        The axes holding the loss curves.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from skopt_nn import NNClassifier
    >>> from skopt_nn.plotting import plot_learning_curve
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NNClassifier(max_epochs=5, early_stopping=True, random_state=0).fit(X, y)
    >>> ax = plot_learning_curve(clf)
    >>> [line.get_label() for line in ax.get_lines()]
    ['training loss', 'validation loss']
    """
    nn = _fitted_nn(model, "plot_learning_curve")
    ax = _axes(ax)
    history = nn.history_
    epochs = np.asarray(history[:, "epoch"], dtype=float)
    ax.plot(epochs, history[:, "train_loss"], marker=".", label="training loss")
    # Any epoch may have one: warm-started and partial fits can mix epochs
    # with and without a validation split. Epochs without one are gaps.
    valid = np.array([row.get("valid_loss", np.nan) for row in history], dtype=float)
    if np.isfinite(valid).any():
        ax.plot(epochs, valid, marker=".", label="validation loss")
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("loss")
    title = f"{type(nn).__name__}: learning curve"
    if not np.isfinite(valid).any():
        # Say why a reader looking for the validation curve does not find it.
        title += "\n(no validation loss: fitted with early_stopping=False)"
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    if show_lr and all("lr" in row for row in history):
        twin = ax.twinx()
        twin.plot(epochs, history[:, "lr"], color="0.5", linestyle="--", label="learning rate")
        twin.set_ylabel("learning rate")
        lrs = np.asarray(history[:, "lr"], dtype=float)
        if np.all(lrs > 0) and lrs.max() / lrs.min() > 20:
            _log_axis(twin, "y")
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="upper right")
    return ax


def plot_lr_schedule(schedule, *, lr=1e-3, max_epochs=20, steps_per_epoch=1, ax=None):
    """Preview learning-rate schedules before training.

    Parameters
    ----------
    schedule : str, LRSchedule or list of them
        The schedule(s) to draw, by name (``"cosine"``) or as specs; a list
        draws them side by side.
    lr : float, default=1e-3
        The estimator's ``lr``.
    max_epochs : int, default=20
        The estimator's ``max_epochs``.
    steps_per_epoch : int, default=1
        Batches per epoch: ``ceil(n_training_rows / batch_size)``. Schedules
        move every batch, so more steps draw a smoother curve.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skopt_nn import LRSchedule
    >>> from skopt_nn.plotting import plot_lr_schedule
    >>> ax = plot_lr_schedule(["cosine", LRSchedule("onecycle", pct_start=0.2)],
    ...                       lr=0.1, max_epochs=10, steps_per_epoch=5)
    >>> [line.get_label() for line in ax.get_lines()]
    ['cosine', 'onecycle(pct_start=0.2)']
    """
    from .specs.schedules import LRSchedule, resolve_schedule

    if isinstance(schedule, (str, LRSchedule)):
        schedule = [schedule]
    ax = _axes(ax)
    for item in schedule:
        spec = resolve_schedule(item, "plot_lr_schedule")
        rates = spec.preview(lr=lr, max_epochs=max_epochs, steps_per_epoch=steps_per_epoch)
        x = np.arange(len(rates)) / steps_per_epoch
        ax.plot(x, rates, label=_schedule_label(spec))
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title(f"learning-rate schedule (lr={lr:g}, {max_epochs} epochs)")
    ax.legend()
    return ax


def _schedule_label(spec):
    options = {k: v for k, v in spec.get_params().items() if k != "name"}
    if not options.get("warmup_epochs"):
        options.pop("warmup_epochs", None)
    if not options:
        return str(spec.name)
    return f"{spec.name}({', '.join(f'{k}={v!r}' for k, v in options.items())})"


# -- pruning --------------------------------------------------------------------


def plot_sparsity(model, *, ax=None):
    """Bar chart of the weights each layer kept and lost to pruning.

    Each layer's bar runs from 0 to 1: the fraction of its weights kept at
    the bottom, the fraction pruned above it. The kept part is labelled with
    the units kept out of the units the layer had (structured pruning,
    ``ln_structured``) or with the fraction kept.

    Parameters
    ----------
    model : estimator
        A fitted model trained with ``pruning`` (its ``pruning_summary_``),
        a Pipeline ending in one, or a fitted search.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from skopt_nn import MLP, NNClassifier, Pruning
    >>> from skopt_nn.plotting import plot_sparsity
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NNClassifier(MLP((16,)), max_epochs=4, random_state=0,
    ...                    pruning=Pruning(amount=0.5)).fit(X, y)
    >>> ax = plot_sparsity(clf)
    >>> [text.get_text() for text in ax.texts]
    ['50% kept', '100% kept']
    """
    nn = _fitted_nn(model, "plot_sparsity")
    rows = getattr(nn, "pruning_summary_", None)
    if not rows:
        raise ValueError(
            "plot_sparsity needs a model trained with pruning; this one has no "
            "pruning_summary_ (set pruning=Pruning(...))."
        )
    from matplotlib.patches import Patch

    ax = _axes(ax)
    names = [f"{row['layer']}\n{row['type']}" for row in rows]
    kept = np.array([1.0 - row["sparsity"] for row in rows])
    own = [row.get("pruned", True) for row in rows]
    x = np.arange(len(rows))
    # A layer that was not pruned itself still loses the inputs of the
    # units removed before it: its kept part is drawn in grey.
    bars = ax.bar(x, kept, color=["C0" if p else "0.55" for p in own])
    ax.bar(x, 1.0 - kept, bottom=kept, color="0.88", edgecolor="0.7", hatch="//")
    for bar, row, share in zip(bars, rows, kept):
        if "units" in row:
            text = f"{row['units_kept']}/{row['units']} units"
        else:
            text = f"{share:.0%} kept"
        # Inside the kept part when it is tall enough to hold the label.
        inside = share >= 0.12
        ax.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, share / 2 if inside else share),
            xytext=(0, 0 if inside else 2),
            textcoords="offset points",
            ha="center",
            va="center" if inside else "bottom",
            fontsize="small",
            color="white" if inside else "black",
            fontweight="bold" if inside else "normal",
        )
    ax.set_xticks(x, names, fontsize="small")
    handles = [Patch(color="C0", label="kept"),
               Patch(facecolor="0.88", edgecolor="0.7", hatch="//", label="pruned")]
    if not all(own):
        label = "kept, layer not pruned"
        if any("units" in row for row in rows):
            label += "\n(loses removed units' inputs)"
        handles.insert(1, Patch(color="0.55", label=label))
    # Below the axes, so it never covers a bar.
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncols=len(handles), fontsize="small", frameon=False)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of the layer's weights")
    ax.set_title(f"weights kept per layer (overall sparsity {nn.sparsity_:.0%})")
    return ax


# -- searches -------------------------------------------------------------------


def _score_key(search, score):
    results = search.cv_results_
    if score is not None:
        key = score if score.startswith("mean_test_") else f"mean_test_{score}"
        if key not in results:
            valid = sorted(k[len("mean_test_"):] for k in results if k.startswith("mean_test_"))
            raise ValueError(f"score must be one of {valid}; got {score!r}.")
        return key
    from .search.pareto import ranking_metric

    return f"mean_test_{ranking_metric(search, results)}"


def _strip_prefix(search):
    """A function shortening ``step__param`` names to the skopt_nn estimator's own."""
    from .search._engines import _find_target

    try:
        prefix, _ = _find_target(search.estimator)
    except (ValueError, AttributeError):
        prefix = ""
    return lambda name: name[len(prefix):] if prefix and name.startswith(prefix) else name


def _is_numeric(values):
    return len(values) > 0 and all(
        isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in values
    )


def _log_scale(search, name, x):
    """Whether the search drew ``name`` on a log scale (or, unknown, its values span decades)."""
    if not np.all(x > 0):
        return False
    spaces = getattr(search, "search_spaces", None) or getattr(search, "param_distributions", None)
    for space in spaces if isinstance(spaces, list) else [spaces]:
        if isinstance(space, tuple):  # BayesSearchCV's (space, n_iter)
            space = space[0]
        dim = space.get(name) if hasattr(space, "get") else None
        if getattr(dim, "prior", None) in ("log-uniform", "uniform"):  # skopt
            return dim.prior == "log-uniform"
        dist = getattr(getattr(dim, "dist", None), "name", None)  # frozen scipy.stats
        if dist is not None:
            return dist in ("loguniform", "reciprocal")
        if getattr(dim, "log", None) is not None:  # skopt_nn's integer distribution
            return bool(dim.log)
    return x.max() / x.min() >= 20


def plot_search_results(search, *, params=None, score=None, axes=None):
    """Plot the cross-validated score against each searched parameter.

    One panel per parameter: numeric parameters on their own axis (log
    scale when they span orders of magnitude), categorical ones as labelled
    positions. Error bars are one standard deviation over the CV splits, the
    best candidate is starred, and candidates whose fits failed are counted
    in the panel title.

    Parameters
    ----------
    search : fitted search
        Any fitted sklearn or scikit-optimize search (``cv_results_``).
    params : list of str, default=None
        Parameters to show, as in ``cv_results_`` (``"param_"`` optional, a
        Pipeline step's prefix optional); all searched parameters when None.
    score : str, default=None
        Metric of a multi-metric search; the refit metric when None.
    axes : array of matplotlib Axes, default=None
        One per parameter; a new figure when None.

    Returns
    -------
    axes : ndarray of matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from skopt_nn import NNClassifier, make_search
    >>> from skopt_nn.plotting import plot_search_results
    >>> X, y = load_iris(return_X_y=True)
    >>> search = make_search(NNClassifier(max_epochs=2, random_state=0),
    ...                      {"lr": [1e-3, 1e-2], "optimizer": ["adam", "sgd"]},
    ...                      method="grid", cv=2).fit(X, y)
    >>> [ax.get_xlabel() for ax in plot_search_results(search)]
    ['lr', 'optimizer']
    """
    results = search.cv_results_
    key = _score_key(search, score)
    short = _strip_prefix(search)
    searched = [k[len("param_"):] for k in results if k.startswith("param_")]
    if params is None:
        names = searched
    else:
        names = []
        for name in params:
            name = name[len("param_"):] if name.startswith("param_") else name
            match = [s for s in searched if s == name or short(s) == name]
            if not match:
                raise ValueError(
                    f"params holds {name!r}, which the search did not vary; "
                    f"searched parameters are {[short(s) for s in searched]}."
                )
            names.append(match[0])
    if not names:
        raise ValueError("The search has no parameters to plot.")

    if axes is None:
        plt = _pyplot()
        n_cols = min(3, len(names))
        n_rows = -(-len(names) // n_cols)
        fig, axes = plt.subplots(
            n_rows, n_cols, figsize=(4 * n_cols, 3.2 * n_rows), squeeze=False,
            sharey=True, layout="constrained",
        )
        for extra in axes.flat[len(names):]:
            extra.set_visible(False)
        fig.suptitle(f"{type(search).__name__}: {key[len('mean_test_'):]} per parameter")
    axes = np.asarray(axes, dtype=object).ravel()[: len(names)]
    if len(axes) < len(names):
        raise ValueError(f"axes holds {len(axes)} axes for {len(names)} parameters.")

    scores = np.asarray(results[key], dtype=float)
    spread = results.get(key.replace("mean_", "std_"))
    spread = np.zeros_like(scores) if spread is None else np.asarray(spread, dtype=float)
    ok = np.isfinite(scores)
    best = int(np.nanargmax(scores)) if ok.any() else None
    for ax, name in zip(axes, names):
        column = results[f"param_{name}"]
        mask = np.ma.getmaskarray(column)
        used = ok & ~mask
        values = list(np.asarray(column, dtype=object)[used])
        if _is_numeric(values):
            x = np.asarray(values, dtype=float)
            if _log_scale(search, name, x):
                _log_axis(ax, "x")
        else:
            labels = list(dict.fromkeys(str(v) for v in values))
            positions = {label: i for i, label in enumerate(labels)}
            x = np.array([positions[str(v)] for v in values], dtype=float)
            # Spread repeated choices sideways so every candidate stays visible.
            x = x + np.random.RandomState(0).uniform(-0.12, 0.12, size=len(x))
            ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize="small")
            ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.errorbar(x, scores[used], yerr=spread[used], fmt="o", alpha=0.7, capsize=2)
        if best is not None and used[best]:
            where = int(np.flatnonzero(used).tolist().index(best))
            ax.plot(x[where], scores[best], marker="*", markersize=14, color="C3", linestyle="none")
        n_failed = int((~ok & ~mask).sum())
        ax.set_title(f"{short(name)}" + (f" ({n_failed} failed)" if n_failed else ""),
                     fontsize="medium")
        ax.set_xlabel(short(name))
    axes[0].set_ylabel(key[len("mean_test_"):])
    return axes


def plot_convergence(search, *, score=None, ax=None):
    """Plot each candidate's score and the best score so far, in search order.

    For a Bayesian search this shows whether the optimizer is still finding
    better points; for grid and random searches the order is the order the
    candidates were drawn. Failed candidates are marked along the bottom.

    Parameters
    ----------
    search : fitted search
        Any fitted sklearn or scikit-optimize search.
    score : str, default=None
        Metric of a multi-metric search; the refit metric when None.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from skopt_nn import NNClassifier, Real, make_search
    >>> from skopt_nn.plotting import plot_convergence
    >>> X, y = load_iris(return_X_y=True)
    >>> search = make_search(NNClassifier(max_epochs=2, random_state=0),
    ...                      {"lr": Real(1e-3, 1e-1, log=True)},
    ...                      method="bayes", n_iter=3, cv=2, random_state=0).fit(X, y)
    >>> [line.get_label() for line in plot_convergence(search).get_lines()]
    ['candidate', 'best so far']
    """
    key = _score_key(search, score)
    scores = np.asarray(search.cv_results_[key], dtype=float)
    ax = _axes(ax)
    steps = np.arange(1, len(scores) + 1)
    ok = np.isfinite(scores)
    ax.plot(steps[ok], scores[ok], "o", alpha=0.6, label="candidate")
    best_so_far = np.fmax.accumulate(np.where(ok, scores, -np.inf))
    shown = np.isfinite(best_so_far)
    ax.plot(steps[shown], best_so_far[shown], drawstyle="steps-post", color="C3", label="best so far")
    if (~ok).any():
        bottom = np.nanmin(scores) if ok.any() else 0.0
        ax.plot(steps[~ok], np.full((~ok).sum(), bottom), "x", color="0.4", label="failed")
    ax.set_xlabel("candidate (search order)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(key[len("mean_test_"):])
    ax.set_title(f"{type(search).__name__}: convergence")
    # Outside the axes: inside, some corner always holds a candidate.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return ax


def plot_rungs(search, *, ax=None, label_best=True):
    """Plot each candidate's score against the epochs it was trained for.

    One line per candidate of a fitted ``make_search(..., method="asha")``
    search, through the mean validation score at every rung it reached:
    candidates stopped early end at the left, the chosen one is drawn
    thicker; failed candidates are marked at the epochs they reached.

    Parameters
    ----------
    search : ASHASearchCV
        A fitted search with ``cv_results_["score_history"]``.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    label_best : bool, default=True
        Name the best candidate in the legend.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from skopt_nn import NNClassifier, Real, make_search
    >>> from skopt_nn.plotting import plot_rungs
    >>> X, y = load_iris(return_X_y=True)
    >>> search = make_search(NNClassifier(max_epochs=3, random_state=0),
    ...                      {"lr": Real(1e-3, 1e-1, log=True)}, method="asha",
    ...                      n_iter=3, cv=2, random_state=0).fit(X, y)
    >>> len(plot_rungs(search).get_lines()) >= 3
    True
    """
    results = getattr(search, "cv_results_", None)
    if results is None or "score_history" not in results:
        raise TypeError(
            "plot_rungs needs a fitted make_search(..., method='asha') search; "
            f"got {type(search).__name__}."
        )
    ax = _axes(ax)
    best = getattr(search, "best_index_", None)
    for i, history in enumerate(results["score_history"]):
        if not history:
            continue
        epochs, scores = zip(*history)
        if i == best:
            ax.plot(epochs, scores, "o-", color="C3", lw=2.5, zorder=3,
                    label="best" if label_best else None)
        else:
            ax.plot(epochs, scores, "o-", color="C0", alpha=0.35, lw=1, ms=3)
        if results["failed"][i]:
            ax.plot([epochs[-1]], [scores[-1]], "x", color="0.3", ms=8)
    _log_axis(ax, "x")
    ax.set_xticks(search.rungs_)
    ax.set_xlabel("epochs trained")
    ax.set_ylabel("mean validation score")
    ax.set_title(f"ASHA: {search.n_candidates_} candidates, {search.total_epochs_} epochs in all")
    if label_best and best is not None:
        ax.legend(loc="lower right")
    return ax


def _cost_axis(search, name, values):
    """``(values to draw, label)``: a cost entered negated (``neg_...``) is drawn as the cost itself.

    The scorer's own name decides, so an entry named ``"bytes"`` that holds
    ``neg_model_bytes`` is drawn in bytes too.
    """
    scoring = getattr(search, "scoring", None)
    scorer = scoring.get(name, name) if isinstance(scoring, dict) else name
    scorer = getattr(scorer, "name", scorer)  # a cost scorer made by get_scorer
    if isinstance(scorer, str) and scorer.startswith("neg_"):
        label = scorer[len("neg_"):] if name == scorer else f"{name} ({scorer[len('neg_'):]})"
        return -values, label.replace("_", " ")
    return values, name.replace("_", " ")


def plot_pareto_front(search, objectives=None, *, ax=None):
    """Plot every candidate on two objectives, the Pareto front through them, the refit pick marked.

    Parameters
    ----------
    search : fitted search
        Any search of :func:`~skopt_nn.make_search` (or sklearn's) with the
        two objectives among its scoring entries.
    objectives : list of two str, default=None
        The scoring entries to draw: the first on the vertical axis, the
        second on the horizontal one. A cost entered negated
        (``"neg_model_bytes"``, or an entry holding that scorer) is drawn
        as the cost itself, on a log axis when it spans a decade or more.
        ``None``: the search's ``objectives``, or its scoring entries;
        either must be two.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes

    Raises
    ------
    ValueError
        When ``objectives`` does not name two scoring entries of the search.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from skopt_nn import MLP, NNClassifier, make_search
    >>> from skopt_nn.plotting import plot_pareto_front
    >>> X, y = load_iris(return_X_y=True)
    >>> search = make_search(NNClassifier(MLP((8,)), max_epochs=3, random_state=0),
    ...                      {"module__hidden_layer_sizes": [(4,), (16,)]}, method="grid", cv=2,
    ...                      objectives=["accuracy", "neg_model_bytes"]).fit(X, y)
    >>> plot_pareto_front(search).get_xlabel()
    'model bytes'
    """
    from .search.pareto import _metric_names, pareto_front

    results = getattr(search, "cv_results_", None)
    if results is None:
        raise TypeError(f"plot_pareto_front needs a fitted search; got {type(search).__name__}.")
    names = _metric_names(results)
    if objectives is None:
        objectives = getattr(search, "objectives", None) or names
    objectives = [objectives] if isinstance(objectives, str) else list(objectives)
    if len(objectives) != 2 or any(o not in names for o in objectives):
        raise ValueError(
            f"plot_pareto_front draws two objectives: pass objectives=[...] naming two of {names}; "
            f"got {objectives!r}."
        )
    ax = _axes(ax)
    y_name, x_name = objectives
    y = np.asarray(results[f"mean_test_{y_name}"], dtype=float)
    x, x_label = _cost_axis(search, x_name, np.asarray(results[f"mean_test_{x_name}"], dtype=float))
    ok = np.isfinite(x) & np.isfinite(y)
    ax.scatter(x[ok], y[ok], s=18, color="0.6", label="candidates", zorder=2)
    front = pareto_front(results, [y_name, x_name])["index"]
    order = front[np.argsort(x[front], kind="stable")]
    ax.step(x[order], y[order], where="post", color="C0", lw=1.5, zorder=3)
    ax.scatter(x[order], y[order], s=36, color="C0", label=f"Pareto front ({len(front)})", zorder=4)
    best = getattr(search, "best_index_", None)
    if best is not None and ok[best]:
        ax.scatter([x[best]], [y[best]], s=160, marker="*", color="C3", label="refit pick", zorder=5)
    finite = x[ok]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() >= 10:
        _log_axis(ax, "x")
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"mean test {y_name.replace('_', ' ')}")
    ax.set_title(f"Pareto front: {len(front)} of {int(ok.sum())} candidates")
    ax.legend(loc="best")  # the front runs corner to corner: let matplotlib find room
    return ax
