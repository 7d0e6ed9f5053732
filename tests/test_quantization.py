"""Quantization as a hyperparameter: scores, searches, round trips, bad options, continued training."""

import pickle
import subprocess
import sys
import textwrap
import warnings

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skopt_nn import CNN, MLP, NNClassifier, NNRegressor, Pruning, Quantization, export_onnx, load, save
from skopt_nn.search import ASHASearchCV, FusedGridSearchCV, make_search
from skopt_nn.search.spaces import Categorical, Real, SearchSpace
from skopt_nn.specs.quantization import is_quantized, quantized_layers

FAST = dict(lr=0.01, max_epochs=8, batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.3, random_state=0, stratify=y)


def net(quantization=None, **kwargs):
    return NNClassifier(MLP((128,)), quantization=quantization, **{**FAST, **kwargs})


@pytest.fixture(scope="module")
def float_and_int8(digits_split):
    X_train, _, y_train, _ = digits_split
    return net().fit(X_train, y_train), net(Quantization()).fit(X_train, y_train)


# -- what it does to the fitted model ---------------------------------------------------


def test_dynamic_int8_keeps_accuracy_and_stores_4x_smaller_weights(digits_split, float_and_int8):
    _, X_test, _, y_test = digits_split
    dense, quantized = float_and_int8
    assert is_quantized(quantized.module_) and not is_quantized(dense.module_)
    summary = quantized.quantization_summary_
    assert summary["method"] == "dynamic_int8"
    assert summary["layers"] == quantized_layers(quantized.module_) and len(summary["layers"]) == 2
    assert summary["float_bytes"] >= 3.5 * summary["quantized_bytes"]
    assert quantized.n_params_ == dense.n_params_  # describes the trained network
    # the same training (same seed): only the rounding of the weights differs
    assert abs(quantized.score(X_test, y_test) - dense.score(X_test, y_test)) <= 0.01
    assert np.mean(quantized.predict(X_test) == dense.predict(X_test)) >= 0.98
    # the pickle is smaller by about the weights' saving (the rest is the estimator's own state)
    saved = len(pickle.dumps(dense)) - len(pickle.dumps(quantized))
    assert saved >= 0.9 * (summary["float_bytes"] - summary["quantized_bytes"])


def test_a_regressor_is_quantized_too():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    params = dict(lr=0.01, max_epochs=30, batch_size=32, random_state=0)
    dense = NNRegressor(MLP((64,)), **params).fit(X, y)
    quantized = NNRegressor(MLP((64,)), quantization=Quantization(per_channel=True), **params).fit(X, y)
    assert quantized.quantization_summary_["method"] == "dynamic_int8"
    assert abs(r2_score(y, quantized.predict(X)) - r2_score(y, dense.predict(X))) < 0.02


@pytest.mark.parametrize("method", ["float16", "bfloat16"])
def test_16_bit_storage_halves_the_weights_and_predicts_close(digits_split, float_and_int8, method):
    X_train, X_test, y_train, _ = digits_split
    dense, _ = float_and_int8
    model = net(Quantization(method)).fit(X_train, y_train)
    summary = model.quantization_summary_
    assert summary["float_bytes"] == pytest.approx(2 * summary["quantized_bytes"], rel=0.01)
    assert {str(p.dtype) for p in model.module_.state_dict().values()} == {f"torch.{method}"}
    np.testing.assert_allclose(model.predict_proba(X_test), dense.predict_proba(X_test), atol=0.05)


@pytest.mark.slow
def test_static_int8_quantizes_a_cnn_whole_and_keeps_its_accuracy(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    params = dict(module=CNN(input_shape=(1, 8, 8)), lr=3e-3, max_epochs=6, batch_size=32, random_state=0)
    dense = NNClassifier(**params).fit(X_train, y_train)
    static = NNClassifier(quantization=Quantization("static_int8", calibration_rows=256), **params)
    static.fit(X_train, y_train)
    int8 = [type(m).__name__ for m in static.module_.modules() if "quantized" in type(m).__module__]
    assert any("Conv" in kind for kind in int8) and any("Linear" in kind for kind in int8)
    assert static.score(X_test, y_test) >= dense.score(X_test, y_test) - 0.02
    assert static.quantization_summary_["float_bytes"] > 3 * static.quantization_summary_["quantized_bytes"]


def test_quantization_with_structured_pruning_is_smaller_than_either(digits_split):
    X_train, _, y_train, _ = digits_split
    prune = Pruning(method="ln_structured", amount=0.5)
    pruned = net(pruning=prune).fit(X_train, y_train)
    both = net(Quantization(), pruning=prune).fit(X_train, y_train)
    quantized_only = net(Quantization()).fit(X_train, y_train)
    size = {name: len(pickle.dumps(m)) for name, m in
            [("pruned", pruned), ("both", both), ("quantized", quantized_only)]}
    assert size["both"] < min(size["pruned"], size["quantized"])
    assert both.n_params_ == pruned.n_params_


def test_an_ensemble_is_quantized_whole(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    model = net(Quantization(), n_ensemble=2, max_epochs=4).fit(X_train, y_train)
    assert model.quantization_summary_["method"] == "dynamic_int8"
    assert len(model.quantization_summary_["layers"]) == 4  # two layers in each of two members
    assert model.score(X_test, y_test) > 0.85


# -- in sklearn's tools and our searches ----------------------------------------------


def test_grid_search_weighs_the_float_model_against_quantized_ones(digits_split):
    X_train, _, y_train, _ = digits_split
    grid = [{"quantization": [None]},
            {"quantization": [Quantization()], "quantization__per_channel": [False, True]}]
    search = GridSearchCV(net(max_epochs=4), grid, cv=2, error_score="raise").fit(X_train, y_train)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and np.ptp(scores) < 0.03
    assert search.cv_results_["params"][2]["quantization__per_channel"] is True
    best = search.best_estimator_
    assert ("quantization_summary_" in vars(best)) == (search.best_params_["quantization"] is not None)


def test_quantized_model_in_a_pipeline_and_cross_val_score():
    X, y = load_digits(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), net(Quantization(), max_epochs=4))
    scores = cross_val_score(pipe, X, y, cv=3, error_score="raise")
    assert scores.min() > 0.8
    fitted = pipe.fit(X, y, nnclassifier__sample_weight=np.ones(len(y)))
    assert fitted[-1].quantization_summary_["method"] == "dynamic_int8"


@pytest.mark.parametrize("method", ["random", "bayes", "optuna"])
def test_quantization_is_a_choice_every_engine_searches(digits_split, method):
    if method == "optuna":
        pytest.importorskip("optuna")
    X_train, _, y_train, _ = digits_split
    choices = [None, Quantization(), Quantization("float16")]
    space = SearchSpace({"quantization": Categorical(choices), "lr": Real(3e-3, 3e-2, log=True)})
    options = {"random": {"n_iter": 4}, "bayes": {"n_iter": 4, "optimizer_kwargs": {"n_initial_points": 3}},
               "optuna": {"n_iter": 4}}[method]
    search = make_search(net(max_epochs=3), space, method, cv=2, random_state=0, **options)
    search.fit(X_train[:400], y_train[:400])
    tried = [params["quantization"] for params in search.cv_results_["params"]]
    assert all(t is None or isinstance(t, Quantization) for t in tried)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    best = search.best_params_["quantization"]
    summary = vars(search.best_estimator_).get("quantization_summary_")
    assert (summary is None) == (best is None)
    if best is not None:
        assert summary["method"] == best.method


def test_fused_search_trains_float_and_quantized_candidates_in_one_group(digits_split):
    X_train, _, y_train, _ = digits_split
    grid = {"quantization": [None, Quantization()], "lr": [0.01, 0.03]}
    plain = GridSearchCV(net(max_epochs=4), grid, cv=2).fit(X_train, y_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # everything fuses: no fallback warning
        fused = FusedGridSearchCV(net(max_epochs=4), grid, cv=2).fit(X_train, y_train)
    np.testing.assert_allclose(fused.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"],
                               atol=0.02)


def test_asha_promotes_quantized_candidates_and_continues_them_in_float(digits_split):
    X_train, _, y_train, _ = digits_split
    search = ASHASearchCV(net(max_epochs=9), {"quantization": [Quantization()], "lr": [0.003, 0.01, 0.03]},
                          n_iter=3, cv=2, random_state=0).fit(X_train[:600], y_train[:600])
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    best = search.best_estimator_
    assert best.quantization_summary_["method"] == "dynamic_int8" and best.n_iter_ == 9


# -- round trips -----------------------------------------------------------------------


@pytest.mark.slow
def test_joblib_round_trip_in_a_fresh_process(tmp_path, digits_split, float_and_int8):
    _, X_test, _, _ = digits_split
    _, quantized = float_and_int8
    joblib.dump(quantized, tmp_path / "q.joblib")
    np.save(tmp_path / "X.npy", X_test)
    code = textwrap.dedent(f"""
        import warnings
        warnings.simplefilter("error")  # loading a quantized model is quiet
        import joblib, numpy as np
        m = joblib.load({str(tmp_path / 'q.joblib')!r})
        np.save({str(tmp_path / 'p.npy')!r}, m.predict_proba(np.load({str(tmp_path / 'X.npy')!r})))
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), quantized.predict_proba(X_test))


@pytest.mark.parametrize("options", [dict(), dict(per_channel=True), dict(method="float16"),
                                     dict(method="bfloat16")])
@pytest.mark.parametrize("pruned", [False, True])
def test_save_and_load_rebuild_the_quantized_model_exactly(tmp_path, digits_split, options, pruned):
    X_train, X_test, y_train, y_test = digits_split
    pruning = Pruning(method="ln_structured", amount=0.5) if pruned else None
    model = net(Quantization(**options), pruning=pruning, max_epochs=3).fit(X_train, y_train)
    save(model, tmp_path / "q.skopt")
    loaded = load(tmp_path / "q.skopt")
    np.testing.assert_array_equal(loaded.predict_proba(X_test), model.predict_proba(X_test))
    assert loaded.quantization_summary_ == model.quantization_summary_
    assert loaded.get_params()["quantization"].get_params() == model.quantization.get_params()
    # training goes on from the rounded weights, and the result is quantized again
    continued = load(tmp_path / "q.skopt").partial_fit(X_train, y_train)
    assert continued.n_iter_ == model.n_iter_ + 1 and is_quantized(continued.module_)
    assert continued.quantization_summary_["method"] == model.quantization_summary_["method"]
    assert continued.score(X_test, y_test) > 0.8
    # a model read back that is fitted anew is an ordinary estimator again
    assert loaded.fit(X_train, y_train).quantization_summary_ == model.quantization_summary_


def test_save_refuses_static_int8_with_the_reason(tmp_path, digits_split):
    X_train, _, y_train, _ = digits_split
    model = net(Quantization("static_int8"), max_epochs=2).fit(X_train, y_train)
    with pytest.raises(TypeError, match="static_int8.*Use joblib"):
        save(model, tmp_path / "q.skopt")
    assert not (tmp_path / "q.skopt").exists()


def test_onnx_export_of_a_quantized_model_predicts_like_it(tmp_path, digits_split, float_and_int8):
    ort = pytest.importorskip("onnxruntime")
    _, X_test, _, _ = digits_split
    _, quantized = float_and_int8
    export_onnx(quantized, tmp_path / "q.onnx")
    session = ort.InferenceSession(str(tmp_path / "q.onnx"))
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {"X": X_test.astype(np.float32)})))
    assert np.mean(out["label"] == quantized.predict(X_test)) >= 0.99
    np.testing.assert_allclose(out["probabilities"], quantized.predict_proba(X_test), atol=0.15)


def test_onnx_export_refuses_static_int8_with_the_reason(tmp_path, digits_split):
    pytest.importorskip("onnx")
    X_train, _, y_train, _ = digits_split
    model = net(Quantization("static_int8"), max_epochs=2).fit(X_train, y_train)
    with pytest.raises(ValueError, match="static_int8"):
        export_onnx(model, tmp_path / "q.onnx")


# -- bad options and continued training ------------------------------------------------


@pytest.mark.parametrize("options, message", [
    (dict(method="int4"), r"The 'method' parameter of Quantization must be a str among"),
    (dict(per_channel="yes"), r"The 'per_channel' parameter of Quantization must be an instance of"),
    (dict(calibration_rows=0), r"The 'calibration_rows' parameter of Quantization must be an int in"),
])
def test_bad_options_get_sklearns_error_and_the_fitted_model_survives(digits_split, float_and_int8,
                                                                      options, message):
    X_train, X_test, y_train, _ = digits_split
    model = net(Quantization(), max_epochs=2).fit(X_train, y_train)
    before = model.predict_proba(X_test)
    model.set_params(quantization=Quantization(**options))
    with pytest.raises(InvalidParameterError, match=message):
        model.fit(X_train, y_train)
    np.testing.assert_array_equal(model.predict_proba(X_test), before)


def test_a_method_name_instead_of_a_spec_is_refused(digits_split):
    X_train, _, y_train, _ = digits_split
    with pytest.raises(InvalidParameterError, match="'quantization' parameter of NNClassifier must be None or a"):
        net("dynamic_int8").fit(X_train, y_train)


def test_warm_start_and_partial_fit_continue_in_float_and_quantize_again(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    model = net(Quantization(), warm_start=True, max_epochs=2).fit(X_train, y_train)
    first = model.score(X_test, y_test)
    model.fit(X_train, y_train)
    assert model.n_iter_ == 4 and is_quantized(model.module_)
    assert model.score(X_test, y_test) >= first - 0.02
    model.partial_fit(X_train, y_train)
    assert model.n_iter_ == 5 and is_quantized(model.module_)
    # pickled mid-way, it still continues
    again = pickle.loads(pickle.dumps(model)).partial_fit(X_train, y_train)
    assert again.n_iter_ == 6 and is_quantized(again.module_)


def test_without_warm_start_partial_fit_goes_on_from_the_rounded_weights(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    model = net(Quantization(), max_epochs=2).fit(X_train, y_train)
    assert "_float_module_" not in vars(model)  # no float copy in the pickle
    model.partial_fit(X_train, y_train)
    assert model.n_iter_ == 3 and is_quantized(model.module_)
    assert model.score(X_test, y_test) > 0.85
    # an int8 graph has no float form: it says what to do instead
    static = net(Quantization("static_int8"), max_epochs=2).fit(X_train, y_train)
    with pytest.raises(ValueError, match="static_int8 network without its float weights.*warm_start=True"):
        static.partial_fit(X_train, y_train)
    assert static.fit(X_train, y_train).n_iter_ == 2  # fitting anew is always possible


def test_sparse_rows_predict_like_dense_ones_and_qat_asks_for_dense(digits_split):
    import scipy.sparse as sp

    X_train, X_test, y_train, _ = digits_split
    for method in ("dynamic_int8", "static_int8"):
        model = net(Quantization(method), max_epochs=2).fit(sp.csr_matrix(X_train), y_train)
        np.testing.assert_allclose(model.predict_proba(sp.csr_matrix(X_test)), model.predict_proba(X_test),
                                   atol=1e-6)
    with pytest.raises(ValueError, match="qat_int8.*dense rows"):
        net(Quantization("qat_int8"), max_epochs=2).fit(sp.csr_matrix(X_train), y_train)


def test_a_diverging_partial_fit_without_float_weights_keeps_the_quantized_model(digits_split):
    from skopt_nn import DivergenceError

    X_train, X_test, y_train, _ = digits_split
    model = net(Quantization(), max_epochs=2).fit(X_train, y_train)
    before = model.predict_proba(X_test)
    with pytest.raises(DivergenceError):
        model.set_params(lr=1e12, optimizer="sgd").partial_fit(X_train * 1e6, y_train)
    np.testing.assert_array_equal(model.predict_proba(X_test), before)
    assert is_quantized(model.module_) and "_float_module_" not in vars(model)


def test_a_failed_continuing_fit_keeps_the_quantized_model(digits_split):
    X_train, X_test, y_train, _ = digits_split
    model = net(Quantization(), max_epochs=2, warm_start=True).fit(X_train, y_train)
    before = model.predict_proba(X_test)
    with pytest.raises(ValueError):
        model.partial_fit(X_train[:, :10], y_train)  # wrong width
    np.testing.assert_array_equal(model.predict_proba(X_test), before)
    assert is_quantized(model.module_)


# -- quantization-aware training ---------------------------------------------------------


def test_quantization_aware_training_ends_in_an_int8_graph_as_accurate_as_float(digits_split, float_and_int8):
    X_train, X_test, y_train, y_test = digits_split
    dense, _ = float_and_int8
    model = net(Quantization("qat_int8"), early_stopping=True, max_epochs=12).fit(X_train, y_train)
    assert model.quantization_summary_["method"] == "qat_int8"
    int8 = [type(m).__name__ for m in model.module_.modules() if "quantized" in type(m).__module__]
    assert len([kind for kind in int8 if kind in ("Linear", "LinearReLU")]) == 2
    assert model.score(X_test, y_test) >= dense.score(X_test, y_test) - 0.03
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X_test), model.predict_proba(X_test))


def test_quantization_aware_training_continues_with_warm_start(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    model = net(Quantization("qat_int8", per_channel=True), warm_start=True, max_epochs=2).fit(X_train, y_train)
    model.fit(X_train, y_train)
    assert model.n_iter_ == 4 and is_quantized(model.module_)
    assert model.score(X_test, y_test) > 0.85


def test_quantization_aware_training_refuses_what_it_cannot_do(digits_split, tmp_path):
    from skopt_nn.training.fused import fusable

    X_train, _, y_train, _ = digits_split
    with pytest.raises(ValueError, match="qat_int8.*pruning"):
        net(Quantization("qat_int8"), pruning=Pruning()).fit(X_train, y_train)
    with pytest.raises(ValueError, match="qat_int8.*n_ensemble"):
        net(Quantization("qat_int8"), n_ensemble=2).fit(X_train, y_train)
    assert "qat_int8" in fusable(net(Quantization("qat_int8")))
    assert fusable(net(Quantization("static_int8"))) is None
    model = net(Quantization("qat_int8"), max_epochs=1).fit(X_train, y_train)
    with pytest.raises(TypeError, match="qat_int8.*Use joblib"):
        save(model, tmp_path / "q.skopt")
    with pytest.raises(ValueError, match="qat_int8"):
        export_onnx(model, tmp_path / "q.onnx")


def test_int8_tensors_pickle_as_their_integers_scales_and_zero_points():
    from skopt_nn.training._pickling import dump_compact

    import torch

    values = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation of quantized tensors
        per_tensor = torch.quantize_per_tensor(values, 0.05, 3, torch.qint8)
        per_channel = torch.quantize_per_channel(values, torch.linspace(0.01, 0.1, 16),
                                                 torch.arange(16) % 3, 0, torch.qint8)
        for q in (per_tensor, per_channel):
            data = dump_compact(q)
            back = pickle.loads(data)
            assert back.qscheme() == q.qscheme() and back.dtype == q.dtype
            assert torch.equal(back.int_repr(), q.int_repr())
            assert torch.equal(back.dequantize(), q.dequantize())
            # no torch archive (its zip headers) around the integers
            assert len(data) < len(pickle.dumps(q))
        assert len(dump_compact(per_tensor)) < per_tensor.numel() + 256
        # a dynamic int8 layer is its sizes, int8 weight and bias: rebuilt, it computes the same
        layer = torch.ao.nn.quantized.dynamic.Linear(8, 16)
        layer.set_weight_bias(per_channel, torch.linspace(-1, 1, 16))
        data = dump_compact(layer)
        back = pickle.loads(data)
        assert torch.equal(back(values), layer(values)) and back.training == layer.training
        assert len(data) < len(pickle.dumps(layer)) - 300
