"""Cost scorers, Pareto fronts and tolerance refits: searching for a small model."""

import copy
import io
import pickle

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import (MLP, NNClassifier, NNRegressor, Pruning, Quantization, get_scorer, get_scorer_names,
                      make_search, pareto_front, within)

COSTS = ["neg_model_bytes", "neg_weight_bytes", "neg_nonzero_params", "neg_predict_latency", "sparsity"]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


def _pipe(**kw):
    return make_pipeline(StandardScaler(), NNClassifier(MLP((32,)), max_epochs=4, random_state=0, **kw))


def _saved_bytes(model):
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getbuffer().nbytes


# -- the scorers ---------------------------------------------------------------


def test_cost_scorers_measure_the_fitted_model(digits):
    X, y = digits
    plain = _pipe().fit(X, y)
    pruned = _pipe(pruning=Pruning("ln_structured", amount=0.5)).fit(X, y)
    int8 = _pipe(quantization=Quantization()).fit(X, y)
    for model in (plain, pruned, int8):
        assert get_scorer("neg_model_bytes")(model, X, y) == -_saved_bytes(model)
    # weights as stored: float32 at 4 bytes, the shrunk layer at its shrunk size, int8 at 1 byte
    n_plain = (64 * 32 + 32) + (32 * 10 + 10)
    assert get_scorer("neg_weight_bytes")(plain, X, y) == -4 * n_plain
    n_pruned = (64 * 16 + 16) + (16 * 10 + 10)
    assert get_scorer("neg_weight_bytes")(pruned, X, y) == -4 * n_pruned
    assert -get_scorer("neg_weight_bytes")(int8, X, y) < 4 * n_plain / 2
    assert get_scorer("neg_nonzero_params")(plain, X, y) == -n_plain
    assert get_scorer("neg_nonzero_params")(pruned, X, y) == -n_pruned
    assert get_scorer("sparsity")(plain, X, y) == 0.0
    assert get_scorer("sparsity")(pruned, X, y) == pruned[-1].sparsity_ == 0.5
    latency = -get_scorer("neg_predict_latency")(plain, X, y)
    assert 0 < latency < 1e-2  # seconds per row


def test_unstructured_pruning_counts_its_zeros(digits):
    X, y = digits
    model = NNClassifier(MLP((32,)), max_epochs=3, random_state=0,
                         pruning=Pruning("l1_unstructured", amount=0.75)).fit(X, y)
    total = sum(p.numel() for p in model.module_.parameters())
    nonzero = -get_scorer("neg_nonzero_params")(model, X, y)
    # the hidden layer's 64 x 32 weights are pruned, the output layer is kept whole
    assert nonzero == total - round(0.75 * 64 * 32)
    # the zeros stay stored: the weight bytes do not shrink without structured pruning
    assert -get_scorer("neg_weight_bytes")(model, X, y) == 4 * total


def test_cost_scorers_need_a_network_and_valid_names(digits):
    X, y = digits
    logreg = LogisticRegression(max_iter=50).fit(X, y)
    assert get_scorer("neg_model_bytes")(logreg, X, y) < 0  # any estimator saves
    with pytest.raises(ValueError, match="'neg_weight_bytes' measures the network of a fitted skopt_nn"):
        get_scorer("neg_weight_bytes")(logreg, X, y)
    with pytest.raises(ValueError, match="'neg_model_byte' is not a valid scoring value. "
                                         r"Use skopt_nn.get_scorer_names\(\)"):
        get_scorer("neg_model_byte")
    assert set(COSTS) <= set(get_scorer_names()) and "accuracy" in get_scorer_names()
    with pytest.raises(ValueError, match="not a valid scoring value"):
        make_search(_pipe(), {"lr": [1e-3]}, method="grid", scoring=["accuracy", "bytes"])


def test_scorers_pickle_for_worker_processes():
    scorer = pickle.loads(pickle.dumps(get_scorer("neg_model_bytes")))
    assert repr(scorer) == "get_scorer('neg_model_bytes')"


# -- Pareto fronts ---------------------------------------------------------------


def _brute_front(points):
    front = []
    for i, p in enumerate(points):
        if not np.all(np.isfinite(p)):
            continue
        dominated = any(np.all(q >= p) and np.any(q > p) for j, q in enumerate(points)
                        if j != i and np.all(np.isfinite(q)))
        if not dominated:
            front.append(i)
    return sorted(front)


@pytest.mark.parametrize("seed", range(5))
def test_pareto_front_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 30
    # few distinct values, so that ties and duplicates occur
    results = {
        "params": [{"i": i} for i in range(n)],
        "mean_test_a": rng.integers(0, 5, n) / 4,
        "mean_test_b": -rng.integers(0, 6, n).astype(float),
        "mean_test_c": rng.normal(size=n),
    }
    results["mean_test_a"][3] = np.nan  # a failed candidate
    for objectives in (["a"], ["a", "b"], ["a", "b", "c"]):
        points = np.column_stack([results[f"mean_test_{o}"] for o in objectives])
        front = pareto_front(results, objectives)
        assert sorted(front["index"].tolist()) == _brute_front(points)
        first = front[f"mean_test_{objectives[0]}"]
        assert np.all(np.diff(first) <= 0)  # best first
        assert [p["i"] for p in front["params"]] == front["index"].tolist()


def test_pareto_front_refuses_bad_objectives():
    results = {"params": [{}], "mean_test_accuracy": [0.9], "mean_test_neg_model_bytes": [-1.0]}
    with pytest.raises(ValueError, match=r"one of \['accuracy', 'neg_model_bytes'\]; got 'acc'"):
        pareto_front(results, ["acc"])
    with pytest.raises(TypeError, match="list of scoring names"):
        pareto_front(results, "accuracy")
    with pytest.raises(ValueError, match="at least one"):
        pareto_front(results, [])


# -- the tolerance refit ------------------------------------------------------


def _brute_within(results, metric, tol, cost, limits=None):
    score = np.asarray(results[f"mean_test_{metric}"], dtype=float)
    price = -np.asarray(results[f"mean_test_{cost}"], dtype=float)
    ok = np.isfinite(score) & np.isfinite(price)
    for name, limit in (limits or {}).items():
        ok &= -np.asarray(results[f"mean_test_{name}"]) <= limit
    best = max(score[i] for i in range(len(score)) if ok[i])
    close = [i for i in range(len(score)) if ok[i] and score[i] >= best - tol - 1e-12]
    return min(close, key=lambda i: (price[i], -score[i], i))


@pytest.mark.parametrize("seed", range(5))
def test_within_is_exactly_the_cheapest_within_tolerance(seed):
    rng = np.random.default_rng(seed)
    n = 40
    results = {
        "params": [{"i": i} for i in range(n)],
        "mean_test_accuracy": rng.integers(80, 100, n) / 100,
        "mean_test_neg_model_bytes": -rng.integers(1, 8, n) * 1000.0,
        "mean_test_neg_predict_latency": -rng.integers(1, 5, n) * 1e-6,
    }
    results["mean_test_accuracy"][0] = np.nan
    for tol in (0.0, 0.01, 0.05):
        pick = within("accuracy", tol=tol, minimize="neg_model_bytes")(results)
        assert pick == _brute_within(results, "accuracy", tol, "neg_model_bytes")
        limits = {"neg_predict_latency": 2e-6}
        pick = within("accuracy", tol=tol, minimize="neg_model_bytes", constraints=limits)(results)
        assert pick == _brute_within(results, "accuracy", tol, "neg_model_bytes", limits)
        assert -results["mean_test_neg_predict_latency"][pick] <= 2e-6


def test_within_one_standard_error():
    results = {
        "params": [{}, {}, {}],
        "mean_test_score": [0.95, 0.93, 0.90],
        "std_test_score": [0.04, 0.01, 0.01],
        "split0_test_score": [0, 0, 0], "split1_test_score": [0, 0, 0],
        "split2_test_score": [0, 0, 0], "split3_test_score": [0, 0, 0],
        "mean_test_neg_weight_bytes": [-9.0, -5.0, -1.0],
    }
    # one standard error of the best: 0.04 / sqrt(4) = 0.02 -> 0.93 qualifies, 0.90 does not
    assert within("score", tol="se", minimize="neg_weight_bytes")(results) == 1


def test_within_refuses_what_it_cannot_honour():
    results = {"params": [{}, {}], "mean_test_accuracy": [0.9, 0.8],
               "mean_test_neg_model_bytes": [-5e4, -1e4]}
    with pytest.raises(ValueError, match=r"The 'tol' parameter of within must be a float in the range \[0, inf\)"):
        within("accuracy", tol=-0.1)
    with pytest.raises(ValueError, match="one of \\['accuracy', 'neg_model_bytes'\\]; got 'bytes'"):
        within("accuracy", minimize="bytes")(results)
    with pytest.raises(ValueError, match="No candidate that meets the constraints"):
        within("accuracy", minimize="neg_model_bytes", constraints={"neg_model_bytes": 100})(results)


# -- in searches --------------------------------------------------------------

SPACE = {
    "module__hidden_layer_sizes": [(16,), (64,)],
    "pruning": [None, Pruning("ln_structured", amount=0.5)],
    "lr": [1e-2],
}
SCORING = {"accuracy": "accuracy", "bytes": "neg_model_bytes"}


def test_tolerance_refit_in_sklearns_own_grid_search(digits):
    X, y = digits
    scoring = {"accuracy": "accuracy", "bytes": get_scorer("neg_model_bytes")}
    grid = {f"nnclassifier__{k}": v for k, v in SPACE.items()}
    policy = within("accuracy", tol=0.02, minimize="bytes")
    search = GridSearchCV(_pipe(), grid, scoring=scoring, refit=policy, cv=2).fit(X, y)
    assert search.best_index_ == _brute_within(search.cv_results_, "accuracy", 0.02, "bytes")
    best_accuracy = int(np.argmax(search.cv_results_["mean_test_accuracy"]))
    bytes_ = -search.cv_results_["mean_test_bytes"]
    assert bytes_[search.best_index_] <= bytes_[best_accuracy]
    assert hasattr(search, "best_estimator_")
    clone_ok = pickle.loads(pickle.dumps(search))
    assert clone_ok.best_index_ == search.best_index_


@pytest.mark.parametrize("method,fuse", [("grid", False), ("grid", True), ("random", False)])
def test_every_engine_takes_cost_names_and_gives_the_same_front(digits, method, fuse):
    X, y = digits
    kw = {"n_iter": 4, "random_state": 0} if method == "random" else {}
    search = make_search(_pipe(), SPACE, method=method, fuse=fuse, cv=2, scoring=SCORING,
                         refit=within("accuracy", tol=0.02, minimize="bytes"), **kw)
    search.fit(X, y)
    front = search.pareto_front_
    assert set(front) >= {"index", "params", "mean_test_accuracy", "mean_test_bytes"}
    points = np.column_stack([search.cv_results_["mean_test_accuracy"], search.cv_results_["mean_test_bytes"]])
    assert sorted(front["index"].tolist()) == _brute_front(points)
    # the front is a property of the candidates, not of the engine: name them by their settings
    settings = sorted((p["nnclassifier__module__hidden_layer_sizes"], p["nnclassifier__pruning"] is None)
                      for p in front["params"])
    assert settings, "a front is never empty when a candidate trained"
    assert search.best_index_ in front["index"]


def test_a_list_of_names_is_multi_metric(digits):
    X, y = digits
    search = make_search(_pipe(), {"lr": [1e-2, 1e-3]}, method="grid", cv=2,
                         scoring=["accuracy", "neg_nonzero_params", "sparsity"], refit="accuracy")
    search.fit(X, y)
    assert np.all(search.cv_results_["mean_test_neg_nonzero_params"] == -((64 * 32 + 32) + (32 * 10 + 10)))
    assert np.all(search.cv_results_["mean_test_sparsity"] == 0.0)


def test_regressor_costs_in_a_single_metric_search():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = X @ rng.normal(size=5)
    search = make_search(NNRegressor(MLP((8,)), max_epochs=2, random_state=0),
                         {"module__hidden_layer_sizes": [(8,), (4,)]}, method="grid", cv=2,
                         scoring="neg_weight_bytes")
    search.fit(X, y)
    # the smaller network is the best on this cost alone
    assert search.best_params_["module__hidden_layer_sizes"] == (4,)
    assert search.best_score_ == -4 * ((5 * 4 + 4) + (4 + 1))
    assert search.pareto_front_["index"].tolist() == [search.best_index_]


def test_front_of_a_grid_equals_random_search_over_the_same_grid(digits):
    X, y = digits
    grid = make_search(_pipe(), SPACE, method="grid", cv=2, scoring=SCORING, refit="accuracy").fit(X, y)
    rand = make_search(_pipe(), SPACE, method="random", n_iter=4, random_state=0, cv=2,
                       scoring=SCORING, refit="accuracy").fit(X, y)

    def keyed(search):
        return sorted((str(sorted(p.items())), round(a, 6), b) for p, a, b in zip(
            search.pareto_front_["params"], search.pareto_front_["mean_test_accuracy"],
            search.pareto_front_["mean_test_bytes"]))

    # the same 4 candidates, trained with the same seeds: the same front, up to the pickle's bytes
    assert [k[:2] for k in keyed(grid)] == [k[:2] for k in keyed(rand)]



@pytest.mark.parametrize("method,kw", [
    ("bayes", {"n_iter": 3, "random_state": 0}),
    ("optuna", {"n_iter": 3, "random_state": 0}),
])
def test_model_based_engines_take_cost_names(digits, method, kw):
    X, y = digits
    space = {"module__hidden_layer_sizes": [(16,), (64,)], "lr": [1e-2, 3e-3]}
    search = make_search(_pipe(), space, method=method, cv=2, scoring=SCORING, refit="accuracy", **kw)
    search.fit(X, y)
    bytes_ = search.cv_results_["mean_test_bytes"]
    finite = np.isfinite(bytes_)
    assert finite.any() and np.all(bytes_[finite] < -1000)  # minus the saved size of a Pipeline
    assert search.best_index_ in search.pareto_front_["index"] or np.isnan(
        search.cv_results_["mean_test_accuracy"][search.best_index_])


def test_halving_takes_a_cost_scorer_alone(digits):
    # sklearn's successive halving ranks one score only: a cost scorer alone works
    X, y = digits
    space = {"module__hidden_layer_sizes": [(16,), (64,)], "lr": [1e-2, 3e-3]}
    search = make_search(_pipe(), space, method="halving", cv=2, scoring="neg_nonzero_params",
                         random_state=0, min_resources=2)
    search.fit(X, y)
    assert search.best_params_["nnclassifier__module__hidden_layer_sizes"] == (16,)


@pytest.mark.parametrize("fuse", [False, True])
def test_asha_takes_multi_metric_scoring_and_promotes_by_the_refit_metric(digits, fuse):
    X, y = digits
    net = NNClassifier(MLP((32,)), max_epochs=4, random_state=0)
    space = {"module__hidden_layer_sizes": [(16,), (64,)], "lr": [1e-2, 1e-3]}
    search = make_search(make_pipeline(StandardScaler(), net), space, method="asha", fuse=fuse, n_iter=4,
                         min_epochs=1, reduction_factor=2, cv=2, random_state=0, scoring=SCORING,
                         refit=within("accuracy", tol=0.05, minimize="bytes"))
    search.fit(X, y)
    results = search.cv_results_
    assert "mean_test_score" not in results
    for name in SCORING:
        assert {f"mean_test_{name}", f"std_test_{name}", f"rank_test_{name}", f"split1_test_{name}"} <= set(results)
    # the score history (what promotions used) is the accuracy's
    last = [h[-1][1] for h in results["score_history"]]
    np.testing.assert_allclose(last, results["mean_test_accuracy"])
    # bytes are those of the fold's Pipeline (scaler and network), as a plain search measures them
    assert np.all(-results["mean_test_bytes"] > 4 * (64 * 16 + 16 + 16 * 10 + 10))
    assert search.best_index_ == _brute_within(results, "accuracy", 0.05, "bytes")
    assert not hasattr(search, "best_score_")
    assert search.best_index_ in search.pareto_front_["index"]
    assert search.score(X, y) == pytest.approx(search.best_estimator_.score(X, y))


@pytest.mark.parametrize("recipe", [{}, {"quantization": Quantization("dynamic_int8")}], ids=["float", "int8"])
def test_asha_cost_bytes_are_those_a_finished_fit_saves(digits, recipe):
    # between rungs a candidate keeps its optimizer state (and an int8 model its float network) to
    # continue; its bytes are measured without them
    X, y = digits
    pipe = _pipe(**recipe)
    space = {"module__hidden_layer_sizes": [(64,)], "lr": [1e-2]}
    asha = make_search(pipe, space, method="asha", n_iter=1, min_epochs=4, cv=2, random_state=0,
                       scoring={"accuracy": "accuracy", "bytes": "neg_model_bytes"}, refit="accuracy").fit(X, y)
    grid = make_search(pipe, space, method="grid", cv=2,
                       scoring={"accuracy": "accuracy", "bytes": "neg_model_bytes"}, refit="accuracy").fit(X, y)
    np.testing.assert_allclose(asha.cv_results_["mean_test_bytes"], grid.cv_results_["mean_test_bytes"], rtol=0.02)


def test_asha_refuses_a_refit_that_names_no_scoring_entry(digits):
    X, y = digits
    search = make_search(_pipe(), {"lr": [1e-2, 1e-3]}, method="asha", n_iter=2, cv=2, scoring=SCORING,
                         refit="acc")
    with pytest.raises(ValueError, match="refit must be set to a scorer key"):
        search.fit(X, y)


# -- the lean saved model -----------------------------------------------------


def test_a_saved_model_is_its_weights_and_little_else(digits):
    X, y = digits
    for pruning in (None, Pruning("ln_structured", amount=0.75)):
        model = NNClassifier(MLP((64,)), max_epochs=25, random_state=0, pruning=pruning).fit(X, y)
        assert len(model.history_) == 25  # in memory, the whole history
        weights = -get_scorer("neg_weight_bytes")(model, X, y)
        saved = _saved_bytes(model)
        # the goal: at most 2 KiB over the weights (measured 1.6 KB
        # plain, 1.9 KB pruned: the network's structure, the loss curve, the
        # pruning summary and the parameters not at their defaults)
        assert saved - weights <= 2048, (saved, weights)
        loaded = joblib.load(_dump(model))
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
        assert loaded.loss_curve_ == model.loss_curve_ and len(loaded.history_) == 0
        # the parameters left at their defaults come back from the signature
        assert repr(loaded.get_params(deep=True)) == repr(model.get_params(deep=True))
    # a model that goes on training keeps its history in the file
    warm = NNClassifier(MLP((16,)), max_epochs=3, random_state=0, warm_start=True).fit(X, y)
    assert len(joblib.load(_dump(warm)).history_) == 3


def test_a_saved_int8_model_rebuilds_its_net_and_trains_on(digits):
    X, y = digits
    model = NNClassifier(MLP((64,)), max_epochs=5, random_state=0, quantization=Quantization()).fit(X, y)
    # measured 1.7 KB over the weights, 4.4 KB before the net was rebuilt
    # from the settings and int8 layers were stored as their integers
    assert _saved_bytes(model) + get_scorer("neg_weight_bytes")(model, X, y) <= 2048
    loaded = joblib.load(_dump(model))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert [group["params"] for group in loaded.net_.optimizer_.param_groups] == [[]]  # as fit leaves it
    loaded.partial_fit(X, y)  # training goes on from the rounded weights
    assert loaded.n_iter_ == 6 and loaded.score(X, y) > 0.5


def _dump(model):
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    buffer.seek(0)
    return buffer


def test_saving_leaves_the_model_in_memory_whole(digits):
    X, y = digits
    model = NNClassifier(MLP((16,)), max_epochs=3, random_state=0).fit(X, y)
    _dump(model)
    assert len(model.history_) == 3
    assert len(copy.deepcopy(model).history_) == 3  # a copy in memory is whole too


def test_fused_grid_gives_the_front_of_the_plain_grid(digits):
    X, y = digits
    kw = dict(method="grid", cv=2, scoring=SCORING, refit=within("accuracy", tol=0.02, minimize="bytes"))
    plain = make_search(_pipe(), SPACE, **kw).fit(X, y)
    fused = make_search(_pipe(), SPACE, fuse=True, **kw).fit(X, y)
    # the same candidates, trained together: accuracies within float32 summation order, the same files
    np.testing.assert_allclose(fused.cv_results_["mean_test_accuracy"], plain.cv_results_["mean_test_accuracy"],
                               atol=0.02)
    np.testing.assert_allclose(fused.cv_results_["mean_test_bytes"], plain.cv_results_["mean_test_bytes"],
                               rtol=0.02)
    assert sorted(fused.pareto_front_["index"].tolist()) == sorted(plain.pareto_front_["index"].tolist())
    assert fused.best_index_ == plain.best_index_
