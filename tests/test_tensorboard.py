"""TensorBoard logging through the tensorboard_dir parameter, read back from the event files."""

import os
import pickle

import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from skopt_nn import MLP, LRSchedule, NNClassifier, NNRegressor, Pruning

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _scalars(run_dir):
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}, events


def test_every_epoch_logs_losses_lr_and_sparsity(iris, tmp_path):
    X, y = iris
    clf = NNClassifier(
        MLP((16,)), lr=0.05, max_epochs=6, early_stopping=True, n_iter_no_change=100,
        lr_schedule=LRSchedule("cosine"), pruning=Pruning(amount=0.5, end=0.5),
        random_state=0, tensorboard_dir=tmp_path,
    ).fit(X, y)
    (run,) = list(tmp_path.iterdir())
    scalars, events = _scalars(run)
    assert sorted(scalars) == ["loss/train", "loss/valid", "lr", "score/valid", "sparsity"]
    assert scalars["score/valid"] == pytest.approx(list(clf.history_[:, "valid_score"]))
    assert all(0 <= v <= 1 for v in scalars["score/valid"])
    assert scalars["loss/train"] == pytest.approx(clf.loss_curve_)
    assert scalars["loss/valid"] == pytest.approx(list(clf.history_[:, "valid_loss"]))
    assert scalars["lr"] == pytest.approx(list(clf.history_[:, "lr"]))
    assert scalars["lr"][0] > scalars["lr"][-1]  # the cosine decay is visible
    assert scalars["sparsity"][0] == 0 and scalars["sparsity"][-1] == pytest.approx(0.5)
    assert [e.step for e in events.Scalars("loss/train")] == list(range(1, 7))
    assert "params/text_summary" in events.Tags()["tensors"]  # the full parameters, as text


def test_run_directory_is_named_after_the_changed_parameters(iris, tmp_path):
    X, y = iris
    NNRegressor(MLP((8, 4)), lr=0.01, optimizer="sgd", max_epochs=2,
                tensorboard_dir=str(tmp_path)).fit(X, y)
    assert os.listdir(tmp_path) == [
        "lr=0.01,max_epochs=2,module=MLP,module.hidden_layer_sizes=8x4,optimizer=sgd"
    ]


@pytest.mark.slow
def test_grid_search_writes_one_run_per_fit(iris, tmp_path):
    X, y = iris
    est = NNClassifier(MLP((8,)), max_epochs=2, random_state=0, tensorboard_dir=tmp_path)
    search = GridSearchCV(est, {"lr": [0.01, 0.1]}, cv=3, n_jobs=2).fit(X, y)
    runs = sorted(os.listdir(tmp_path))
    assert len(runs) == 2 * 3 + 1  # every CV fit and the refit
    assert sum(r.startswith("lr=0.01,") for r in runs) == 3 + (search.best_params_["lr"] == 0.01)
    for run in runs:
        scalars, _ = _scalars(tmp_path / run)
        assert len(scalars["loss/train"]) == 2


def test_a_logged_model_clones_and_pickles(iris, tmp_path):
    X, y = iris
    clf = NNClassifier(max_epochs=1, tensorboard_dir=tmp_path).fit(X, y)
    assert clone(clf).get_params()["tensorboard_dir"] == tmp_path
    assert pickle.loads(pickle.dumps(clf)).predict(X).shape == (len(X),)


def test_tensorboard_dir_must_be_a_path(iris):
    X, y = iris
    with pytest.raises(ValueError, match="'tensorboard_dir' parameter of NNClassifier"):
        NNClassifier(max_epochs=1, tensorboard_dir=3).fit(X, y)
