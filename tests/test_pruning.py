"""Pruning as a hyperparameter: accuracy, permanence, physical removal, recipe interplay."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

from skopt_nn import CNN, MLP, LRSchedule, NNClassifier, NNRegressor, Pruning, TorchModule
from skopt_nn.specs._shrink import analyse, shrink

DIGITS_EPOCHS = 40


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def digits_net(pruning=None, **kwargs):
    params = dict(lr=1e-3, max_epochs=DIGITS_EPOCHS, random_state=0, pruning=pruning)
    return NNClassifier(MLP((256, 256)), **{**params, **kwargs})


@pytest.fixture(scope="module")
def dense_digits(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    return digits_net().fit(X_train, y_train)


@pytest.fixture(scope="module")
def small_data(digits_split):
    X_train, _, y_train, _ = digits_split
    return X_train[:300], y_train[:300]


def small_net(pruning, **kwargs):
    params = dict(module=MLP((32, 16)), lr=1e-2, max_epochs=6, batch_size=32, random_state=0, pruning=pruning)
    return NNClassifier(**{**params, **kwargs})


def no_reparametrization(module):
    keys = module.state_dict().keys()
    hooks = [h for m in module.modules() for h in m._forward_pre_hooks.values()]
    return not any(k.endswith(("_orig", "_mask")) for k in keys) and not hooks


# -- the acceptance figures ----------------------------------------------------
@pytest.mark.slow
def test_gradual_global_pruning_to_90_percent_keeps_dense_accuracy(digits_split, dense_digits):
    X_train, X_test, y_train, y_test = digits_split
    pruned = digits_net(Pruning("global_l1", amount=0.9, schedule="gradual")).fit(X_train, y_train)

    assert pruned.sparsity_ >= 0.89
    assert pruned.score(X_test, y_test) >= dense_digits.score(X_test, y_test) - 0.01


def test_structured_pruning_shrinks_network_and_pickle(digits_split, dense_digits):
    X_train, X_test, y_train, y_test = digits_split
    pruned = digits_net(Pruning("ln_structured", amount=0.5)).fit(X_train, y_train)

    assert pruned.n_params_ <= 0.35 * dense_digits.n_params_
    assert pruned.score(X_test, y_test) >= dense_digits.score(X_test, y_test) - 0.02
    assert len(pickle.dumps(pruned)) < 0.5 * len(pickle.dumps(dense_digits))
    widths = [m.out_features for m in pruned.module_ if isinstance(m, nn.Linear)]
    assert widths == [128, 128, 10]


# -- permanence, pickles, predictions --------------------------------------------
@pytest.mark.parametrize("method", ["l1_unstructured", "random_unstructured", "global_l1", "ln_structured"])
def test_fitted_module_holds_plain_weights(small_data, method):
    X, y = small_data
    clf = small_net(Pruning(method, amount=0.5)).fit(X, y)

    assert no_reparametrization(clf.module_)
    assert 0.45 <= clf.sparsity_ <= 0.8
    # Same names in the same order as a fresh network: optimizer states line up.
    assert list(clf.module_.state_dict()) == [f"{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")]


@pytest.mark.parametrize("method", ["global_l1", "ln_structured"])
def test_pickled_pruned_model_predicts_the_same(small_data, method):
    X, y = small_data
    clf = small_net(Pruning(method, amount=0.6, schedule="gradual")).fit(X, y)

    loaded = pickle.loads(pickle.dumps(clf))

    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert type(loaded.module_) is nn.Sequential
    assert no_reparametrization(loaded.module_)
    assert loaded.sparsity_ == clf.sparsity_


@pytest.mark.parametrize("method", ["l1_unstructured", "ln_structured"])
def test_pruned_module_predicts_like_the_estimator(small_data, method):
    X, y = small_data
    clf = small_net(Pruning(method, amount=0.5)).fit(X, y)

    with torch.no_grad():
        logits = clf.module_(torch.as_tensor(X, dtype=torch.float32)).numpy()

    np.testing.assert_array_equal(clf.classes_[logits.argmax(1)], clf.predict(X))
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), clf.predict_proba(X), rtol=1e-5)


def test_random_pruning_is_reproducible_and_ignores_the_global_rng(small_data):
    X, y = small_data

    def masks(random_state, global_seed):
        torch.manual_seed(global_seed)
        clf = small_net(Pruning("random_unstructured", amount=0.5), random_state=random_state).fit(X, y)
        return [m.weight.detach() == 0 for m in clf.module_ if isinstance(m, nn.Linear)]

    first, again, other = masks(3, 0), masks(3, 1), masks(4, 0)

    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


# -- which layers, how much --------------------------------------------------------
def test_output_layer_stays_dense(small_data):
    X, y = small_data
    clf = small_net(Pruning("global_l1", amount=0.8)).fit(X, y)

    summary = {row["layer"]: row for row in clf.pruning_summary_}

    assert [summary[name]["pruned"] for name in ("0", "2", "4")] == [True, True, False]
    assert summary["4"]["sparsity"] == 0
    assert clf.sparsity_ == pytest.approx(0.8, abs=0.002)


def test_l1_unstructured_prunes_each_layer_to_amount(small_data):
    X, y = small_data
    clf = small_net(Pruning("l1_unstructured", amount=0.7)).fit(X, y)

    hidden = [row["sparsity"] for row in clf.pruning_summary_ if row["pruned"]]

    assert hidden == pytest.approx([0.7, 0.7], abs=0.002)


def test_zero_amount_leaves_the_network_dense(small_data):
    X, y = small_data
    clf = small_net(Pruning("ln_structured", amount=0.0)).fit(X, y)

    assert clf.sparsity_ == 0
    assert clf.n_params_ == small_net(None).fit(X, y).n_params_


# -- schedules ---------------------------------------------------------------------
def test_gradual_schedule_follows_the_cubic_curve():
    steps = Pruning(amount=0.8, schedule="gradual", start=0.2, end=0.6, n_steps=4).preview(max_epochs=10)

    epochs, sparsity = zip(*steps)
    expected = [0.8 * (1 - (1 - k / 4) ** 3) for k in range(1, 5)]

    assert epochs == pytest.approx([3, 4, 5, 6])
    assert sparsity == pytest.approx(expected)


def test_sparsity_rises_during_training_then_holds(small_data):
    X, y = small_data
    clf = small_net(Pruning("global_l1", amount=0.8, schedule="gradual", start=0, end=0.5), max_epochs=8)
    clf.fit(X, y)

    recorded = clf.history_[:, "sparsity"]

    assert recorded == sorted(recorded)
    assert 0 < recorded[0] < 0.8
    assert recorded[3:] == [pytest.approx(0.8)] * 5


def test_one_shot_prunes_once_at_the_end_point(small_data):
    X, y = small_data
    clf = small_net(Pruning("l1_unstructured", amount=0.6, end=0.5), max_epochs=6).fit(X, y)

    assert clf.history_[:, "sparsity"] == [0, 0, pytest.approx(0.6), 0.6, 0.6, 0.6]


# -- structured removal ---------------------------------------------------------------
def test_structured_pruning_removes_cnn_channels_and_batchnorm(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    spec = CNN(input_shape=(1, 8, 8), channels=(8, 16), hidden=32, batch_norm=True)
    clf = NNClassifier(spec, lr=3e-3, max_epochs=8, batch_size=32, random_state=0,
                       pruning=Pruning("ln_structured", amount=0.5))
    clf.fit(X_train[:400], y_train[:400])

    convs = [m for m in clf.module_ if isinstance(m, nn.Conv2d)]
    norms = [m for m in clf.module_ if isinstance(m, nn.BatchNorm2d)]
    linears = [m for m in clf.module_ if isinstance(m, nn.Linear)]

    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 4), (4, 8)]
    assert [bn.num_features for bn in norms] == [4, 8]
    assert [(m.in_features, m.out_features) for m in linears] == [(8 * 2 * 2, 16), (16, 10)]
    assert clf.score(X_test, y_test) > 0.7


@pytest.mark.parametrize(
    "spec",
    [
        CNN(input_shape=(1, 8, 8), channels=(4, 8), hidden=16, batch_norm=True),
        CNN(input_shape=(1, 8, 8), channels=(4, 8), hidden=16, kernel_size=1, activation="logistic"),
        MLP((16, 8), batch_norm=True, activation="logistic"),
        MLP((16, 8), activation="tanh", dropout=0.2),
    ],
    ids=["cnn-batchnorm", "cnn-sigmoid", "mlp-batchnorm-sigmoid", "mlp-tanh-dropout"],
)
def test_removing_pruned_units_keeps_the_function(spec):
    torch.manual_seed(0)
    module = spec.build(64, 3)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    layers, graph = analyse(module)
    targets = [n for n in layers if not graph.is_output(n)]
    named = dict(module.named_modules())
    with torch.no_grad():  # what a finished ln_structured mask leaves behind
        for name in targets:
            gone = torch.arange(0, named[name].weight.shape[0], 2)
            for tensor in [named[name].weight, named[name].bias] + [
                p for bn in graph.batchnorms(name) for p in (named[bn].weight, named[bn].bias)
            ]:
                tensor[gone] = 0
    module.eval()
    x = torch.randn(7, 64)

    smaller, removed, problems = shrink(module, graph, targets)
    smaller.eval()

    assert not problems and removed == set(targets)
    assert sum(p.numel() for p in smaller.parameters()) < 0.6 * sum(p.numel() for p in module.parameters())
    torch.testing.assert_close(smaller(x), module(x), rtol=1e-5, atol=1e-5)


class _Stack(nn.Module):
    def __init__(self, n_features_in, n_outputs, hidden=16):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features_in, hidden), nn.ReLU(), nn.Linear(hidden, n_outputs))

    def forward(self, x):
        return self.body(x)


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self, n_features_in, n_outputs, hidden=16):
        super().__init__()
        self.hidden = nn.Linear(n_features_in, hidden)
        self.out = nn.Linear(hidden, n_outputs)

    def forward(self, x):
        h = torch.relu(self.hidden(x))
        if h.sum() > -1:
            h = h * 1.0
        return self.out(h)


class _Residual(nn.Module):
    def __init__(self, n_features_in, n_outputs, hidden=16):
        super().__init__()
        self.inp = nn.Linear(n_features_in, hidden)
        self.block = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, n_outputs)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        return self.out(h + torch.relu(self.block(h)))


def test_sequential_user_module_is_shrunk(small_data):
    X, y = small_data
    clf = small_net(Pruning("ln_structured", amount=0.5), module=TorchModule(_Stack)).fit(X, y)

    assert clf.module_.body[0].out_features == 8
    assert clf.module_.body[2].in_features == 8
    assert isinstance(clf.module_, _Stack)


@pytest.mark.parametrize("module_class, layer", [(_Branchy, "hidden"), (_Residual, "inp")])
def test_module_that_cannot_be_shrunk_warns_and_keeps_zeros(small_data, module_class, layer):
    X, y = small_data
    clf = small_net(Pruning("ln_structured", amount=0.5), module=TorchModule(module_class))

    with pytest.warns(UserWarning, match="could not physically remove"):
        clf.fit(X, y)

    weight = getattr(clf.module_, layer).weight
    assert weight.shape[0] == 16
    assert int((weight == 0).all(1).sum()) == 8
    assert no_reparametrization(clf.module_)
    assert clf.score(X, y) > 0.5


# -- bad values ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, match",
    [
        (dict(amount=1.5), r"'amount' parameter of Pruning must be a float in \[0, 1\); got 1.5"),
        (dict(amount=1.0), r"'amount' parameter of Pruning must be a float in \[0, 1\)"),
        (dict(amount=-0.1), r"'amount' parameter"),
        (dict(amount="half"), r"'amount' parameter"),
        (dict(start=0.8, end=0.5), r"'start' parameter of Pruning must not exceed 'end'"),
        (dict(end=1.5), r"'end' parameter"),
        (dict(n_steps=0), r"'n_steps' parameter"),
        (dict(amount=0.5, initial_sparsity=0.7), r"'initial_sparsity' parameter"),
        (dict(norm=0), r"'norm' parameter"),
    ],
)
def test_bad_values_raise_at_fit_naming_the_parameter(small_data, params, match):
    X, y = small_data
    clf = small_net(Pruning(**params))  # no error until fit

    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)


@pytest.mark.parametrize(
    "params, names",
    [
        (dict(method="l2"), "['global_l1', 'l1_unstructured', 'ln_structured', 'random_unstructured', 'taylor_structured']"),
        (dict(schedule="cubic"), "['gradual', 'one_shot']"),
    ],
)
def test_unknown_names_list_every_valid_name(small_data, params, names):
    X, y = small_data

    with pytest.raises(ValueError, match=list(params)[0]) as err:
        small_net(Pruning(**params)).fit(X, y)

    assert names in str(err.value)


def test_structured_amount_that_empties_a_layer_is_refused(small_data):
    X, y = small_data
    clf = small_net(Pruning("ln_structured", amount=0.9), module=MLP((3,)))

    with pytest.raises(ValueError, match=r"'amount' parameter of Pruning is too large for layer '0'"):
        clf.fit(X, y)


def test_network_without_hidden_layer_is_refused(small_data):
    X, y = small_data

    with pytest.raises(ValueError, match="no layer to prune"):
        small_net(Pruning(), module=MLP(())).fit(X, y)


def test_failed_fit_keeps_the_previous_model(small_data):
    X, y = small_data
    clf = small_net(None).fit(X, y)
    before = clf.predict_proba(X)

    with pytest.raises(ValueError):
        clf.set_params(pruning=Pruning(amount=2.0)).fit(X, y)

    np.testing.assert_array_equal(clf.predict_proba(X), before)


# -- with the rest of the recipe -------------------------------------------------------
def test_early_stopping_waits_for_the_final_sparsity(small_data):
    X, y = small_data
    clf = small_net(
        Pruning("global_l1", amount=0.8, schedule="gradual", start=0.2, end=0.7),
        max_epochs=10, early_stopping=True, n_iter_no_change=1, tol=10.0,
    ).fit(X, y)

    # Pruning ends with epoch 7; with tol=10 epoch 8 sets the reference loss
    # and epoch 9 stops.
    assert clf.n_iter_ == 9
    assert clf.sparsity_ == pytest.approx(0.8, abs=0.002)


def test_pruning_works_with_an_lr_schedule(small_data):
    X, y = small_data
    clf = small_net(Pruning("ln_structured", amount=0.5, schedule="gradual"),
                    lr_schedule=LRSchedule("onecycle"), max_epochs=8).fit(X, y)

    assert clf.score(X, y) > 0.8
    assert clf.module_[0].out_features == 16


def test_partial_fit_continues_the_schedule_across_calls(small_data):
    X, y = small_data
    clf = small_net(Pruning("ln_structured", amount=0.5, schedule="gradual", start=0, end=0.5), max_epochs=6)
    widths = []
    for _ in range(8):
        clf.partial_fit(X, y, classes=np.unique(y))
        widths.append(clf.module_[0].weight.shape[0])

    # Zeros while the sparsity rises; removal once it is final, and no more after.
    assert widths == [32, 32, 16, 16, 16, 16, 16, 16]
    assert clf.history_[:, "sparsity"] == sorted(clf.history_[:, "sparsity"])
    assert clf.score(X, y) > 0.8


def test_warm_start_keeps_pruned_weights_at_zero(small_data):
    X, y = small_data
    clf = small_net(Pruning("l1_unstructured", amount=0.7), warm_start=True).fit(X, y)
    zeros = [m.weight.detach() == 0 for m in clf.module_[:3:2]]

    clf.fit(X, y)

    assert clf.sparsity_ == pytest.approx(0.7, abs=0.002)
    assert all(bool(z[m.weight.detach() != 0].sum() == 0) for z, m in zip(zeros, clf.module_[:3:2]))


def test_pruning_parameters_are_searchable(small_data):
    X, y = small_data
    search = GridSearchCV(
        small_net(Pruning("global_l1"), max_epochs=3),
        {"pruning__amount": [0.3, 0.6], "pruning__method": ["global_l1", "ln_structured"]},
        cv=2,
    ).fit(X, y)

    assert set(search.best_params_) == {"pruning__amount", "pruning__method"}
    assert clone(search.best_estimator_).get_params()["pruning__amount"] in (0.3, 0.6)


def test_regressor_prunes_too():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    reg = NNRegressor(MLP((32,)), lr=1e-2, max_epochs=20, random_state=0,
                      pruning=Pruning("ln_structured", amount=0.5, schedule="gradual")).fit(X, y)

    assert reg.module_[0].out_features == 16
    assert reg.score(X, y) > 0.3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pruning_on_gpu_loads_on_cpu(small_data):
    X, y = small_data
    clf = small_net(Pruning("ln_structured", amount=0.5, schedule="gradual"), device="cuda").fit(X, y)

    loaded = pickle.loads(pickle.dumps(clf))

    assert clf.module_[0].weight.is_cuda and clf.module_[0].out_features == 16
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-5)


def test_bayes_search_over_pruning_in_a_pipeline_pickles_its_best_model(tmp_path):
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skopt_nn import Categorical, Real, make_search

    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(
        StandardScaler(),
        NNClassifier(MLP((16, 16)), lr=0.02, max_epochs=8, random_state=0, pruning=Pruning()),
    )
    space = {
        "pruning__amount": Real(0.3, 0.8),
        "pruning__method": Categorical(["l1_unstructured", "global_l1", "ln_structured"]),
        "pruning__schedule": Categorical(["one_shot", "gradual"]),
    }
    search = make_search(pipe, space, "bayes", n_iter=4, cv=2, random_state=0).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    best = search.best_estimator_
    path = tmp_path / "best.joblib"
    joblib.dump(best, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), best.predict_proba(X))
    assert loaded[-1].sparsity_ > 0.2
    assert not any(k.endswith(("_orig", "_mask")) for k in loaded[-1].module_.state_dict())
