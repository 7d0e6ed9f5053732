"""sklearn's own estimator checks on every public estimator."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.utils import shuffle
from sklearn.utils.estimator_checks import parametrize_with_checks

from skopt_nn import MLP, NNClassifier, NNRegressor, Quantization

# Small, fast instances; lr and epochs chosen so that the checks that demand
# a decent fit on their toy data pass. The default instances are checked too.
ESTIMATORS = [
    NNClassifier(MLP((32,)), lr=0.01, max_epochs=40, random_state=0),
    NNRegressor(MLP((32,)), lr=0.01, max_epochs=60, random_state=0),
    NNClassifier(random_state=0),
    NNRegressor(random_state=0),
    # a deep ensemble: three seeds trained fused, probabilities averaged
    NNClassifier(MLP((32,)), lr=0.01, max_epochs=40, random_state=0, n_ensemble=3),
    # int8 weights: fit, partial_fit, predict and every check on the quantized model
    NNClassifier(MLP((32,)), lr=0.01, max_epochs=40, random_state=0, quantization=Quantization()),
    NNRegressor(MLP((32,)), lr=0.01, max_epochs=60, random_state=0, quantization=Quantization()),
]

# Training runs in float32. With one batch per epoch (every instance above
# has batch_size >= the check's rows), integer weights and repeated rows give
# the same model up to float32 rounding: the sums over 15 weighted rows and
# over their ~30 copies round differently, and the predictions then differ
# in the 7th significant digit, where sklearn's check compares at
# rtol=1e-7 (float64 precision). test_weights_equal_repeated_rows below runs
# the same comparison at float32 precision.
_FLOAT32 = (
    "float32 training: integer weights and repeated rows agree up to float32 rounding "
    "(about 1e-6 relative), sklearn compares at rtol=1e-7; checked at float32 precision "
    "by test_weights_equal_repeated_rows"
)
# dynamic_int8 quantizes each batch's activations with that batch's range,
# so a row's outputs move (about 1e-3) with the other rows of its batch.
_PER_BATCH = (
    "dynamic_int8 rounds activations with each batch's own range: outputs on a subset "
    "differ from those on the whole set by the rounding (static_int8 has fixed ranges)"
)
EXPECTED_FAILED = {
    "NNClassifier": {
        "check_sample_weight_equivalence_on_dense_data": _FLOAT32,
        "check_sample_weight_equivalence_on_sparse_data": _FLOAT32,
    },
    "NNRegressor": {
        "check_sample_weight_equivalence_on_dense_data": _FLOAT32,
        "check_sample_weight_equivalence_on_sparse_data": _FLOAT32,
    },
}


def _expected_failures(est):
    failures = dict(EXPECTED_FAILED.get(type(est).__name__, {}))
    if est.quantization is not None:
        failures["check_methods_subset_invariance"] = _PER_BATCH
        # Whether the int8 rounding of the weights absorbs the float32
        # difference depends on the CPU's kernels: see the test below.
        failures = {k: v for k, v in failures.items() if not k.startswith("check_sample_weight_equivalence")}
    return failures


def _undecided(estimator, check):
    """The checks whose outcome the CPU decides rather than the estimator.

    With int8 weights, the float32 difference between weighted and repeated
    rows (see ``_FLOAT32``) is sometimes rounded away and sometimes not,
    depending on the matrix kernels this CPU's torch build runs; either
    outcome is correct, so such a check may pass or fail (xfail) but is not
    required to fail.
    """
    name = getattr(check, "func", check).__name__
    return estimator.quantization is not None and name.startswith("check_sample_weight_equivalence")


@pytest.mark.slow
@parametrize_with_checks(
    ESTIMATORS,
    expected_failed_checks=_expected_failures,
    xfail_strict=True,
)
def test_sklearn_compatible_estimator(estimator, check):
    if not _undecided(estimator, check):
        check(estimator)
        return
    try:
        check(estimator)
    except AssertionError:
        pytest.xfail(_FLOAT32)


# The settings under which weighting and repeating are the same training run,
# as sklearn checks its own MLP with chosen solvers: one batch per epoch
# (batch_size above the number of rows), every epoch run (no plateau stop,
# whose tolerance test could flip on a rounding difference).
EQUIVALENCE = [
    NNClassifier(random_state=0, n_iter_no_change=None, max_epochs=30),
    NNClassifier(MLP((16,)), optimizer="sgd", lr=0.1, batch_size=1000, n_iter_no_change=None,
                 max_epochs=30, random_state=0),
    NNRegressor(random_state=0, n_iter_no_change=None, max_epochs=30),
    NNRegressor(MLP((16,)), optimizer="sgd", lr=0.05, batch_size=1000, n_iter_no_change=None,
                max_epochs=30, random_state=0),
]


@pytest.mark.parametrize("estimator", EQUIVALENCE, ids=lambda e: f"{type(e).__name__}-{e.optimizer}")
def test_weights_equal_repeated_rows(estimator):
    # sklearn's check_sample_weight_equivalence_on_dense_data, compared at
    # float32 precision: weights 0..4 against rows removed or repeated.
    rng = np.random.RandomState(42)
    X = rng.rand(15, 30)
    y = rng.randint(0, 3, size=15)
    sw = rng.randint(0, 5, size=15)
    X_rep, y_rep = X.repeat(sw, axis=0), y.repeat(sw)
    Xw, yw, sww = shuffle(X, y, sw, random_state=0)
    if isinstance(estimator, NNRegressor):
        y_rep, yw = y_rep.astype(float), yw.astype(float)
    repeated = estimator.__sklearn_clone__().fit(X_rep, y_rep)
    weighted = estimator.__sklearn_clone__().fit(Xw, yw, sample_weight=sww)
    method = "predict_proba" if hasattr(estimator, "predict_proba") else "predict"
    a, b = getattr(repeated, method)(X), getattr(weighted, method)(X)
    assert_allclose(b, a, rtol=2e-5, atol=1e-6)
    # and the training moved the model: the comparison is not between two
    # untrained networks
    untrained = estimator.__sklearn_clone__().set_params(max_epochs=1).fit(X_rep, y_rep)
    assert np.abs(getattr(untrained, method)(X) - a).max() > 1e-3
