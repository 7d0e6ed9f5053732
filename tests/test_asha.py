import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skopt_nn import MLP, Categorical, LRSchedule, NNClassifier, Pruning, Real, make_search


@pytest.fixture(scope="module")
def small(digits):
    X, y = digits
    return X[:240].astype(np.float32), y[:240]


def _pipe(**kw):
    return make_pipeline(
        StandardScaler(),
        NNClassifier(MLP((16,)), max_epochs=9, batch_size=32, random_state=0, **kw),
    )


def test_continued_candidate_at_the_top_rung_equals_a_straight_fit(small):
    X, y = small
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    space = {"lr": Real(1e-3, 3e-2, log=True), "lr_schedule": Categorical(["cosine", "onecycle"])}
    search = make_search(_pipe(), space, method="asha", n_iter=6, cv=cv, random_state=0,
                         refit=False).fit(X, y)
    res = search.cv_results_
    top = np.flatnonzero(res["epochs"] == 9)
    assert top.size >= 1
    assert search.rungs_ == [1, 3, 9]
    for i in top:
        for k, (train, test) in enumerate(cv.split(X, y)):
            straight = _pipe().set_params(**res["params"][i]).fit(X[train], y[train])
            assert res[f"split{k}_test_score"][i] == straight.score(X[test], y[test])
    # The rungs trained far fewer epochs than six full fits would.
    assert search.total_epochs_ < 6 * 9 * 2
    assert search.total_epochs_ == sum(res["epochs"]) * 2


def test_rung_by_rung_training_keeps_pruning_and_dropout_on_course(small):
    X, y = small
    kw = dict(module=MLP((16,), dropout=0.2), pruning=Pruning(amount=0.5), max_epochs=9,
              lr_schedule=LRSchedule("cosine", warmup_epochs=1), batch_size=32, random_state=3)
    straight = NNClassifier(**kw).fit(X, y)
    rungs = NNClassifier(**kw)
    for k in (1, 2, 6):
        rungs._fit_epochs(X, y, k)
    assert rungs.n_iter_ == 9
    np.testing.assert_array_equal(rungs.predict_proba(X), straight.predict_proba(X))
    assert rungs.sparsity_ == straight.sparsity_


def test_tuples_none_and_specs_come_back_as_given(small):
    X, y = small
    sizes = [(8,), (16, 8)]
    schedules = [LRSchedule("cosine", warmup_epochs=1), "constant"]
    prunings = [None, Pruning(amount=0.3)]
    space = {"module__hidden_layer_sizes": Categorical(sizes),
             "lr_schedule": Categorical(schedules), "pruning": Categorical(prunings)}
    search = make_search(_pipe(lr=1e-2), space, method="asha", n_iter=6, cv=2,
                         random_state=0).fit(X, y)
    for params in search.cv_results_["params"] + [search.best_params_]:
        assert params["nnclassifier__module__hidden_layer_sizes"] in sizes
        assert type(params["nnclassifier__module__hidden_layer_sizes"]) is tuple
        assert params["nnclassifier__lr_schedule"] in schedules
        assert params["nnclassifier__pruning"] in prunings
    best_net = search.best_estimator_[-1]
    assert best_net.module.hidden_layer_sizes == search.best_params_["nnclassifier__module__hidden_layer_sizes"]
    assert search.predict(X).shape == y.shape


def test_a_space_reaching_lr_1e6_finishes_with_a_stable_lr(small):
    X, y = small
    space = {"lr": Real(1e-4, 1e6, log=True)}
    search = make_search(_pipe(optimizer="sgd"), space, method="asha", n_iter=12, cv=2,
                         random_state=2).fit(X, y)
    res = search.cv_results_
    lrs = np.array([p["nnclassifier__lr"] for p in res["params"]])
    assert (lrs > 100).sum() >= 2
    assert (res["epochs"][lrs > 100] == 1).all()  # never promoted
    assert search.best_params_["nnclassifier__lr"] < 1
    assert res["epochs"][search.best_index_] == 9
    assert search.best_score_ > 0.5
    assert res["rank_test_score"][search.best_index_] == 1
    assert np.isfinite(search.best_estimator_.predict_proba(X)).all()


def test_failing_candidates_are_recorded_and_the_search_finishes(small):
    X, y = small
    space = {"module__hidden_layer_sizes": Categorical([(8,), (-1,)]),
             "lr": Real(1e-3, 1e-1, log=True)}
    search = make_search(_pipe(), space, method="asha", n_iter=6, cv=2,
                         random_state=0).fit(X, y)
    res = search.cv_results_
    bad = np.array([p["nnclassifier__module__hidden_layer_sizes"] == (-1,) for p in res["params"]])
    assert bad.any() and (~bad).any()
    np.testing.assert_array_equal(res["failed"], bad)
    assert np.isnan(res["mean_test_score"][bad]).all()
    assert all(isinstance(e, str) and e for e in res["error"][bad])
    assert search.best_params_["nnclassifier__module__hidden_layer_sizes"] == (8,)
    with pytest.raises(ValueError, match="failed"):
        make_search(_pipe(), space, method="asha", n_iter=6, cv=2, random_state=0,
                    error_score="raise").fit(X, y)


class CountingScaler(StandardScaler):
    fits = 0

    def fit(self, X, y=None, sample_weight=None):
        type(self).fits += 1
        return super().fit(X, y, sample_weight)


def test_pipeline_steps_before_the_net_are_fitted_once_per_candidate_and_fold(small):
    X, y = small
    CountingScaler.fits = 0
    pipe = make_pipeline(CountingScaler(), NNClassifier(MLP((8,)), max_epochs=9, random_state=0))
    search = make_search(pipe, {"lr": Real(1e-3, 1e-1, log=True)}, method="asha", n_iter=9,
                         cv=3, random_state=0, refit=False).fit(X, y)
    assert (search.cv_results_["epochs"] == 9).any()  # some candidates ran three rungs
    assert CountingScaler.fits == 9 * 3


@pytest.mark.slow
def test_parallel_workers_give_the_same_search_as_one(small):
    X, y = small
    space = {"lr": Real(1e-3, 1e-1, log=True)}
    kw = dict(method="asha", n_iter=4, cv=2, random_state=0, refit=False)
    one = make_search(_pipe(), space, **kw).fit(X, y)
    two = make_search(_pipe(), space, n_jobs=2, **kw).fit(X, y)
    assert one.best_params_ == two.best_params_
    np.testing.assert_array_equal(one.cv_results_["epochs"], two.cv_results_["epochs"])


def test_asha_refuses_what_it_cannot_train(small):
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(ValueError, match="Pipeline ending in one"):
        make_search(LogisticRegression(), {"C": Real(0.1, 1)}, method="asha").fit(*small)
    with pytest.raises(ValueError, match="resource"):
        make_search(_pipe(), {"max_epochs": Categorical([3, 9])}, method="asha").fit(*small)
    with pytest.raises(ValueError, match="min_epochs=20"):
        make_search(_pipe(), {"lr": Real(1e-3, 1e-1)}, method="asha", min_epochs=20).fit(*small)


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_backend_promotes_like_joblib_and_decodes_params(small, local_ray, capsys):
    X, y = small
    sizes = [(8,), (16, 8)]
    prunings = [None, Pruning(amount=0.3)]
    space = {"lr": Real(1e-3, 1e-1, log=True), "module__hidden_layer_sizes": Categorical(sizes),
             "pruning": Categorical(prunings)}
    kw = dict(method="asha", n_iter=9, cv=2, random_state=0)
    search = make_search(_pipe(), space, backend="ray", **kw).fit(X, y)
    res = search.cv_results_
    # Two actors on two CPUs: the joblib backend with two workers runs the same waves.
    local = make_search(_pipe(), space, refit=False, n_jobs=2, **kw).fit(X, y)
    assert res["params"] == local.cv_results_["params"]
    np.testing.assert_array_equal(res["epochs"], local.cv_results_["epochs"])
    assert search.total_epochs_ == local.total_epochs_ == res["epochs"].sum() * 2
    assert res["epochs"].max() == 9 and not res["failed"].any()
    # The promotion rule: a candidate goes up when it is in the top 1/eta of
    # those that finished its rung, so at most a third of them ever went on,
    # and the first promoted from rung 0 led the first three to finish it.
    histories = res["score_history"]
    for rung in (0, 1):
        finished = [i for i, h in enumerate(histories) if len(h) > rung]
        went_on = [i for i in finished if len(histories[i]) > rung + 1]
        assert 1 <= len(went_on) <= len(finished) // 3
    first_three = [0, 1, 2]  # candidates start in order, one wave of one at a time
    leader = max(first_three, key=lambda i: histories[i][0][1])
    assert len(histories[leader]) > 1
    for i in range(len(res["params"])):
        ours, theirs = histories[i], local.cv_results_["score_history"][i]
        assert [e for e, _ in ours] == [e for e, _ in theirs]
        assert [s for _, s in ours] == pytest.approx([s for _, s in theirs])
    # Params come back as the user gave them: tuples stay tuples, None and specs survive.
    for params in res["params"] + [search.best_params_]:
        assert type(params["nnclassifier__module__hidden_layer_sizes"]) is tuple
        assert params["nnclassifier__module__hidden_layer_sizes"] in sizes
        assert params["nnclassifier__pruning"] in prunings
    assert search.score(X, y) > 0.5
    assert "train_loss" not in capsys.readouterr().out  # the refit stayed quiet


def test_ray_backend_trains_fused_groups_on_its_actors(small, local_ray):
    X, y = small
    space = {"lr": Real(1e-3, 1e-1, log=True)}
    kw = dict(method="asha", n_iter=6, cv=2, random_state=0, refit=False, fuse=True)
    on_ray = make_search(_pipe(), space, backend="ray", **kw).fit(X, y)
    local = make_search(_pipe(), space, **kw).fit(X, y)
    np.testing.assert_array_equal(on_ray.cv_results_["epochs"], local.cv_results_["epochs"])
    np.testing.assert_allclose(on_ray.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"], atol=1e-6)


@pytest.mark.slow
def test_ray_backend_takes_multi_metric_scoring_like_joblib(small, local_ray):
    X, y = small
    space = {"lr": Real(1e-3, 1e-1, log=True), "module__hidden_layer_sizes": Categorical([(8,), (32,)])}
    scoring = {"accuracy": "accuracy", "bytes": "neg_model_bytes"}
    kw = dict(method="asha", n_iter=4, cv=2, random_state=0, scoring=scoring, refit="accuracy")
    on_ray = make_search(_pipe(), space, backend="ray", **kw).fit(X, y)
    local = make_search(_pipe(), space, **kw).fit(X, y)
    np.testing.assert_allclose(on_ray.cv_results_["mean_test_accuracy"], local.cv_results_["mean_test_accuracy"],
                               atol=1e-6)
    # the saved bytes, up to a few bytes of the process a fit ran in (under 1 %)
    np.testing.assert_allclose(on_ray.cv_results_["mean_test_bytes"], local.cv_results_["mean_test_bytes"],
                               rtol=0.01)
    assert on_ray.best_index_ == local.best_index_


@pytest.mark.slow
def test_ray_backend_promotes_by_objectives_like_joblib(small, local_ray):
    X, y = small
    space = {"lr": Categorical([1e-2, 3e-2]), "module__hidden_layer_sizes": Categorical([(4,), (8,), (32,)])}
    kw = dict(method="asha", n_iter=6, cv=2, random_state=0, reduction_factor=2,
              objectives=["accuracy", "neg_model_bytes"])
    on_ray = make_search(_pipe(), space, backend="ray", **kw).fit(X, y)
    local = make_search(_pipe(), space, **kw).fit(X, y)
    np.testing.assert_array_equal(on_ray.cv_results_["rung"], local.cv_results_["rung"])
    np.testing.assert_allclose(on_ray.cv_results_["mean_test_accuracy"], local.cv_results_["mean_test_accuracy"],
                               atol=1e-6)
    assert on_ray.best_index_ == local.best_index_


def test_search_space_renders_as_ray_tune_distributions():
    pytest.importorskip("ray")
    from ray.tune.search.sample import Categorical as RayCategorical
    from ray.tune.search.sample import Float, Integer as RayInteger

    from skopt_nn import Integer, SearchSpace

    choices = [(8,), None, LRSchedule("cosine")]
    space = SearchSpace(lr=Real(1e-4, 1e-1, log=True), batch_size=Integer(16, 64),
                        hidden=Categorical(choices)).ray()
    assert isinstance(space["lr"], Float) and isinstance(space["batch_size"], RayInteger)
    assert isinstance(space["hidden"], RayCategorical)
    rng = np.random.default_rng(0)
    lrs = [space["lr"].sample(random_state=rng) for _ in range(50)]
    sizes = [space["batch_size"].sample(random_state=rng) for _ in range(200)]
    assert 1e-4 <= min(lrs) and max(lrs) <= 1e-1
    assert min(sizes) >= 16 and max(sizes) == 64
    picked = [space["hidden"].sample(random_state=rng) for _ in range(30)]
    assert all(any(p is c or p == c for c in choices) for p in picked)
    assert (8,) in picked and None in picked


def test_asha_runs_on_the_dask_joblib_backend(small):
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    X, y = small
    space = {"lr": Real(1e-3, 1e-1, log=True)}
    kw = dict(method="asha", n_iter=4, cv=2, random_state=0, refit=False)
    local = make_search(_pipe(), space, **kw).fit(X, y)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        with parallel_config(backend="dask"):
            on_dask = make_search(_pipe(), space, **kw).fit(X, y)
    np.testing.assert_array_equal(on_dask.cv_results_["epochs"], local.cv_results_["epochs"])
    assert on_dask.best_params_ == local.best_params_


def _weights(y):
    # Class 0 counts for nothing: a weighted fit differs visibly from a plain one.
    return np.where(y == 0, 0.0, 1.0) + (np.arange(len(y)) % 3 == 0)


def test_sample_weight_reaches_every_rung_fit_cut_to_the_fold(small):
    X, y = small
    w = _weights(y)
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    space = {"lr": Real(1e-3, 3e-2, log=True)}
    kw = dict(method="asha", n_iter=3, cv=cv, random_state=0)
    search = make_search(_pipe(), space, **kw).fit(X, y, nnclassifier__sample_weight=w)
    res = search.cv_results_
    top = np.flatnonzero(res["epochs"] == 9)
    for i in top:
        for k, (train, test) in enumerate(cv.split(X, y)):
            straight = _pipe().set_params(**res["params"][i]).fit(
                X[train], y[train], nnclassifier__sample_weight=w[train])
            assert res[f"split{k}_test_score"][i] == straight.score(X[test], y[test])
    refit = _pipe().set_params(**search.best_params_).fit(X, y, nnclassifier__sample_weight=w)
    np.testing.assert_array_equal(search.predict_proba(X), refit.predict_proba(X))
    plain = make_search(_pipe(), space, **kw).fit(X, y)
    assert not np.array_equal(plain.cv_results_["mean_test_score"], res["mean_test_score"])


def test_sample_weight_is_routed_by_metadata_routing(small):
    import sklearn

    X, y = small
    w = _weights(y)
    space = {"lr": Real(1e-3, 3e-2, log=True)}
    kw = dict(method="asha", n_iter=2, cv=2, random_state=0)
    old_style = make_search(_pipe(), space, **kw).fit(X, y, nnclassifier__sample_weight=w)
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(
            StandardScaler().set_fit_request(sample_weight=False),
            NNClassifier(MLP((16,)), max_epochs=9, batch_size=32, random_state=0).set_fit_request(
                sample_weight=True),
        )
        routed = make_search(pipe, space, **kw).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(routed.cv_results_["mean_test_score"],
                                  old_style.cv_results_["mean_test_score"])


@pytest.mark.slow
def test_ray_backend_routes_sample_weight(small, local_ray):
    X, y = small
    w = _weights(y)
    space = {"lr": Real(1e-3, 3e-2, log=True)}
    kw = dict(method="asha", n_iter=2, cv=2, random_state=0, refit=False)
    on_ray = make_search(_pipe(), space, backend="ray", **kw).fit(X, y, nnclassifier__sample_weight=w)
    local = make_search(_pipe(), space, **kw).fit(X, y, nnclassifier__sample_weight=w)
    # The schedulers promote differently; a candidate at a rung scores alike in both.
    compared = 0
    for i in range(2):
        for epochs, score in on_ray.cv_results_["score_history"][i]:
            same = [s for e, s in local.cv_results_["score_history"][i] if e == epochs]
            if same:
                assert score == pytest.approx(same[0])
                compared += 1
    assert compared >= 2
    plain = make_search(_pipe(), space, **kw).fit(X, y)
    assert plain.cv_results_["score_history"][0][0] != on_ray.cv_results_["score_history"][0][0]
