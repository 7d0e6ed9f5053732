"""The ``skopt-nn`` command, run through its installed entry point where it matters."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris, load_wine

from skopt_nn.cli import main


def _command():
    """The installed ``skopt-nn`` script, next to this interpreter."""
    script = Path(sys.executable).with_name("skopt-nn")
    if script.exists():
        return [str(script)]
    found = shutil.which("skopt-nn")
    if found is None:
        pytest.skip("the skopt-nn entry point is not installed (pip install -e .)")
    return [found]


def _run(*args, cwd=None, timeout=120):
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    env.pop("SKOPT_NN_TRACEBACK", None)
    return subprocess.run(
        _command() + [str(a) for a in args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout,
    )


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory):
    """The acceptance run: random search on wine through the entry point."""
    out = tmp_path_factory.mktemp("wine")
    result = _run("tune", "--data", "wine", "--search", "random", "--n-iter", 4,
                  "--cv", 3, "--max-epochs", 15, "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result


def test_demo_runs_to_the_end_and_writes_its_files(tmp_path):
    result = _run("demo", "--quick", "--out", tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "demo"
    for name in ["model.joblib", "cv_results.csv", "results.csv", "report.html",
                 "learning_curve.png", "lr_schedule.png", "sparsity.png",
                 "search_results.png", "convergence.png", "pareto_front.png"]:
        assert (out / name).stat().st_size > 0, name
    # The results table compares the teacher, a dense student, the tuned one
    # and the tuned one with int8 weights.
    for header in ["test accuracy", "sparsity", "parameters", "size on disk", "fit time", "predict 5,000 rows"]:
        assert header in result.stdout
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 5
    # the smallest model within one point of the best CV accuracy, beside the accuracy pick
    small = table.iloc[2]
    assert small["model"].startswith("student, smallest within 1 point")
    assert small["size_bytes"] <= table.iloc[3]["size_bytes"]
    assert small["cv_accuracy"] >= table.iloc[3]["cv_accuracy"] - 0.01 - 1e-9
    assert "smallest within 1 point: cv accuracy" in result.stdout
    # Numbers, with the units in the column names, not "1.7 MiB" strings.
    for column in ["test_accuracy", "sparsity", "size_bytes", "fit_seconds", "predict_seconds"]:
        assert pd.api.types.is_numeric_dtype(table[column]), column
    assert (table["size_bytes"] > 1000).all() and (table["fit_seconds"] > 0).all()
    assert (table["predict_seconds"].iloc[1:] > 0).all()
    tuned, int8 = table.iloc[-2], table.iloc[-1]
    assert int8["size_bytes"] < tuned["size_bytes"] and int8["parameters"] == tuned["parameters"]
    assert int8["test_accuracy"] >= tuned["test_accuracy"] - 0.05
    assert tuned["sparsity"] >= 0.5  # the pruning range of the demo
    # 3 candidates x 2 folds + the refit: one teacher per training set, and it says so
    assert "teacher fits: 3 for 7 student fits" in result.stdout
    assert tuned["parameters"] < table.iloc[1]["parameters"]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_tune_writes_a_model_that_predict_uses(wine_run, tmp_path):
    out, result = wine_run
    for name in ["model.joblib", "cv_results.csv", "search_results.png", "convergence.png",
                 "learning_curve.png", "report.html"]:
        assert (out / name).stat().st_size > 0, name
    assert len(pd.read_csv(out / "cv_results.csv")) == 4
    assert "best cv accuracy" in result.stdout

    frame = load_wine(as_frame=True).frame  # the target column is ignored by predict
    data = tmp_path / "wine.csv"
    frame.to_csv(data, index=False)
    predicted = _run("predict", out / "model.joblib", data)
    assert predicted.returncode == 0, predicted.stderr
    labels = pd.read_csv(pd.io.common.StringIO(predicted.stdout))["prediction"]
    assert len(labels) == len(frame)
    assert (labels.to_numpy() == frame["target"].to_numpy()).mean() > 0.8


def test_pickle_free_model_predicts_like_the_joblib_one(wine_run, tmp_path, capsys):
    out, _ = wine_run
    if not (out / "model.safetensors").exists():
        pytest.skip("safetensors is not installed")
    data = tmp_path / "wine.csv"
    load_wine(as_frame=True).data.to_csv(data, index=False)
    outputs = []
    for name in ["model.joblib", "model.safetensors"]:
        assert main(["predict", str(out / name), str(data), "--proba"]) == 0
        outputs.append(pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out)))
    assert list(outputs[0].columns) == ["proba_0", "proba_1", "proba_2"]
    np.testing.assert_allclose(outputs[0].to_numpy(), outputs[1].to_numpy(), rtol=1e-5)


def test_inspect_describes_recipe_sparsity_and_size(wine_run, capsys):
    out, _ = wine_run
    assert main(["inspect", str(out / "model.joblib")]) == 0
    text = capsys.readouterr().out
    for expected in ["NNClassifier", "lr_schedule", "pruning", "parameters", "classes", "KiB",
                     "Linear"]:
        assert expected in text


def test_inspect_says_what_quantization_did(tmp_path, capsys):
    import joblib
    from sklearn.datasets import load_iris

    from skopt_nn import MLP, NNClassifier, Quantization

    X, y = load_iris(return_X_y=True)
    model = NNClassifier(MLP((32,)), max_epochs=2, random_state=0, quantization=Quantization()).fit(X, y)
    joblib.dump(model, tmp_path / "q.joblib")
    assert main(["inspect", str(tmp_path / "q.joblib")]) == 0
    text = capsys.readouterr().out
    assert "quantization    Quantization()" in text
    assert "quantized       dynamic_int8, 2 layers: weights" in text


def _error_line(capsys, argv):
    status = main(argv)
    err = capsys.readouterr().err.strip()
    return status, err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["tune", "--data", "no_such.csv"], "No such file: no_such.csv"),
        (["tune", "--data", "iris", "--target", "colour"], "--target 'colour' is not a column"),
        (["tune", "--data", "mnist"], "--data must be one of digits"),
        (["predict", "missing.joblib", "x.csv"], "No such model file"),
        (["inspect", "missing.safetensors"], "No such model file"),
    ],
)
def test_input_mistakes_are_one_line_and_exit_2(capsys, tmp_path, argv, expected):
    os.chdir(tmp_path)
    status, err = _error_line(capsys, argv)
    assert status == 2
    assert expected in err
    assert len(err.splitlines()) == 1 and err.startswith("skopt-nn: error:")


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("space.toml", "[lr]\nlow = 0.1\nhigh = 0.01\n", "'lr': Real needs low < high"),
        ("space.toml", "lr = = 3\n", "not valid TOML"),
        ("space.json", '{"lr": {"low": 0.001}}', "'lr' needs both low and high"),
        ("space.json", '{"colour": ["red"]}', "Invalid parameter 'colour'"),
        ("space.yaml", "lr: 1", "must end in .toml or .json"),
        ("space.json", '{"lr": {"low": 0.001, "high": 0.1, "scale": "log"}}', "unknown key(s) ['scale']"),
    ],
)
def test_bad_space_file_is_one_clear_line(capsys, tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    status, err = _error_line(
        capsys, ["tune", "--data", "iris", "--space", str(path), "--out", str(tmp_path / "o")]
    )
    assert status == 2
    assert expected in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_an_error_in_a_subprocess_shows_no_traceback(tmp_path):
    result = _run("tune", "--data", tmp_path / "absent.csv", "--out", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"skopt-nn: error: No such file: {tmp_path / 'absent.csv'}"


def test_toml_and_json_space_files_describe_the_same_space(tmp_path):
    from skopt_nn import Categorical, Integer, LRSchedule, Pruning, Real
    from skopt_nn.cli._io import read_space_file

    (tmp_path / "s.toml").write_text(
        '[params]\nmax_epochs = 4\npruning = {method = "l1_unstructured", amount = 0.5}\n'
        'lr_schedule = {name = "cosine", warmup_epochs = 1}\n'
        "[space]\n"
        "lr = {low = 1e-3, high = 1e-1, log = true}\n"
        "batch_size = {low = 16, high = 64}\n"
        'module__hidden_layer_sizes = [[16], [32, 16]]\n'
        'optimizer = {choices = ["adam", "sgd"]}\n'
    )
    (tmp_path / "s.json").write_text(json.dumps({
        "params": {"max_epochs": 4, "pruning": {"method": "l1_unstructured", "amount": 0.5},
                   "lr_schedule": {"name": "cosine", "warmup_epochs": 1}},
        "space": {"lr": {"low": 1e-3, "high": 1e-1, "log": True},
                  "batch_size": {"type": "integer", "low": 16, "high": 64},
                  "module__hidden_layer_sizes": [[16], [32, 16]],
                  "optimizer": ["adam", "sgd"]},
    }))
    toml_space, toml_fixed = read_space_file(str(tmp_path / "s.toml"))
    json_space, json_fixed = read_space_file(str(tmp_path / "s.json"))
    assert dict(toml_space) == dict(json_space) == {
        "lr": Real(1e-3, 1e-1, log=True),
        "batch_size": Integer(16, 64),
        "module__hidden_layer_sizes": Categorical([(16,), (32, 16)]),  # tuples, as MLP needs
        "optimizer": Categorical(["adam", "sgd"]),
    }
    assert toml_fixed["pruning"].get_params() == Pruning(amount=0.5).get_params()
    assert toml_fixed["lr_schedule"] == json_fixed["lr_schedule"] == LRSchedule("cosine", warmup_epochs=1)


def test_tune_follows_a_space_file_with_fixed_recipe(tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text(
        "[params]\nmax_epochs = 3\npruning = {amount = 0.5}\n"
        "[space]\nlr = {low = 1e-3, high = 1e-1, log = true}\n"
        'module__hidden_layer_sizes = [[8], [16]]\n'
    )
    out = tmp_path / "out"
    status = main(["tune", "--data", "iris", "--space", str(space), "--search", "grid",
                   "--cv", "2", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    results = pd.read_csv(out / "cv_results.csv")
    assert len(results) == 3 * 2  # three lr grid points x two layer sizes
    assert (out / "sparsity.png").stat().st_size > 0  # the fixed pruning was applied


@pytest.mark.parametrize("search", ["bayes", "halving", "optuna"])
def test_tune_runs_every_search_engine(tmp_path, capsys, search):
    status = main(["tune", "--data", "iris", "--search", search, "--n-iter", "3", "--cv", "2",
                   "--max-epochs", "3", "--out", str(tmp_path)])
    assert status == 0, capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "cv_results.csv")) >= 3


def test_tune_fuses_a_random_search_and_refuses_fuse_for_bayes(tmp_path, capsys):
    status = main(["tune", "--data", "iris", "--search", "random", "--fuse", "--n-iter", "3", "--cv", "2",
                   "--max-epochs", "3", "--out", str(tmp_path)])
    assert status == 0, capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "cv_results.csv")) == 3
    status = main(["tune", "--data", "iris", "--search", "bayes", "--fuse", "--out", str(tmp_path)])
    assert status != 0
    assert "--fuse applies to --search grid, random or asha" in capsys.readouterr().err


def test_tune_reads_a_csv_with_categorical_columns_and_infers_the_task(tmp_path, capsys):
    X, y = load_iris(return_X_y=True, as_frame=True)
    frame = X.assign(colour=np.where(X.iloc[:, 0] > 5.8, "red", "blue"),
                     species=np.array(["setosa", "versicolor", "virginica"])[y])
    frame.iloc[3, 1] = np.nan  # imputed, not fatal
    data = tmp_path / "flowers.csv"
    frame.to_csv(data, index=False)
    status = main(["tune", "--data", str(data), "--search", "random", "--n-iter", "2",
                   "--cv", "2", "--max-epochs", "5", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert status == 0
    assert "task: classification" in out and "one-hot encoded" in out
    assert main(["predict", str(tmp_path / "o" / "model.joblib"), str(data)]) == 0
    predicted = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))["prediction"]
    assert set(predicted) <= {"setosa", "versicolor", "virginica"}


def test_regression_target_is_predicted_in_its_own_units(tmp_path, capsys):
    status = main(["tune", "--data", "diabetes", "--search", "random", "--n-iter", "2",
                   "--cv", "2", "--max-epochs", "5", "--out", str(tmp_path)])
    assert status == 0
    assert "best cv R^2" in capsys.readouterr().out
    from sklearn.datasets import load_diabetes

    data = tmp_path / "d.csv"
    load_diabetes(as_frame=True).data.to_csv(data, index=False)
    assert main(["predict", str(tmp_path / "model.joblib"), str(data)]) == 0
    predicted = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))["prediction"]
    assert 50 < predicted.mean() < 250  # disease progression units, not standardised
    assert main(["predict", str(tmp_path / "model.joblib"), str(data), "--proba"]) == 2


def test_predict_names_the_columns_a_csv_lacks(wine_run, tmp_path, capsys):
    out, _ = wine_run
    data = tmp_path / "partial.csv"
    load_wine(as_frame=True).data.drop(columns=["alcohol"]).to_csv(data, index=False)
    status, err = _error_line(capsys, ["predict", str(out / "model.joblib"), str(data)])
    assert status == 2 and "lacks column(s) ['alcohol']" in err


@pytest.mark.slow
def test_tune_runs_its_fits_on_a_dask_scheduler(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=":0") as cluster:
        status = main(["tune", "--data", "iris", "--search", "random", "--n-iter", "2",
                       "--cv", "2", "--max-epochs", "2", "--backend", "dask",
                       "--scheduler", cluster.scheduler_address, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0
    assert f"Dask: 1 workers at {cluster.scheduler_address}" in out
    assert len(pd.read_csv(tmp_path / "cv_results.csv")) == 2


@pytest.mark.slow
def test_tune_runs_asha_on_ray_and_refuses_ray_for_other_searches(tmp_path, capsys):
    ray = pytest.importorskip("ray")
    try:
        status = main(["tune", "--data", "iris", "--search", "asha", "--backend", "ray", "--n-iter", "4",
                       "--cv", "2", "--max-epochs", "3", "--out", str(tmp_path)])
        assert status == 0, capsys.readouterr().err
        assert len(pd.read_csv(tmp_path / "cv_results.csv")) == 4
        assert not ray.is_initialized()  # the Ray the search started is stopped
    finally:
        ray.shutdown()
    status, err = _error_line(capsys, ["tune", "--data", "iris", "--search", "random", "--backend", "ray",
                                       "--out", str(tmp_path)])
    assert status == 2 and "--backend ray applies to --search asha" in err


def test_bad_dask_scheduler_address_is_one_line(tmp_path, capsys):
    pytest.importorskip("distributed")
    status, err = _error_line(capsys, ["tune", "--data", "iris", "--backend", "dask",
                                       "--scheduler", "foo://bar", "--out", str(tmp_path)])
    assert status == 2 and "Cannot reach the Dask scheduler at foo://bar" in err
    assert len(err.splitlines()) == 1


def test_tune_with_asha_keeps_the_requested_epochs_and_says_what_it_saved(tmp_path, capsys):
    import joblib

    status = main(["tune", "--data", "iris", "--search", "asha", "--n-iter", "6", "--cv", "2",
                   "--max-epochs", "9", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0
    assert "epochs trained:" in out
    results = pd.read_csv(tmp_path / "cv_results.csv")
    assert len(results) == 6 and results["epochs"].max() == 9
    assert joblib.load(tmp_path / "model.joblib")[-1].max_epochs == 9
    assert (tmp_path / "rungs.png").stat().st_size > 0


@pytest.mark.parametrize("search", ["asha", "random"])
def test_tune_trades_objectives_and_draws_the_front(tmp_path, capsys, search):
    import joblib

    from skopt_nn import within

    status = main(["tune", "--data", "iris", "--search", search, "--n-iter", "6", "--cv", "2", "--max-epochs", "3",
                   "--objectives", "accuracy,neg_model_bytes", "--within", "0.05", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0
    assert "refit pick (within('accuracy', tol=0.05, minimize='neg_model_bytes')): accuracy" in out
    assert "Pareto front:" in out
    results = pd.read_csv(tmp_path / "cv_results.csv")
    assert {"mean_test_accuracy", "mean_test_neg_model_bytes"} <= set(results)
    assert (tmp_path / "pareto_front.png").stat().st_size > 0
    # the saved model is the cheapest candidate within 0.05 of the best accuracy
    pick = within("accuracy", tol=0.05, minimize="neg_model_bytes")(
        {"params": [{}] * len(results), **{k: results[k].to_numpy() for k in results if k.startswith("mean_test_")}})
    model = joblib.load(tmp_path / "model.joblib")
    assert model[-1].get_params()["lr"] == pytest.approx(results["param_nn__lr"][pick])


@pytest.mark.parametrize("argv, expected", [
    (["--within", "0.01"], "--within applies with --objectives"),
    (["--objectives", "accuracy,f1_macro", "--within", "0.01"], "--within needs a score and a cost"),
    (["--objectives", "accuracy"], "The 'objectives' parameter of make_search must be a list"),
])
def test_tune_objectives_mistakes_are_one_line(capsys, tmp_path, argv, expected):
    status, err = _error_line(capsys, ["tune", "--data", "iris", "--out", str(tmp_path), *argv])
    assert status == 2
    assert expected in err and len(err.splitlines()) == 1
