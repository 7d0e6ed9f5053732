"""sample_weight, class_weight, metadata routing and n_iter_no_change=None."""

import numpy as np
import pytest
import sklearn
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import AdaBoostClassifier, AdaBoostRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GridSearchCV, cross_validate, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skopt_nn import MLP, Distillation, NNClassifier, NNRegressor, Pruning
from skopt_nn.specs.distillation import DistillationLoss


@pytest.fixture(scope="module")
def clf_data():
    X, y = make_classification(n_samples=200, n_features=6, n_informative=4, n_classes=3,
                               n_clusters_per_class=1, random_state=0)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=150, n_features=5, noise=5.0, random_state=0)
    return X, y


def small_clf(**params):
    return NNClassifier(MLP((16,)), lr=0.01, max_epochs=15, batch_size=32, random_state=0).set_params(**params)


def small_reg(**params):
    return NNRegressor(MLP((16,)), lr=0.01, max_epochs=15, batch_size=32, random_state=0).set_params(**params)


def full_batch(est, **params):
    # One batch per epoch, every epoch run: weighting and repeating rows are
    # then the same training run (see skopt_nn.specs._losses).
    return est.set_params(optimizer="sgd", lr=0.1, batch_size=10_000, n_iter_no_change=None, **params)


# -- sample_weight ---------------------------------------------------------
@pytest.mark.parametrize("recipe", [{}, {"early_stopping": True}, {"pruning": Pruning(amount=0.5)}])
def test_unit_weights_give_the_very_same_model(clf_data, reg_data, recipe):
    X, y = clf_data
    plain = small_clf(**recipe).fit(X, y)
    ones = small_clf(**recipe).fit(X, y, sample_weight=np.ones(len(y)))
    assert_array_equal(ones.predict_proba(X), plain.predict_proba(X))
    assert ones.loss_curve_ == plain.loss_curve_
    X, y = reg_data
    plain = small_reg(**recipe).fit(X, y)
    ones = small_reg(**recipe).fit(X, y, sample_weight=np.full(len(y), 3.0))  # only ratios matter
    assert_array_equal(ones.predict(X), plain.predict(X))


def test_unit_weights_give_the_very_same_distilled_model(clf_data):
    X, y = clf_data
    recipe = Distillation(LogisticRegression(), augment="mixup", augment_ratio=0.5)
    plain = small_clf(distillation=recipe).fit(X, y)
    ones = small_clf(distillation=recipe).fit(X, y, sample_weight=np.ones(len(y)))
    assert_array_equal(ones.predict_proba(X), plain.predict_proba(X))


@pytest.mark.parametrize("make", [small_clf, small_reg])
def test_zero_weight_rows_are_left_out(clf_data, reg_data, make):
    X, y = clf_data if make is small_clf else reg_data
    keep = np.random.RandomState(1).rand(len(y)) > 0.3
    weighted = full_batch(make()).fit(X, y, sample_weight=keep.astype(float))
    removed = full_batch(make()).fit(X[keep], y[keep])
    method = "predict_proba" if make is small_clf else "predict"
    expected = getattr(removed, method)(X)
    # float32 rounding is relative to the outputs' scale (hundreds for the
    # regressor's targets), so near-zero outputs get that scale's absolute slack
    scale = max(1.0, float(np.abs(expected).max()))
    assert_allclose(getattr(weighted, method)(X), expected, rtol=1e-4, atol=1e-6 * scale)


def test_partial_fit_weights_zero_rows_are_left_out(clf_data):
    X, y = clf_data
    keep = np.arange(len(y)) % 3 != 0
    weighted = full_batch(small_clf()).partial_fit(X, y, classes=[0, 1, 2], sample_weight=keep * 1.0)
    removed = full_batch(small_clf()).partial_fit(X[keep], y[keep], classes=[0, 1, 2])
    for _ in range(3):
        weighted.partial_fit(X, y, sample_weight=keep * 1.0)
        removed.partial_fit(X[keep], y[keep])
    assert_allclose(weighted.predict_proba(X), removed.predict_proba(X), rtol=1e-4, atol=1e-5)


def test_weights_follow_their_rows_through_shuffling_and_the_validation_split(clf_data):
    # 40 % of the rows get a wrong label and weight zero: a model whose weights
    # followed their rows learns the clean labels, and its validation score
    # counts the clean validation rows only.
    X, y = clf_data
    rng = np.random.RandomState(0)
    noisy = rng.rand(len(y)) < 0.4
    y_noisy = np.where(noisy, (y + 1) % 3, y)
    params = dict(early_stopping=True, validation_fraction=0.3, max_epochs=40, n_iter_no_change=None)
    weighted = small_clf(**params).fit(X, y_noisy, sample_weight=(~noisy) * 1.0)
    plain = small_clf(**params).fit(X, y_noisy)
    assert (weighted.predict(X) == y).mean() > 0.85
    assert (weighted.predict(X) == y).mean() > (plain.predict(X) == y).mean() + 0.1
    # the clean validation rows are scored, not the noisy ones
    assert weighted.history_[-1, "valid_score"] > 0.75
    assert weighted.history_[-1, "valid_score"] > plain.history_[-1, "valid_score"] + 0.2


def test_all_zero_validation_weights_are_refused(clf_data):
    X, y = clf_data
    w = np.zeros(len(y))
    w[0] = 1.0  # a row that random_state=0 puts in the training rows
    with pytest.raises(ValueError, match="sample weights for validation set are all zero"):
        small_clf(early_stopping=True).fit(X, y, sample_weight=w)


@pytest.mark.parametrize(
    "weight, message",
    [
        (-np.ones(200), "Negative values in data passed to `sample_weight`"),
        (np.ones(3), r"sample_weight.shape == \(3,\), expected \(200,\)"),
        (np.zeros(200), "Sample weights must contain at least one non-zero number"),
    ],
)
def test_bad_weights_give_sklearns_errors_and_keep_the_fitted_model(clf_data, weight, message):
    X, y = clf_data
    clf = small_clf(max_epochs=2).fit(X, y)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match=message):
        clf.fit(X, y, sample_weight=weight)
    assert_array_equal(clf.predict_proba(X), before)


def test_distillation_loss_weight_equals_repeated_rows():
    torch.manual_seed(0)
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    y = torch.tensor([0, 2, 1])
    w = torch.tensor([2.0, 1.0, 0.0])
    rows = torch.tensor([0, 0, 1])
    for task, target in (("classification", y), ("regression", torch.randn(3, 4))):
        loss = DistillationLoss(task, temperature=2.0, alpha=0.3)
        weighted = loss(s, (target, t, w))
        repeated = loss(s[rows], (target[rows], t[rows]))
        assert torch.isclose(weighted, repeated), task


def test_teacher_fitted_inside_fit_gets_the_weights(clf_data):
    X, y = clf_data
    w = np.where(y == 2, 0.0, 1.0)
    recipe = Distillation(LogisticRegression(), keep_teacher=True, augment="mixup")
    student = small_clf(distillation=recipe, early_stopping=True, max_epochs=30)
    student.fit(X, y, sample_weight=w)
    # a teacher that never saw class 2 rows with any weight does not predict it,
    # and neither does its student, taught on weighted real and synthetic rows
    assert not (student.teacher_.predict(X) == 2).any()
    assert not (student.predict(X) == 2).any()
    assert (student.predict(X) == y)[y != 2].mean() > 0.85


# -- class_weight ----------------------------------------------------------
def test_balanced_class_weight_raises_balanced_accuracy():
    X, y = make_classification(n_samples=600, n_features=5, n_informative=3, weights=[0.95],
                               class_sep=0.7, flip_y=0, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
    scores = {}
    for class_weight in (None, "balanced"):
        model = make_pipeline(StandardScaler(), small_clf(class_weight=class_weight, max_epochs=30))
        model.fit(X_train, y_train)
        scores[class_weight] = balanced_accuracy_score(y_test, model.predict(X_test))
    assert scores["balanced"] > scores[None] + 0.05


def test_class_with_weight_zero_is_never_predicted(clf_data):
    X, y = clf_data
    clf = small_clf(class_weight={2: 0.0}, max_epochs=30).fit(X, y)
    assert list(clf.classes_) == [0, 1, 2]
    assert not (clf.predict(X) == 2).any()
    # and the other classes are learnt as usual
    assert (clf.predict(X) == y)[y != 2].mean() > 0.85


def test_class_weight_multiplies_sample_weight(clf_data):
    X, y = clf_data
    rng = np.random.RandomState(0)
    w = rng.uniform(0.5, 2.0, len(y))
    by_class = small_clf(class_weight={0: 3.0}).fit(X, y, sample_weight=w)
    by_rows = small_clf().fit(X, y, sample_weight=w * np.where(y == 0, 3.0, 1.0))
    assert_array_equal(by_class.predict_proba(X), by_rows.predict_proba(X))


def test_string_labels_take_class_weight_by_label(clf_data):
    X, y = clf_data
    labels = np.array(["ant", "bee", "cat"])[y]
    clf = small_clf(class_weight={"cat": 0.0}, max_epochs=30).fit(X, labels)
    assert "cat" not in set(clf.predict(X))


def test_class_weight_errors_are_sklearns(clf_data):
    X, y = clf_data
    with pytest.raises(InvalidParameterError, match="'class_weight' parameter of NNClassifier"):
        small_clf(class_weight="balance").fit(X, y)
    with pytest.raises(ValueError, match="class_weight 'balanced' is not supported for partial_fit"):
        small_clf(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
    small_clf(class_weight={0: 2.0}).partial_fit(X, y, classes=[0, 1, 2])  # a dict is fine
    with pytest.raises(ValueError, match="not in class_weight"):
        small_clf(class_weight={0: 1.0, 7: 2.0}).fit(X, y)


# -- with sklearn's meta-estimators --------------------------------------
def test_routed_weights_reach_the_network_through_pipeline_and_grid_search(clf_data):
    X, y = clf_data
    w = np.where(y == 2, 0.0, 1.0)
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(
            StandardScaler().set_fit_request(sample_weight=False),
            small_clf(max_epochs=20).set_fit_request(sample_weight=True).set_score_request(
                sample_weight=True  # the CV scores weigh the rows too
            ),
        )
        search = GridSearchCV(pipe, {"nnclassifier__lr": [0.01, 0.02]}, cv=2)
        search.fit(X, y, sample_weight=w)
        result = cross_validate(pipe, X, y, cv=2, params={"sample_weight": w}, return_estimator=True)
    assert not sklearn.get_config()["enable_metadata_routing"]

    # the refitted model is the pipeline fitted with the weights by hand
    direct = small_clf(max_epochs=20, lr=search.best_params_["nnclassifier__lr"])
    direct = make_pipeline(StandardScaler(), direct).fit(X, y, nnclassifier__sample_weight=w)
    assert_array_equal(search.predict_proba(X), direct.predict_proba(X))
    assert not (search.predict(X) == 2).any()
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    for fitted in result["estimator"]:
        assert not (fitted.predict(X) == 2).any()


def test_adaboost_boosts_networks(clf_data, reg_data):
    X, y = clf_data
    boost = AdaBoostClassifier(small_clf(max_epochs=5), n_estimators=3, random_state=0).fit(X, y)
    assert len(boost.estimators_) >= 2
    assert boost.score(X, y) > 0.8
    X, y = reg_data
    boost = AdaBoostRegressor(small_reg(max_epochs=10), n_estimators=3, random_state=0).fit(X, y)
    assert boost.score(X, y) > 0.5


def test_calibration_with_weights(clf_data):
    X, y = clf_data
    w = np.where(y == 2, 0.2, 1.0)
    calibrated = CalibratedClassifierCV(small_clf(), cv=2).fit(X, y, sample_weight=w)
    proba = calibrated.predict_proba(X)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert calibrated.score(X, y) > 0.8


# -- n_iter_no_change=None -------------------------------------------------
@pytest.mark.parametrize("early_stopping", [False, True])
def test_no_plateau_stop_runs_every_epoch(clf_data, early_stopping):
    X, y = clf_data
    # A tolerance no epoch can beat: the plateau stop would end training
    # after n_iter_no_change epochs.
    stopped = small_clf(tol=1e3, n_iter_no_change=2, early_stopping=early_stopping).fit(X, y)
    assert stopped.n_iter_ < 15
    full = small_clf(tol=1e3, n_iter_no_change=None, early_stopping=early_stopping).fit(X, y)
    assert full.n_iter_ == full.max_epochs == 15
    assert len(full.loss_curve_) == 15


def test_n_iter_no_change_zero_is_refused(clf_data):
    X, y = clf_data
    with pytest.raises(InvalidParameterError, match="'n_iter_no_change' parameter"):
        small_clf(n_iter_no_change=0).fit(X, y)
