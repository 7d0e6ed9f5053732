"""Mixed precision, gradient accumulation, clipping and trainable-parameter counts."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from skopt_nn import MLP, NNClassifier, NNRegressor, Pruning, TorchModule, make_search


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


@pytest.fixture(scope="module")
def scaled(digits):
    X, y = digits
    return StandardScaler().fit_transform(X).astype(np.float32), y


def _net(**kw):
    base = dict(module=MLP((32,)), max_epochs=4, random_state=0, n_iter_no_change=None)
    return NNClassifier(**{**base, **kw})


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle"])
def test_accumulated_micro_batches_train_like_one_large_batch(scaled, schedule):
    X, y = scaled
    large = _net(optimizer="sgd", lr=0.05, batch_size=128, lr_schedule=schedule).fit(X, y)
    micro = _net(optimizer="sgd", lr=0.05, batch_size=32, gradient_accumulation_steps=4,
                 lr_schedule=schedule).fit(X, y)
    assert np.abs(large.predict_proba(X) - micro.predict_proba(X)).max() <= 1e-3
    # The schedule counts optimizer steps, so the learning rates agree epoch by epoch.
    assert np.allclose(large.history_[:, "lr"], micro.history_[:, "lr"])
    assert micro.n_iter_ == large.n_iter_ == 4


def test_accumulation_matches_with_adam_and_early_stopping(scaled):
    X, y = scaled
    kw = dict(optimizer="adam", lr=0.01, early_stopping=True, max_epochs=6)
    large = _net(batch_size=60, **kw).fit(X, y)
    micro = _net(batch_size=20, gradient_accumulation_steps=3, **kw).fit(X, y)
    assert np.abs(large.predict_proba(X) - micro.predict_proba(X)).max() <= 1e-3


def test_clipping_rescues_a_too_large_learning_rate(digits):
    X, y = digits  # raw pixels (0..16): lr 0.2 with momentum diverges to chance level
    kw = dict(module=MLP((64,)), optimizer="sgd", lr=0.2, momentum=0.9, max_epochs=15, random_state=0)
    unclipped = NNClassifier(**kw)
    try:
        unclipped_score = unclipped.fit(X, y).score(X, y)
    except ValueError:  # diverged outright: worse still
        unclipped_score = 0.0
    clipped = NNClassifier(max_grad_norm=1.0, **kw).fit(X, y)
    assert unclipped_score < 0.5
    assert clipped.score(X, y) > 0.85


def test_clipping_bounds_each_update(scaled):
    X, y = scaled
    # lr=1e-30: the weights stay where this seed initialises them
    start = _net(optimizer="sgd", lr=1e-30, momentum=0.0, max_epochs=1).fit(X, y)
    net = _net(optimizer="sgd", lr=1.0, momentum=0.0, max_grad_norm=1e-6, max_epochs=1).fit(X, y)
    before = torch.cat([p.detach().flatten() for p in start.module_.parameters()])
    after = torch.cat([p.detach().flatten() for p in net.module_.parameters()])
    steps = -(-len(X) // 128)  # batches of 128 ("auto"); each step moves them by at most 1e-6
    assert 0 < float((after - before).norm()) <= steps * 1e-6 * 1.01


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_keeps_float32_weights_and_accuracy(scaled, precision):
    X, y = scaled
    full = _net(max_epochs=8).fit(X, y)
    mixed = _net(max_epochs=8, precision=precision).fit(X, y)
    assert all(p.dtype == torch.float32 for p in mixed.module_.parameters())
    assert mixed.predict_proba(X).dtype == np.float32 or mixed.predict_proba(X).dtype == np.float64
    assert abs(mixed.score(X, y) - full.score(X, y)) <= 0.05
    assert np.isfinite(mixed.loss_curve_).all()


def test_regressor_with_every_knob(scaled):
    X, y = scaled
    reg = NNRegressor(MLP((32,)), precision="bfloat16", gradient_accumulation_steps=2, max_grad_norm=5.0,
                      batch_size=32, max_epochs=20, early_stopping=True, random_state=0)
    assert reg.fit(X, y.astype(float)).score(X, y.astype(float)) > 0.5


class _FrozenFirst(nn.Module):
    def __init__(self, n_features_in, n_outputs):
        super().__init__()
        self.body = nn.Linear(n_features_in, 16)
        self.body.requires_grad_(False)
        self.head = nn.Linear(16, n_outputs)

    def forward(self, X):
        return self.head(torch.relu(self.body(X)))


def test_trainable_params_count_only_what_trains(scaled):
    X, y = scaled
    plain = _net().fit(X, y)
    assert plain.n_trainable_params_ == plain.n_params_ == 64 * 32 + 32 + 32 * 10 + 10
    frozen = NNClassifier(TorchModule(_FrozenFirst), max_epochs=3, random_state=0).fit(X, y)
    assert frozen.n_trainable_params_ == 16 * 10 + 10
    assert frozen.n_params_ == 64 * 16 + 16 + 16 * 10 + 10
    ensemble = _net(n_ensemble=3).fit(X, y)
    assert ensemble.n_trainable_params_ == 3 * plain.n_params_


@pytest.mark.parametrize(
    "params",
    [{"precision": "fp8"}, {"gradient_accumulation_steps": 0}, {"max_grad_norm": 0.0},
     {"max_grad_norm": -1.0}],
)
def test_bad_knobs_get_sklearns_errors(scaled, params):
    X, y = scaled
    with pytest.raises(InvalidParameterError, match=next(iter(params))):
        _net(**params).fit(X, y)


def test_accumulation_with_lbfgs_is_refused_and_keeps_the_fitted_model(scaled):
    X, y = scaled
    net = _net().fit(X, y)
    before = net.predict_proba(X)
    with pytest.raises(ValueError, match="LBFGS"):
        net.set_params(optimizer=torch.optim.LBFGS, gradient_accumulation_steps=2).fit(X, y)
    assert np.array_equal(net.predict_proba(X), before)


def test_pruning_counts_optimizer_steps_under_accumulation(scaled):
    X, y = scaled
    net = _net(batch_size=16, gradient_accumulation_steps=4, max_epochs=6,
               pruning=Pruning("l1_unstructured", amount=0.5, schedule="gradual", start=0.1, end=0.6)).fit(X, y)
    assert net.sparsity_ == pytest.approx(0.5, abs=0.02)


def test_partial_fit_and_warm_start_keep_the_knobs(scaled):
    X, y = scaled
    micro = _net(batch_size=16, gradient_accumulation_steps=4, optimizer="sgd", lr=0.05)
    large = _net(batch_size=64, optimizer="sgd", lr=0.05)
    for _ in range(3):
        micro.partial_fit(X, y, classes=np.arange(10))
        large.partial_fit(X, y, classes=np.arange(10))
    assert micro.n_iter_ == 3
    assert np.abs(micro.predict_proba(X) - large.predict_proba(X)).max() <= 1e-3
    mixed = _net(batch_size=16, gradient_accumulation_steps=2, max_grad_norm=1.0, precision="bfloat16",
                 warm_start=True).fit(X, y)
    loss = mixed.loss_curve_[-1]
    mixed.fit(X, y)
    assert mixed.n_iter_ == 8 and mixed.loss_curve_[-1] < loss


def test_knobs_are_searchable_in_a_pipeline(scaled):
    X, y = scaled
    pipe = make_pipeline(StandardScaler(), _net(max_epochs=3))
    grid = {"nnclassifier__precision": ["float32", "bfloat16"],
            "nnclassifier__gradient_accumulation_steps": [1, 2],
            "nnclassifier__max_grad_norm": [None, 1.0]}
    search = GridSearchCV(pipe, grid, cv=2).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert len(search.cv_results_["params"]) == 8


def test_fused_search_clips_and_autocasts_like_plain_fits(scaled):
    X, y = scaled
    net = _net(max_epochs=4, optimizer="sgd", lr=0.5, momentum=0.9)
    grid = {"max_grad_norm": [None, 0.5, 2.0], "precision": ["float32", "bfloat16"]}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="fuse=True")  # nothing falls back
        fused = make_search(net, grid, method="grid", fuse=True, cv=2).fit(X, y)
    plain = GridSearchCV(net, grid, cv=2).fit(X, y)
    for key in ("mean_test_score",):
        assert np.abs(fused.cv_results_[key] - plain.cv_results_[key]).max() <= 0.03


def test_low_precision_on_a_cpu_without_its_instructions_warns(scaled, monkeypatch):
    from skopt_nn.training import _runtime

    X, y = scaled
    monkeypatch.setitem(_runtime._CPU_LOW_PRECISION, "bfloat16", False)
    with pytest.warns(UserWarning, match="no bfloat16 instructions"):
        _net(max_epochs=1, precision="bfloat16").fit(X, y)
    monkeypatch.setitem(_runtime._CPU_LOW_PRECISION, "bfloat16", True)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="precision=")
        _net(max_epochs=1, precision="bfloat16").fit(X, y)


def test_fused_search_trains_accumulation_fused(scaled):
    X, y = scaled
    net = _net(max_epochs=2, batch_size=32)
    space = {"gradient_accumulation_steps": [1, 2]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused = make_search(net, space, method="grid", fuse=True, cv=2).fit(X, y)
    assert not [w for w in caught if "could not train fused" in str(w.message)]
    plain = make_search(net, space, method="grid", cv=2).fit(X, y)
    np.testing.assert_allclose(fused.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"],
                               atol=0.02)
