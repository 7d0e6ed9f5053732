"""sklearn's own estimator checks on every public estimator."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skopt_nn import MLP, NNClassifier, NNRegressor

# Small, fast instances; lr and epochs chosen so that the checks that demand
# a decent fit on their toy data pass.
ESTIMATORS = [
    NNClassifier(MLP((32,)), lr=0.01, max_epochs=40, random_state=0),
    NNRegressor(MLP((32,)), lr=0.01, max_epochs=60, random_state=0),
]

EXPECTED_FAILED = {}


@parametrize_with_checks(
    ESTIMATORS,
    expected_failed_checks=lambda est: EXPECTED_FAILED.get(type(est).__name__, {}),
    xfail_strict=True,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
