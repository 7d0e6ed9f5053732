"""Every plot function draws a real, non-blank image."""

import sys
import types

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skopt_nn import MLP, Categorical, LRSchedule, NNClassifier, Pruning, Real, make_search  # noqa: E402
from skopt_nn import plotting  # noqa: E402


def _assert_png(drawn, path):
    """Save what a plot function returned and check the file is a non-blank image."""
    fig = np.asarray(drawn, dtype=object).ravel()[0].figure
    fig.savefig(path)
    plt.close(fig)
    image = matplotlib.image.imread(path)
    assert path.stat().st_size > 1000
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    # Something was drawn: the pixels are not all the background colour.
    assert np.ptp(image[..., :3]) > 0.5


@pytest.fixture(scope="module")
def pruned(iris):
    X, y = iris
    return NNClassifier(
        MLP((16,)), lr=0.02, max_epochs=6, early_stopping=True, random_state=0,
        lr_schedule=LRSchedule("cosine", warmup_epochs=1),
        pruning=Pruning("ln_structured", amount=0.5),
    ).fit(X, y)


@pytest.fixture(scope="module")
def bayes_search(iris):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), NNClassifier(MLP((8,)), max_epochs=3, random_state=0))
    space = {
        "lr": Real(1e-3, 1e-1, log=True),
        "optimizer": Categorical(["adam", "sgd"]),
        "module__hidden_layer_sizes": Categorical([(8,), (8, 8)]),
    }
    return make_search(pipe, space, "bayes", n_iter=5, cv=2, random_state=0).fit(X, y)


def test_learning_curve_shows_both_losses_and_the_lr(pruned, tmp_path):
    ax = plotting.plot_learning_curve(pruned)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["training loss", "validation loss"]
    assert len(ax.get_lines()[0].get_xdata()) == pruned.n_iter_
    assert len(ax.figure.axes) == 2  # the learning-rate axis
    _assert_png(ax, tmp_path / "curve.png")


def test_learning_curve_accepts_a_search_or_a_pipeline(bayes_search, tmp_path):
    for model in (bayes_search, bayes_search.best_estimator_):
        ax = plotting.plot_learning_curve(model, show_lr=False)
        assert len(ax.figure.axes) == 1
    _assert_png(ax, tmp_path / "curve.png")


def test_lr_schedule_preview_draws_each_schedule_at_batch_resolution(tmp_path):
    ax = plotting.plot_lr_schedule(
        ["constant", LRSchedule("onecycle"), LRSchedule("step", gamma=0.5, warmup_epochs=1)],
        lr=0.1, max_epochs=6, steps_per_epoch=4,
    )
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == [
        "constant", "onecycle", "step(warmup_epochs=1, gamma=0.5)"
    ]
    assert len(lines[1].get_ydata()) == 6 * 4
    assert max(lines[1].get_ydata()) == pytest.approx(0.1, rel=0.05)  # onecycle peaks at lr
    _assert_png(ax, tmp_path / "schedule.png")


def test_sparsity_plot_labels_the_kept_part_of_each_layer(pruned, tmp_path):
    ax = plotting.plot_sparsity(pruned)
    rows = pruned.pruning_summary_
    # Per layer, a kept part from 0 and a pruned part stacked on it up to 1.
    kept, lost = ax.patches[: len(rows)], ax.patches[len(rows):]
    assert len(ax.patches) == 2 * len(rows)
    for bar, top, row in zip(kept, lost, rows):
        assert bar.get_y() == 0 and bar.get_height() == pytest.approx(1 - row["sparsity"])
        assert top.get_y() + top.get_height() == pytest.approx(1.0)
    assert ax.get_ylim() == (0.0, 1.0)
    # "8/16 units" counts the kept units, so it sits on the kept part.
    label = next(t for t in ax.texts if t.get_text() == "8/16 units")
    assert 0 <= label.xy[1] <= kept[0].get_height()
    _assert_png(ax, tmp_path / "sparsity.png")


def _overlaps_a_point(ax):
    """Whether the axes' legend covers one of the plotted points."""
    ax.figure.canvas.draw()
    box = ax.get_legend().get_window_extent()
    for line in ax.get_lines():
        for x, y in ax.transData.transform(line.get_xydata()):
            if box.contains(x, y):
                return True
    return False


def test_convergence_legend_covers_no_candidate(bayes_search):
    ax = plotting.plot_convergence(bayes_search)
    assert not _overlaps_a_point(ax)
    plt.close(ax.figure)
    # Scores all over the axes leave no free corner inside them.
    scattered = types.SimpleNamespace(
        cv_results_={"mean_test_score": np.random.RandomState(0).uniform(0.1, 0.9, size=60)}
    )
    ax = plotting.plot_convergence(scattered)
    assert not _overlaps_a_point(ax)
    plt.close(ax.figure)


def test_learning_curve_draws_a_validation_loss_from_any_epoch(iris):
    X, y = iris
    clf = NNClassifier(MLP((8,)), max_epochs=3, early_stopping=True, random_state=0).fit(X, y)
    clf.partial_fit(X, y)  # an epoch without a validation split comes last
    assert "valid_loss" not in clf.history_[-1]
    ax = plotting.plot_learning_curve(clf, show_lr=False)
    valid = ax.get_lines()[1]
    assert valid.get_label() == "validation loss"
    assert np.isfinite(valid.get_ydata()[:-1]).all() and np.isnan(valid.get_ydata()[-1])
    plt.close(ax.figure)


def test_learning_curve_says_why_there_is_no_validation_loss(iris):
    X, y = iris
    ax = plotting.plot_learning_curve(NNClassifier(max_epochs=2, random_state=0).fit(X, y))
    assert [line.get_label() for line in ax.get_lines()] == ["training loss"]
    assert "early_stopping=False" in ax.get_title()
    plt.close(ax.figure)


def test_sparsity_plot_refuses_an_unpruned_model(iris):
    X, y = iris
    with pytest.raises(ValueError, match="needs a model trained with pruning"):
        plotting.plot_sparsity(NNClassifier(max_epochs=1).fit(X, y))


def test_search_results_has_a_panel_per_parameter(bayes_search, tmp_path):
    axes = plotting.plot_search_results(bayes_search)
    assert [ax.get_xlabel() for ax in axes] == ["lr", "module__hidden_layer_sizes", "optimizer"]
    assert axes[0].get_xscale() == "log"
    assert [t.get_text() for t in axes[2].get_xticklabels()] != []
    _assert_png(axes, tmp_path / "search.png")


def test_search_results_can_show_chosen_parameters(bayes_search, tmp_path):
    axes = plotting.plot_search_results(bayes_search, params=["lr"])
    assert len(axes) == 1
    with pytest.raises(ValueError, match="did not vary"):
        plotting.plot_search_results(bayes_search, params=["batch_size"])
    _assert_png(axes, tmp_path / "one.png")


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
def test_search_results_count_failed_candidates(iris, tmp_path):
    X, y = iris
    search = make_search(NNClassifier(max_epochs=2, random_state=0),
                         {"optimizer": ["adam", "no-such-optimizer"]}, method="grid", cv=2)
    with pytest.warns(Warning, match="fits failed"):
        search.fit(X, y)
    axes = plotting.plot_search_results(search)
    assert axes[0].get_title() == "optimizer (1 failed)"
    ax = plotting.plot_convergence(search)
    assert "failed" in [line.get_label() for line in ax.get_lines()]
    _assert_png(ax, tmp_path / "failed.png")


def test_convergence_line_never_decreases(bayes_search, tmp_path):
    ax = plotting.plot_convergence(bayes_search)
    best = ax.get_lines()[1].get_ydata()
    assert len(best) == 5 and np.all(np.diff(best) >= 0)
    assert best[-1] == pytest.approx(bayes_search.best_score_)
    _assert_png(ax, tmp_path / "convergence.png")


def test_plots_draw_on_given_axes(pruned):
    fig, (left, right) = plt.subplots(1, 2)
    assert plotting.plot_learning_curve(pruned, ax=left) is left
    assert plotting.plot_sparsity(pruned, ax=right) is right
    plt.close(fig)


def test_unfitted_model_is_refused():
    with pytest.raises(ValueError, match="not fitted"):
        plotting.plot_learning_curve(NNClassifier())
    with pytest.raises(TypeError, match="needs a fitted NNClassifier"):
        plotting.plot_learning_curve(StandardScaler())


def test_missing_matplotlib_names_the_extra(pruned, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install matplotlib"):
        plotting.plot_learning_curve(pruned)


@pytest.mark.parametrize("scoring", [None, {"acc": "accuracy", "bytes": "neg_model_bytes"}])
def test_pareto_front_draws_the_front_in_bytes_and_marks_the_pick(iris, tmp_path, scoring):
    from skopt_nn import pareto_front, within

    X, y = iris
    space = {"module__hidden_layer_sizes": [(2,), (8,), (32,)], "lr": [1e-2, 3e-2]}
    kw = ({"objectives": ["accuracy", "neg_model_bytes"]} if scoring is None
          else {"scoring": scoring, "refit": within("acc", tol=0.02, minimize="bytes")})
    search = make_search(NNClassifier(MLP((8,)), max_epochs=4, random_state=0), space, method="grid", cv=2,
                         **kw).fit(X, y)
    names = ["accuracy", "neg_model_bytes"] if scoring is None else ["acc", "bytes"]
    ax = plotting.plot_pareto_front(search, names if scoring is not None else None)
    results = search.cv_results_
    size = -np.asarray(results[f"mean_test_{names[1]}"])
    front = pareto_front(results, names)["index"]
    # the front's markers sit at the front's candidates, in bytes (positive), the pick on a star
    offsets = [c.get_offsets() for c in ax.collections]
    assert sorted(map(tuple, offsets[1].tolist())) == sorted(
        (size[i], results[f"mean_test_{names[0]}"][i]) for i in front)
    np.testing.assert_allclose(offsets[2], [[size[search.best_index_],
                                             results[f"mean_test_{names[0]}"][search.best_index_]]])
    assert "model bytes" in ax.get_xlabel()
    _assert_png(ax, tmp_path / "front.png")
    with pytest.raises(ValueError, match="draws two objectives"):
        plotting.plot_pareto_front(search, ["accuracy"])
