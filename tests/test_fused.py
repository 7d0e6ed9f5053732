"""Fused training: many members of one architecture trained as one stacked model."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from skorch.callbacks import EpochScoring

from skopt_nn import (CNN, MLP, Distillation, LRSchedule, NNClassifier, NNRegressor, Pruning, Quantization,
                      TorchModule, load, make_search, save)
from skopt_nn.search import FusedGridSearchCV, FusedRandomizedSearchCV
from skopt_nn.training._base import DivergenceError
from skopt_nn.training.fused import fit_fused, fusable


@pytest.fixture(scope="module")
def digits_split(digits):
    X, y = digits
    X = X.astype(np.float32)
    return X[:600], y[:600], X[600:900], y[600:900]


def _fused_and_plain(estimators, X, y, sample_weight=None):
    outcomes = fit_fused([(clone(e), X, y, sample_weight) for e in estimators])
    plain = []
    for e in estimators:
        try:
            plain.append(clone(e).fit(X, y, sample_weight=sample_weight))
        except Exception as exc:
            plain.append(exc)
    return outcomes, plain


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop", "adagrad"])
def test_fused_mlp_members_score_as_their_one_by_one_fits(digits_split, optimizer):
    X, y, Xt, yt = digits_split
    base = NNClassifier(MLP((32,)), optimizer=optimizer, max_epochs=6, random_state=0)
    settings = [
        dict(lr=3e-3, weight_decay=0.0, momentum=0.9, random_state=0),
        dict(lr=3e-2, weight_decay=1e-3, momentum=0.0, random_state=1,
             lr_schedule=LRSchedule("cosine", warmup_epochs=1)),
        dict(lr=1e-2, weight_decay=1e-4, momentum=0.5, random_state=2, lr_schedule="onecycle"),
    ]
    estimators = [clone(base).set_params(**s) for s in settings]
    outcomes, plain = _fused_and_plain(estimators, X, y)
    for outcome, ref in zip(outcomes, plain):
        assert outcome.error is None and outcome.fused
        assert abs(outcome.estimator.score(Xt, yt) - ref.score(Xt, yt)) <= 0.02
        assert outcome.estimator.n_iter_ == ref.n_iter_
        np.testing.assert_allclose(outcome.estimator.loss_curve_, ref.loss_curve_, rtol=0.05, atol=1e-3)


def test_fused_members_may_differ_in_dropout_including_none(digits_split):
    X, y, Xt, yt = digits_split
    base = NNClassifier(MLP((32,)), max_epochs=5, random_state=0)
    estimators = [clone(base).set_params(module__dropout=d) for d in (0.0, 0.3)]
    outcomes, plain = _fused_and_plain(estimators, X, y)
    # one group: the dropout-free member and the other train together
    for outcome, ref in zip(outcomes, plain):
        assert outcome.fused
        assert abs(outcome.estimator.score(Xt, yt) - ref.score(Xt, yt)) <= 0.03
    assert isinstance(outcomes[1].estimator.module_[2], nn.Dropout)
    assert not any(isinstance(m, nn.Dropout) for m in outcomes[0].estimator.module_)


@pytest.mark.parametrize("module", [CNN((1, 8, 8), channels=(4,), hidden=16), MLP((16,), batch_norm=True)],
                         ids=["cnn", "batch-norm-mlp"])
def test_fused_vmap_path_matches_one_by_one_fits(digits_split, module):
    X, y, Xt, yt = digits_split
    base = NNClassifier(module, max_epochs=3, random_state=0)
    estimators = [clone(base).set_params(lr=lr) for lr in (1e-3, 1e-2)]
    outcomes, plain = _fused_and_plain(estimators, X, y)
    for outcome, ref in zip(outcomes, plain):
        assert outcome.fused
        assert abs(outcome.estimator.score(Xt, yt) - ref.score(Xt, yt)) <= 0.02


def test_fused_regressor_with_sample_weight_and_early_stopping_matches():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    w = np.random.RandomState(0).uniform(0.5, 2.0, len(y))
    base = NNRegressor(MLP((16,)), max_epochs=30, early_stopping=True, n_iter_no_change=3, random_state=0)
    estimators = [clone(base).set_params(lr=lr) for lr in (3e-3, 3e-2)]
    outcomes, plain = _fused_and_plain(estimators, X, y, sample_weight=w)
    for outcome, ref in zip(outcomes, plain):
        assert abs(outcome.estimator.score(X, y) - ref.score(X, y)) <= 0.02
        # each member stopped where its plain fit stopped
        assert outcome.estimator.n_iter_ == ref.n_iter_
        assert "valid_score" in outcome.estimator.history_[-1]
    assert plain[1].n_iter_ < 30 == plain[0].n_iter_  # one stopped early, the other did not


def test_a_diverging_member_fails_alone(digits_split):
    X, y, _, _ = digits_split
    base = NNClassifier(MLP((16,)), optimizer="sgd", max_epochs=4, random_state=0)
    estimators = [clone(base).set_params(lr=lr) for lr in (1e-1, 1e15, 3e-1)]
    outcomes, plain = _fused_and_plain(estimators, X, y)
    assert isinstance(outcomes[1].error, DivergenceError) and isinstance(plain[1], DivergenceError)
    assert "diverged" in str(outcomes[1].error)
    for k in (0, 2):  # the others trained all their epochs, as alone
        assert outcomes[k].error is None
        assert outcomes[k].estimator.n_iter_ == 4
        assert abs(outcomes[k].estimator.score(X, y) - plain[k].score(X, y)) <= 0.02


def test_early_stopped_members_stop_while_others_go_on(digits_split):
    X, y, _, _ = digits_split
    base = NNClassifier(MLP((16,)), lr=1e-2, max_epochs=15, tol=5e-2, random_state=0)
    estimators = [clone(base).set_params(n_iter_no_change=n) for n in (2, None)]
    outcomes, plain = _fused_and_plain(estimators, X, y)
    stopped, full = (o.estimator for o in outcomes)
    assert stopped.n_iter_ == plain[0].n_iter_ < full.n_iter_ == 15
    assert len(stopped.history_) == stopped.n_iter_ == len(stopped.loss_curve_)


def test_fused_members_are_ordinary_fitted_estimators(digits_split, tmp_path):
    X, y, Xt, _ = digits_split
    base = NNClassifier(MLP((16,)), max_epochs=2, random_state=0)
    (outcome,) = fit_fused([(clone(base), X, y, None)])
    model = outcome.estimator
    expected = model.predict_proba(Xt)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).predict_proba(Xt), expected, rtol=1e-6)
    save(model, tmp_path / "m.skopt")
    np.testing.assert_allclose(load(tmp_path / "m.skopt").predict_proba(Xt), expected, rtol=1e-6)
    # and it continues training like any fitted model
    model.set_params(warm_start=True, max_epochs=1).fit(X, y)
    assert model.n_iter_ == 3


def test_fused_member_exports_to_onnx(digits_split, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from skopt_nn import export_onnx

    X, y, Xt, _ = digits_split
    (outcome,) = fit_fused([(NNClassifier(MLP((16,)), max_epochs=2, random_state=0), X, y, None)])
    path = export_onnx(outcome.estimator, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: Xt[:20]})
    proba = [o for o in outputs if np.asarray(o).ndim == 2][0]
    np.testing.assert_allclose(proba, outcome.estimator.predict_proba(Xt[:20]), atol=1e-4)


def test_fusable_names_what_blocks_fusion(digits_split):
    X, y, _, _ = digits_split
    assert fusable(NNClassifier()) is None
    # the recipe fuses: pruning, distillation, accumulation, post-training int8
    assert fusable(NNClassifier(pruning=Pruning(), distillation=Distillation(LogisticRegression()),
                                gradient_accumulation_steps=2, quantization=Quantization())) is None
    assert "augment" in fusable(NNClassifier(distillation=Distillation(LogisticRegression(), augment="mixup")))
    assert "qat_int8" in fusable(NNClassifier(quantization=Quantization("qat_int8")))
    assert "callbacks" in fusable(NNClassifier(callbacks=[("x", EpochScoring("accuracy"))]))
    # warm_start refuses only a fitted estimator, whose fit continues its network
    assert fusable(NNClassifier(warm_start=True)) is None
    fitted = NNClassifier(MLP((8,)), max_epochs=1, warm_start=True).fit(X[:60], y[:60])
    assert "warm_start" in fusable(fitted)
    assert "optimizer" in fusable(NNClassifier(optimizer=torch.optim.LBFGS))
    # an ensemble fuses its own members inside its fit
    assert "n_ensemble" in fusable(NNClassifier(n_ensemble=2))


class _Gated(nn.Module):
    """A module whose data-dependent branch vmap cannot trace."""

    def __init__(self, n_features_in, n_outputs):
        super().__init__()
        self.linear = nn.Linear(n_features_in, n_outputs)

    def forward(self, x):
        out = self.linear(x)
        if out.sum() > 0:  # a Python branch on a tensor's value
            return out
        return -out


def test_a_module_vmap_refuses_is_fitted_one_by_one_with_one_warning(digits_split):
    X, y, _, _ = digits_split
    base = NNClassifier(TorchModule(_Gated), max_epochs=1, random_state=0)
    fallbacks = []
    outcomes = fit_fused([(clone(base).set_params(lr=lr), X, y, None) for lr in (1e-3, 1e-2)],
                         fallbacks=fallbacks)
    assert len(fallbacks) == 1 and "vmap" in fallbacks[0]
    assert all(o.error is None and not o.fused for o in outcomes)


# -- the fused searches -------------------------------------------------------------


@pytest.fixture(scope="module")
def search_data(digits):
    X, y = digits
    return X[:450], y[:450]


def _pipe(**kw):
    return make_pipeline(StandardScaler(), NNClassifier(MLP((16,)), max_epochs=4, random_state=0, **kw))


def test_fused_grid_search_equals_the_one_by_one_search(search_data):
    X, y = search_data
    grid = {"lr": [1e-3, 1e-2], "weight_decay": [0.0, 1e-3]}
    fused = make_search(_pipe(), grid, method="grid", fuse=True, cv=3, return_train_score=True)
    assert isinstance(fused, FusedGridSearchCV)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # everything fuses: no fallback warning
        fused.fit(X, y)
    plain = GridSearchCV(_pipe(), fused.param_grid, cv=3, return_train_score=True).fit(X, y)
    assert sorted(fused.cv_results_) == sorted(plain.cv_results_)
    np.testing.assert_allclose(fused.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"],
                               atol=0.02)
    assert abs(fused.best_score_ - plain.best_score_) <= 0.01
    assert fused.best_estimator_.score(X, y) > 0.8
    assert fused.get_params()["n_jobs"] is None and fused.cv == 3  # restored after fit


def test_fused_search_records_failures_and_warns_once_for_fallbacks(search_data):
    X, y = search_data
    space = {
        "optimizer": ["sgd"],
        "lr": [1e-2, 1e15],
        "distillation": [None, Distillation(LogisticRegression(max_iter=200), augment="noise")],
    }
    search = make_search(_pipe(), space, method="grid", fuse=True, cv=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit(X, y)
    fallback = [w for w in caught if "could not train fused" in str(w.message)]
    assert len(fallback) == 1 and "augment='noise'" in str(fallback[0].message)
    scores = search.cv_results_["mean_test_score"]
    lrs = search.cv_results_["param_nnclassifier__lr"]
    assert np.isnan(scores[np.asarray(lrs, dtype=float) == 1e15]).all()
    assert np.isfinite(scores[np.asarray(lrs, dtype=float) == 1e-2]).all()
    assert search.best_params_["nnclassifier__lr"] == 1e-2


def test_fused_random_search_with_two_architectures_and_sample_weight(search_data):
    X, y = search_data
    w = np.where(y == 0, 2.0, 1.0)
    search = make_search(
        _pipe(), {"lr": [1e-3, 1e-2], "module__hidden_layer_sizes": [(8,), (16, 8)]},
        method="random", fuse=True, n_iter=4, cv=KFold(2), random_state=0, scoring="accuracy",
    )
    assert isinstance(search, FusedRandomizedSearchCV)
    search.fit(X, y, nnclassifier__sample_weight=w)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert set(map(tuple, search.cv_results_["param_nnclassifier__module__hidden_layer_sizes"])) == {
        (8,), (16, 8)}


def test_fused_search_with_n_jobs_spreads_groups_over_workers(search_data):
    X, y = search_data
    grid = {"lr": [1e-3, 1e-2]}
    fused = make_search(_pipe(), grid, method="grid", fuse=True, cv=2, n_jobs=2).fit(X, y)
    serial = make_search(_pipe(), grid, method="grid", fuse=True, cv=2).fit(X, y)
    np.testing.assert_allclose(fused.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"],
                               atol=1e-6)


def test_make_search_refuses_fuse_where_it_does_not_apply():
    with pytest.raises(ValueError, match="fuse=True applies"):
        make_search(_pipe(), {"lr": [1e-3]}, method="bayes", fuse=True)
    with pytest.raises(ValueError, match="fuse_max_members applies only"):
        make_search(_pipe(), {"lr": [1e-3]}, method="grid", fuse_max_members=4)


def test_fuse_max_members_caps_a_group(search_data):
    X, y = search_data
    grid = {"lr": [1e-3, 3e-3, 1e-2]}
    capped = make_search(_pipe(), grid, method="grid", fuse=True, cv=2, fuse_max_members=2).fit(X, y)
    whole = make_search(_pipe(), grid, method="grid", fuse=True, cv=2).fit(X, y)
    np.testing.assert_allclose(capped.cv_results_["mean_test_score"], whole.cv_results_["mean_test_score"],
                               atol=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop", "adagrad"])
def test_fused_rungs_continue_like_one_fit(digits_split, optimizer):
    # What a fused ASHA rung does: train 2 epochs, then 4 more, continuing
    # weights, optimizer state, schedule and random streams.
    X, y, Xt, yt = digits_split
    base = NNClassifier(MLP((16,)), optimizer=optimizer, lr=1e-2, max_epochs=6, lr_schedule="cosine",
                        n_iter_no_change=None, random_state=0)
    members = [clone(base), clone(base).set_params(lr=3e-2)]
    for epochs in (2, 4):
        outcomes = fit_fused([(m, X, y, None) for m in members], epochs=[epochs] * 2)
        assert all(o.error is None and o.fused for o in outcomes)
    for member in members:
        whole = clone(member).fit(X, y)
        assert member.n_iter_ == whole.n_iter_ == 6
        np.testing.assert_allclose(member.loss_curve_, whole.loss_curve_, rtol=0.02, atol=1e-4)
        assert abs(member.score(Xt, yt) - whole.score(Xt, yt)) <= 0.02


def test_fused_asha_search_spends_the_same_budget_and_finds_the_same_best(search_data):
    X, y = search_data
    pipe = make_pipeline(StandardScaler(), NNClassifier(MLP((16,)), max_epochs=9, random_state=0))
    space = {"lr": [1e-4, 1e-3, 1e-2, 3e-2, 1e-1], "module__hidden_layer_sizes": [(8,), (16,)]}
    kw = dict(n_iter=9, cv=2, random_state=0, refit=False)
    fused = make_search(pipe, space, "asha", fuse=True, **kw).fit(X, y)
    plain = make_search(pipe, space, "asha", **kw).fit(X, y)
    assert sorted(fused.cv_results_) == sorted(plain.cv_results_)
    assert fused.total_epochs_ <= 9 * 9 * 2 * 0.5
    assert abs(fused.best_score_ - plain.best_score_) <= 0.02


def test_fused_search_on_a_dataframe_keeps_feature_names(search_data):
    pd = pytest.importorskip("pandas")
    X, y = search_data
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(X.shape[1])])
    search = make_search(NNClassifier(MLP((8,)), max_epochs=2, random_state=0), {"lr": [1e-3, 1e-2]},
                         method="grid", fuse=True, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "fitted without feature names" warning
        search.fit(frame, y)
    assert list(search.best_estimator_.feature_names_in_) == list(frame.columns)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


# -- deep ensembles (n_ensemble) ----------------------------------------------------


def test_an_ensemble_averages_its_members_probabilities(digits_split):
    X, y, Xt, yt = digits_split
    model = NNClassifier(MLP((16,)), max_epochs=5, random_state=0, n_ensemble=3).fit(X, y)
    members = model.module_.members
    assert len(members) == 3
    with torch.no_grad():
        x = torch.as_tensor(Xt, dtype=torch.float32)
        mean = torch.stack([m(x).softmax(1) for m in members]).mean(0).numpy()
    np.testing.assert_allclose(model.predict_proba(Xt), mean, atol=1e-5)
    # the members are different networks (their own seeds)
    assert not torch.equal(members[0][0].weight, members[1][0].weight)
    assert model.n_params_ == 3 * sum(p.numel() for p in members[0].parameters())
    assert len(model.loss_curve_) == model.n_iter_


def test_an_ensemble_regressor_averages_predictions():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model = NNRegressor(MLP((16,)), lr=1e-2, max_epochs=20, random_state=0, n_ensemble=4).fit(X, y)
    single = NNRegressor(MLP((16,)), lr=1e-2, max_epochs=20, random_state=0).fit(X, y)
    assert model.predict(X).shape == y.shape
    assert model.score(X, y) > single.score(X, y) - 0.05


def test_an_ensemble_round_trips_and_is_searchable(digits_split, tmp_path):
    X, y, Xt, _ = digits_split
    model = NNClassifier(MLP((16,)), max_epochs=2, random_state=0, n_ensemble=2).fit(X, y)
    expected = model.predict_proba(Xt)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).predict_proba(Xt), expected, rtol=1e-6)
    save(model, tmp_path / "ens.skopt")
    np.testing.assert_allclose(load(tmp_path / "ens.skopt").predict_proba(Xt), expected, rtol=1e-6)
    search = GridSearchCV(NNClassifier(MLP((8,)), max_epochs=2, random_state=0),
                          {"n_ensemble": [1, 2]}, cv=2).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_an_ensemble_exports_to_onnx(digits_split, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from skopt_nn import export_onnx

    X, y, Xt, _ = digits_split
    model = NNClassifier(MLP((16,)), max_epochs=2, random_state=0, n_ensemble=2).fit(X, y)
    session = ort.InferenceSession(str(export_onnx(model, tmp_path / "e.onnx")),
                                   providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: Xt[:20]})
    proba = [o for o in outputs if np.asarray(o).ndim == 2][0]
    np.testing.assert_allclose(proba, model.predict_proba(Xt[:20]), atol=1e-4)


def test_ensemble_settings_that_cannot_fuse_are_refused(digits_split):
    X, y, _, _ = digits_split
    teacher = LogisticRegression(max_iter=200)
    with pytest.raises(ValueError, match="n_ensemble=2 trains its members together.*augment='mixup'"):
        NNClassifier(MLP((8,)), max_epochs=1, n_ensemble=2,
                     distillation=Distillation(teacher, augment="mixup")).fit(X, y)
    # pruning fuses: every member is pruned and shrunk by its own schedule
    pruned = NNClassifier(MLP((16,)), max_epochs=2, n_ensemble=2, random_state=0,
                          pruning=Pruning(amount=0.5, method="ln_structured")).fit(X, y)
    assert [m[0].out_features for m in pruned.module_.members] == [8, 8]
    model = NNClassifier(MLP((8,)), max_epochs=1, n_ensemble=2)
    assert not hasattr(model, "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit") as info:
        model.partial_fit(X, y, classes=np.unique(y))
    assert "not available with n_ensemble=2" in str(info.value.__cause__)


def test_fused_search_under_a_progress_bar_scores_each_candidate_as_its_own(search_data):
    import io

    from skopt_nn import search_progress

    X, y = search_data
    grid = {"lr": [1e-4, 1e-2, 3e-2]}
    quiet = make_search(_pipe(), grid, method="grid", fuse=True, cv=2).fit(X, y)
    watched = make_search(_pipe(), grid, method="grid", fuse=True, cv=2)
    out = io.StringIO()
    with search_progress(watched, file=out):  # hands sklearn one candidate at a time
        watched.fit(X, y)
    assert "3/3" in out.getvalue()
    np.testing.assert_allclose(watched.cv_results_["mean_test_score"], quiet.cv_results_["mean_test_score"])
    assert len(set(np.round(quiet.cv_results_["mean_test_score"], 6))) > 1


def test_fused_multilabel_members_match_and_an_ensemble_averages_label_probabilities():
    from sklearn.datasets import make_multilabel_classification

    X, Y = make_multilabel_classification(300, 20, n_classes=5, random_state=0)
    base = NNClassifier(MLP((16,)), max_epochs=8, early_stopping=True, random_state=0)
    estimators = [clone(base).set_params(lr=lr) for lr in (1e-3, 1e-2)]
    outcomes, plain = _fused_and_plain(estimators, X, Y)
    for outcome, ref in zip(outcomes, plain):
        assert outcome.fused
        assert abs(outcome.estimator.score(X, Y) - ref.score(X, Y)) <= 0.02
    model = clone(base).set_params(n_ensemble=3).fit(X, Y)
    with torch.no_grad():
        x = torch.as_tensor(X, dtype=torch.float32)
        mean = torch.stack([m(x).sigmoid() for m in model.module_.members]).mean(0).numpy()
    np.testing.assert_allclose(model.predict_proba(X), mean, atol=1e-5)
    assert model.predict(X).shape == Y.shape


def test_an_ensemble_trains_rung_by_rung_in_asha_like_one_fit(digits_split):
    X, y, Xt, _ = digits_split
    base = NNClassifier(MLP((16,)), max_epochs=4, n_iter_no_change=None, random_state=0, n_ensemble=2)
    stepped = clone(base)
    stepped._fit_epochs(X, y, 1)
    stepped._fit_epochs(X, y, 3)
    whole = clone(base).fit(X, y)
    assert stepped.n_iter_ == whole.n_iter_ == 4
    np.testing.assert_allclose(stepped.predict_proba(Xt), whole.predict_proba(Xt), atol=0.02)
    search = make_search(_pipe(), {"n_ensemble": [1, 2], "lr": [1e-3, 1e-2]}, "asha", n_iter=4, cv=2,
                         random_state=0, min_epochs=1).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_fused_search_over_a_text_pipeline_falls_back_and_scores():
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.RandomState(0)
    words = np.array(["red", "blue", "green", "fast", "slow", "big"])
    docs = [" ".join(rng.choice(words[:3] if k % 2 else words[3:], 5)) for k in range(80)]
    labels = np.arange(80) % 2
    pipe = make_pipeline(TfidfVectorizer(), NNClassifier(MLP((8,)), max_epochs=3, random_state=0))
    with pytest.warns(UserWarning, match="sparse"):
        search = make_search(pipe, {"lr": [1e-2, 1e-1]}, method="grid", fuse=True, cv=2).fit(docs, labels)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
