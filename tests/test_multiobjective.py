"""Multi-objective searches: non-dominated sorting, crowding, epsilon-nets, promotions and ``objectives=``."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import MLP, Categorical, NNClassifier, make_search, within
from skopt_nn.search import ASHASearchCV
from skopt_nn.search._rungs import Scores, _ASHAState
from skopt_nn.search.pareto import crowding_distance, epsilon_net_order, non_dominated_sort, pareto_order


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:500], y[:500]


def _dominates(p, q):
    return bool(np.all(p >= q) and np.any(p > q))


def _brute_layers(points):
    """Layer k: not dominated by anything outside layers < k (peeling fronts one at a time)."""
    left = {i for i, p in enumerate(points) if np.all(np.isfinite(p))}
    layers = np.full(len(points), -1)
    k = 0
    while left:
        front = {i for i in left if not any(_dominates(points[j], points[i]) for j in left if j != i)}
        for i in front:
            layers[i] = k
        left -= front
        k += 1
    return layers


def _brute_crowding(points):
    n, m = points.shape
    if n <= 2:
        return np.full(n, np.inf)
    d = np.zeros(n)
    for k in range(m):
        values = points[:, k]
        low, high = values.min(), values.max()
        order = sorted(range(n), key=lambda i: (values[i], i))
        d[order[0]] = d[order[-1]] = np.inf
        for pos in range(1, n - 1):
            if high > low:
                d[order[pos]] += (values[order[pos + 1]] - values[order[pos - 1]]) / (high - low)
    return d


def _brute_epsilon_net(points):
    """Layer by layer; the front's best on objective 0 first, then the farthest from all taken."""
    layers = _brute_layers(points)
    finite = [i for i in range(len(points)) if layers[i] >= 0]
    low = [min(points[i][k] for i in finite) for k in range(points.shape[1])]
    high = [max(points[i][k] for i in finite) for k in range(points.shape[1])]
    scaled = [[(points[i][k] - low[k]) / ((high[k] - low[k]) or 1.0) for k in range(points.shape[1])]
              for i in range(len(points))]

    def distance(i, j):
        return float(np.sqrt(np.sum((np.array(scaled[i]) - np.array(scaled[j])) ** 2)))

    taken = []
    for k in range(max(layers) + 1):
        rows = [i for i in range(len(points)) if layers[i] == k]
        while rows:
            if not taken:
                pick = max(rows, key=lambda i: (points[i][0], -i))
            else:
                pick = max(rows, key=lambda i: (min(distance(i, j) for j in taken), -i))
            taken.append(pick)
            rows.remove(pick)
    return taken + [i for i in range(len(points)) if layers[i] < 0]


def _brute_order(points, tie_break="epsilon_net"):
    if tie_break == "epsilon_net":
        return _brute_epsilon_net(points)
    layers = _brute_layers(points)
    crowd = np.zeros(len(points))
    for k in set(layers) - {-1}:
        rows = [i for i in range(len(points)) if layers[i] == k]
        crowd[rows] = _brute_crowding(points[rows])
    return sorted(range(len(points)), key=lambda i: (layers[i] if layers[i] >= 0 else 10**9, -crowd[i], i))


def _random_points(seed, n=25, m=3):
    rng = np.random.default_rng(seed)
    # few distinct values, so that ties and duplicate rows occur
    points = rng.integers(0, 5, size=(n, m)).astype(float)
    points[rng.integers(n), rng.integers(m)] = np.nan  # a failed candidate
    return points


@pytest.mark.parametrize("seed", range(6))
def test_non_dominated_sort_matches_brute_force(seed):
    points = _random_points(seed, m=2 + seed % 2)
    layers = non_dominated_sort(points)
    np.testing.assert_array_equal(layers, _brute_layers(points))
    # what a layer means: a candidate is dominated by one of the layer below, by none of its own or above
    for i, p in enumerate(points):
        if layers[i] > 0:
            assert any(_dominates(points[j], p) for j in np.flatnonzero(layers == layers[i] - 1))
        if layers[i] >= 0:
            assert not any(_dominates(points[j], p) for j in np.flatnonzero(layers >= layers[i]))


def test_crowding_distance_by_hand():
    # a front of four: accuracy up, bytes (negated) down
    points = np.array([[0.90, -1.0], [0.92, -2.0], [0.96, -6.0], [0.97, -9.0]])
    d = crowding_distance(points)
    assert np.isinf(d[0]) and np.isinf(d[3])
    # (0.96 - 0.90) / 0.07 + (-1 - -6) / 8 and (0.97 - 0.92) / 0.07 + (-2 - -9) / 8
    np.testing.assert_allclose(d[1:3], [0.06 / 0.07 + 5 / 8, 0.05 / 0.07 + 7 / 8])
    assert np.all(np.isinf(crowding_distance(points[:2])))


@pytest.mark.parametrize("tie_break", ["epsilon_net", "crowding"])
@pytest.mark.parametrize("seed", range(6))
def test_pareto_order_matches_brute_force(seed, tie_break):
    points = _random_points(seed, n=20, m=2 + seed % 2)
    assert pareto_order(points, tie_break=tie_break).tolist() == _brute_order(points, tie_break)


@pytest.mark.parametrize("seed", range(4))
def test_epsilon_net_is_the_default_order_and_spreads_each_pick(seed):
    rng = np.random.default_rng(seed)
    points = np.column_stack([rng.uniform(0.6, 1.0, 30), -rng.choice([1e3, 4e3, 16e3, 64e3], 30)])
    order = pareto_order(points)
    assert order.tolist() == epsilon_net_order(points).tolist() == _brute_epsilon_net(points)
    # within the front, each pick is at least as far from those before it as every later front pick
    layers = non_dominated_sort(points)
    scaled = (points - points.min(0)) / (points.max(0) - points.min(0))
    front = [i for i in order if layers[i] == 0]
    for n in range(1, len(front) - 1):
        gaps = [np.min(np.linalg.norm(scaled[front[:n]] - scaled[i], axis=1)) for i in front[n:]]
        assert gaps[0] == max(gaps)


def test_epsilon_net_by_hand():
    # a front of four and one dominated point: the most accurate first, then the far end
    # (small and less accurate), then what lies between, the dominated point last
    points = [[0.8, -9], [0.9, -2], [0.95, -9], [0.93, -5], [0.94, -8]]
    assert epsilon_net_order(points).tolist() == [2, 1, 3, 4, 0]
    # crowding takes both ends before the middle too, but ranks the middle by its own layer alone
    assert pareto_order(points, tie_break="crowding").tolist() == [1, 2, 3, 4, 0]


def test_an_unknown_tie_break_is_refused(digits):
    with pytest.raises(ValueError, match="tie_break must be one of"):
        pareto_order([[0.9, 0.8]], tie_break="hypervolume")
    search = make_search(_pipe(), SPACE, method="asha", n_iter=2, cv=2, tie_break="nsga",
                         objectives=["accuracy", "neg_model_bytes"])
    with pytest.raises(ValueError, match="tie_break must be one of"):
        search.fit(*digits)


def test_pareto_order_refuses_a_table_that_is_not_two_dimensional():
    with pytest.raises(ValueError, match="2-D array"):
        pareto_order([0.9, 0.8])


def _report(state, cand, rung, accuracy, size, folds=2):
    # equal fold scores: the candidate's mean is exactly its point
    state.report(cand, rung, [Scores(accuracy, {"accuracy": accuracy, "bytes": -size})] * folds, None)


@pytest.mark.parametrize("tie_break", ["epsilon_net", "crowding"])
@pytest.mark.parametrize("seed", range(4))
def test_promotions_follow_the_pareto_order_of_a_hand_made_rung(seed, tie_break):
    rng = np.random.default_rng(seed)
    n, eta = 18, 3
    state = _ASHAState(n, [1, 3, 9], eta, objectives=["accuracy", "bytes"], tie_break=tie_break)
    points = np.column_stack([rng.integers(60, 100, n) / 100, -rng.choice([1e3, 4e3, 16e3, 64e3], n)])
    assert state.next_jobs(n) == [(c, 0) for c in range(n)]
    for c in range(n):
        _report(state, c, 0, points[c, 0], -points[c, 1])
    promoted = [cand for cand, rung in state.next_jobs(n)]
    assert promoted == _brute_order(points, tie_break)[: n // eta]
    # one objective alone promotes by that score, as single-objective ASHA does
    single = _ASHAState(n, [1, 3, 9], eta)
    single.next_jobs(n)
    for c in range(n):
        single.report(c, 0, [points[c, 0]] * 2, None)
    assert sorted(c for c, _ in single.next_jobs(n)) == sorted(
        sorted(range(n), key=lambda c: -points[c, 0])[: n // eta])


def test_a_promotion_is_taken_when_its_rung_grows_and_never_twice():
    state = _ASHAState(6, [1, 3], 2, objectives=["accuracy", "bytes"])
    state.next_jobs(6)
    _report(state, 0, 0, 0.90, 1e3)
    _report(state, 1, 0, 0.80, 4e3)  # dominated by 0
    assert state.next_jobs(6) == [(0, 1)]  # 2 done: the best half
    _report(state, 2, 0, 0.95, 8e3)
    _report(state, 3, 0, 0.97, 64e3)
    # 4 done: the front is 0, 2, 3; two may go on, 0 already has: the extremes first (3 before 2)
    assert state.next_jobs(6) == [(3, 1)]
    state.report(4, 0, [np.nan, np.nan], "ValueError: diverged")
    assert state.next_jobs(6) == []  # 5 done, still two


def _pipe(max_epochs=4):
    return make_pipeline(StandardScaler(), NNClassifier(MLP((32,)), max_epochs=max_epochs, random_state=0))


SPACE = {"module__hidden_layer_sizes": [(4,), (8,), (16,), (32,), (64,), (128,)], "lr": [1e-2, 3e-3]}


def test_multi_objective_asha_promotes_the_front_of_each_rung(digits, monkeypatch):
    X, y = digits
    # the points each candidate had at rung 0 (cv_results_ holds its bytes at its last rung only)
    first = {}
    report = _ASHAState.report

    def recording(state, cand, rung, fold_scores, error):
        report(state, cand, rung, fold_scores, error)
        if rung == 0:
            first[cand] = state.vectors[0][cand]

    monkeypatch.setattr(_ASHAState, "report", recording)
    search = make_search(_pipe(), SPACE, method="asha", fuse=True, n_iter=12, min_epochs=1,
                         reduction_factor=2, cv=2, random_state=0,
                         objectives=["accuracy", "neg_model_bytes"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    results = search.cv_results_
    # fused, rung 0 is complete before any promotion: rung 1 takes its best half in Pareto order
    first = np.array([first[c] for c in range(len(first))])
    np.testing.assert_allclose(first[:, 0], [h[0][1] for h in results["score_history"]])
    expected = _brute_order(first)[: len(first) // 2]
    assert sorted(np.flatnonzero(results["rung"] >= 1).tolist()) == sorted(expected)
    # a cost among the objectives: the cheapest model within one point of the best
    assert repr(search.refit) == "within('accuracy', tol=0.01, minimize='neg_model_bytes')"
    assert search.best_index_ == within("accuracy", tol=0.01, minimize="neg_model_bytes")(results)
    assert search.best_index_ in search.pareto_front_["index"]
    assert search.predict(X[:5]).shape == (5,)


def test_promotion_by_objectives_differs_from_promotion_by_accuracy(digits):
    # the same candidates, promoted by accuracy alone: the small models the front keeps are dropped
    X, y = digits
    kw = dict(method="asha", fuse=True, n_iter=12, min_epochs=1, reduction_factor=2, cv=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        multi = make_search(_pipe(), SPACE, objectives=["accuracy", "neg_model_bytes"], **kw).fit(X, y)
        single = make_search(_pipe(), SPACE, scoring=["accuracy", "neg_model_bytes"], refit="accuracy",
                             **kw).fit(X, y)
    # the front's end at the small side goes on: the best at rung 0 of the narrowest network
    # (the saved bytes of one width differ by a few bytes between rungs, so the width says which)
    results = multi.cv_results_
    narrow = [i for i, p in enumerate(results["params"]) if p["nnclassifier__module__hidden_layer_sizes"] == (4,)]
    smallest = max(narrow, key=lambda i: results["score_history"][i][0][1])
    assert results["rung"][smallest] >= 1
    top_multi = set(np.flatnonzero(multi.cv_results_["rung"] == 2))
    top_single = set(np.flatnonzero(single.cv_results_["rung"] == 2))
    assert top_multi != top_single


@pytest.mark.parametrize("method, kw", [("grid", {}), ("random", {"n_iter": 4, "random_state": 0}),
                                        ("grid", {"fuse": True})])
def test_exhaustive_engines_take_objectives_as_scoring_and_refit(digits, method, kw):
    X, y = digits
    space = {"module__hidden_layer_sizes": [(4,), (32,)], "lr": [1e-2, 3e-3]}
    search = make_search(_pipe(3), space, method=method, cv=2,
                         objectives=["accuracy", "neg_model_bytes"], **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    results = search.cv_results_
    assert {"mean_test_accuracy", "mean_test_neg_model_bytes"} <= set(results)
    assert search.best_index_ == within("accuracy", tol=0.01, minimize="neg_model_bytes")(results)
    front = search.pareto_front_
    points = np.column_stack([results["mean_test_accuracy"], results["mean_test_neg_model_bytes"]])
    assert sorted(front["index"].tolist()) == sorted(np.flatnonzero(_brute_layers(points) == 0).tolist())


def test_objectives_without_a_cost_refit_the_first_objective():
    search = make_search(_pipe(), {"lr": [1e-2, 1e-3]}, method="grid",
                         objectives=["f1_macro", "accuracy"])
    assert search.refit == "f1_macro" and search.scoring == ["f1_macro", "accuracy"]
    # a refit the user chose is kept
    search = make_search(_pipe(), {"lr": [1e-2, 1e-3]}, method="grid", refit="neg_model_bytes",
                         objectives=["accuracy", "neg_model_bytes"])
    assert search.refit == "neg_model_bytes"


@pytest.mark.parametrize("objectives", ["accuracy", ["accuracy"], ["accuracy", "accuracy"], ["accuracy", 3],
                                        {"accuracy": 1, "neg_model_bytes": 1}])
def test_bad_objectives_get_sklearns_parameter_error(objectives):
    with pytest.raises(ValueError, match="The 'objectives' parameter of make_search must be a list"):
        make_search(_pipe(), {"lr": [1e-2, 1e-3]}, method="grid", objectives=objectives)
    search = ASHASearchCV(_pipe(), {"lr": [1e-2, 1e-3]}, objectives=objectives, n_iter=2, cv=2)
    with pytest.raises(ValueError, match="The 'objectives' parameter of ASHASearchCV must be a list"):
        search.fit(*load_digits(return_X_y=True))


def test_objectives_must_be_scoring_entries_of_an_engine_that_trades_them():
    objectives = ["accuracy", "neg_model_bytes"]
    with pytest.raises(ValueError, match="one of \\['accuracy', 'f1_macro'\\]; got 'neg_model_bytes'"):
        make_search(_pipe(), {"lr": [1e-2]}, method="grid", scoring=["accuracy", "f1_macro"],
                    objectives=objectives)
    with pytest.raises(ValueError, match="scoring must be None .* or a list or dict"):
        make_search(_pipe(), {"lr": [1e-2]}, method="grid", scoring="accuracy", objectives=objectives)
    with pytest.raises(ValueError, match="objectives applies to method in"):
        make_search(_pipe(), {"lr": [1e-2]}, method="halving", objectives=objectives)


def test_an_asha_search_with_objectives_clones_and_keeps_them():
    from sklearn.base import clone

    search = ASHASearchCV(_pipe(), {"lr": [1e-2, 1e-3]}, objectives=["accuracy", "neg_model_bytes"])
    assert clone(search).get_params()["objectives"] == ["accuracy", "neg_model_bytes"]


# -- the model-based engines --------------------------------------------------

MODEL_SPACE = {"module__hidden_layer_sizes": Categorical([(4,), (8,), (16,), (64,)]), "lr": [1e-2, 3e-3]}


def _points(results, objectives):
    return np.column_stack([results[f"mean_test_{o}"] for o in objectives])


def test_optuna_with_objectives_runs_a_multi_objective_study(digits):
    import optuna

    X, y = digits
    objectives = ["accuracy", "neg_model_bytes"]
    for sampler in (None, optuna.samplers.NSGAIISampler(population_size=4, seed=0)):
        search = make_search(_pipe(3), MODEL_SPACE, method="optuna", objectives=objectives, cv=2, n_iter=6,
                             random_state=0, sampler=sampler)
        search.fit(X, y)
        study = search.study_
        assert len(study.directions) == 2
        results = search.cv_results_
        # each trial told its mean test score on each objective, in order
        for trial in study.trials:
            row = trial.user_attrs["cv_results_index"]
            np.testing.assert_allclose(trial.values, _points(results, objectives)[row])
        # the study's front is pareto_front_, both the brute-force front
        brute = np.flatnonzero(_brute_layers(_points(results, objectives)) == 0)
        assert sorted(t.user_attrs["cv_results_index"] for t in study.best_trials) == sorted(brute.tolist())
        assert sorted(search.pareto_front_["index"].tolist()) == sorted(brute.tolist())
        assert search.best_index_ == within("accuracy", tol=0.01, minimize="neg_model_bytes")(results)


def test_bayes_with_objectives_tells_the_optimizer_parego_scalarisations(digits):
    from skopt_nn.search._engines import chebyshev

    X, y = digits
    objectives = ["accuracy", "neg_model_bytes"]
    search = make_search(_pipe(3), MODEL_SPACE, method="bayes", objectives=objectives, cv=2, n_iter=7,
                         random_state=0, optimizer_kwargs={"n_initial_points": 3})
    search.fit(X, y)
    results = search.cv_results_
    assert len(search.objective_weights_) == 7
    assert not np.allclose(search.objective_weights_[0], search.objective_weights_[1])  # redrawn each step
    for weights in search.objective_weights_:
        assert np.all(weights >= 0) and weights.sum() == pytest.approx(1)
    # after the last step every point holds the scalarisation under the last weights (minimised)
    np.testing.assert_allclose(search.optimizers_[0].yi,
                               -chebyshev(_points(results, objectives), search.objective_weights_[-1]))
    assert search.best_index_ == within("accuracy", tol=0.01, minimize="neg_model_bytes")(results)
    assert search.best_index_ in search.pareto_front_["index"]


def test_chebyshev_scalarisation_by_hand():
    from skopt_nn.search._engines import chebyshev

    points = np.array([[0.90, -2.0], [0.95, -10.0], [0.80, -10.0], [np.nan, -1.0]])
    # scaled shortfalls: accuracy (0.95 - a) / 0.15, bytes (b - -2) / -8 ... as 1 - scaled
    w = np.array([0.25, 0.75])
    expected = []
    for a, b in points[:3]:
        short = w * np.array([(0.95 - a) / 0.15, (-2.0 - b) / 8.0])
        expected.append(-(short.max() + 0.05 * short.sum()))
    scores = chebyshev(points, w)
    np.testing.assert_allclose(scores[:3], expected)
    assert np.isnan(scores[3])
    # a point best on every objective scores 0, the highest possible
    assert chebyshev(np.array([[1.0, 1.0], [0.0, 0.0]]), w)[0] == 0


def test_model_based_engines_need_scoring_holding_the_objectives(digits):
    from skopt_nn.search import OptunaSearchCV, RobustBayesSearchCV

    X, y = digits
    objectives = ["accuracy", "neg_model_bytes"]
    for search in (OptunaSearchCV(_pipe(2), MODEL_SPACE, objectives=objectives, cv=2, n_trials=2),
                   RobustBayesSearchCV(_pipe(2), {"lr": (1e-3, 1e-1, "log-uniform")}, objectives=objectives,
                                       cv=2, n_iter=2)):
        with pytest.raises(ValueError, match="scoring must hold them"):
            search.fit(X, y)


# -- a rung before the pruning scores the model the candidate would finish as ------------------------

def _pruned_net(**kw):
    from skopt_nn import Pruning

    return NNClassifier(MLP((32,)), max_epochs=5, random_state=0, early_stopping=False,
                        pruning=Pruning("ln_structured", amount=0.5), **kw)


def test_a_candidate_before_its_pruning_is_scored_pruned_and_trains_on_unchanged(digits):
    X, y = digits
    X = StandardScaler().fit_transform(X)
    net = _pruned_net()
    net._fit_epochs(X, y, 1)  # one-shot pruning at 0.6 * 5 = epoch 3: not yet
    assert net.n_params_ == 64 * 32 + 32 + 32 * 10 + 10
    finished = net._as_finished()
    # pruned to its final amount and shrunk: 16 of the 32 hidden units
    assert finished.n_params_ == 64 * 16 + 16 + 16 * 10 + 10
    assert finished.sparsity_ == pytest.approx(0.5, abs=0.05)
    assert finished.predict(X[:7]).shape == (7,)
    # the candidate itself is untouched: continued to the end it is the straight fit
    net._fit_epochs(X, y, 4)
    assert "_finish_now_" not in vars(net)
    straight = _pruned_net().fit(X, y)
    np.testing.assert_allclose(net.predict_proba(X), straight.predict_proba(X), atol=1e-6)


def test_a_quantized_candidate_before_its_pruning_is_scored_pruned_then_quantized(digits):
    from skopt_nn import Quantization

    X, y = digits
    X = StandardScaler().fit_transform(X)
    net = _pruned_net(quantization=Quantization("dynamic_int8"))
    net._fit_epochs(X, y, 1)
    finished = net._as_finished()
    assert finished._is_quantized and "_float_module_" not in vars(finished)
    assert finished.n_params_ == 64 * 16 + 16 + 16 * 10 + 10
    assert finished.predict(X[:7]).shape == (7,)


def test_asha_scores_a_candidate_stopped_before_its_pruning_as_pruned(digits):
    from skopt_nn import Pruning

    X, y = digits
    pipe = _pipe(6)
    space = {"pruning": [Pruning("ln_structured", amount=0.75)], "lr": [1e-2, 3e-3]}
    kw = dict(cv=2, objectives=["accuracy", "neg_model_bytes"])
    asha = make_search(pipe, space, method="asha", n_iter=2, min_epochs=2, reduction_factor=2,
                       random_state=0, **kw)
    grid = make_search(pipe, space, method="grid", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        asha.fit(X, y)
        grid.fit(X, y)
    results = asha.cv_results_
    stopped = int(np.argmin(results["epochs"]))
    assert results["epochs"][stopped] == 2  # 2 of 6 epochs: its pruning (at epoch 3.6) has not run
    # its saved size is that of the pruned network it would finish as (a shorter history aside),
    # not of the dense one, a quarter of whose hidden units the pruning keeps
    index = [p == results["params"][stopped] for p in grid.cv_results_["params"]].index(True)
    np.testing.assert_allclose(results["mean_test_neg_model_bytes"][stopped],
                               grid.cv_results_["mean_test_neg_model_bytes"][index], rtol=0.15)
    dense = make_search(pipe, {"lr": [1e-2]}, method="grid", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dense.fit(X, y)
    assert -results["mean_test_neg_model_bytes"][stopped] < 0.75 * -dense.cv_results_["mean_test_neg_model_bytes"][0]


def test_optuna_records_the_refits_constraints_for_its_sampler(digits):
    import optuna

    X, y = digits
    limit = 9000
    refit = within("accuracy", tol=0.01, minimize="neg_model_bytes", constraints={"neg_model_bytes": limit})
    search = make_search(_pipe(3), MODEL_SPACE, method="optuna", objectives=["accuracy", "neg_model_bytes"],
                         refit=refit, cv=2, n_iter=6, random_state=0)
    search.fit(X, y)
    sampler = search.study_.sampler
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._constraints_func is search.constraints_func
    results = search.cv_results_
    for trial in search.study_.trials:
        size = -results["mean_test_neg_model_bytes"][trial.user_attrs["cv_results_index"]]
        assert search.constraints_func(trial) == pytest.approx([size - limit])
    # the refit keeps to the limit
    assert -results["mean_test_neg_model_bytes"][search.best_index_] <= limit
