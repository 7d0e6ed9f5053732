"""Knowledge distillation: leak-free teachers, soft targets, transfer sets."""

import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import load_diabetes, load_iris, make_classification
from sklearn.ensemble import (
    HistGradientBoostingClassifier, HistGradientBoostingRegressor, RandomForestClassifier,
)
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression, RidgeClassifier
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from skorch import NeuralNetClassifier
from torch import nn

from skopt_nn import MLP, NNClassifier, NNRegressor
from skopt_nn.search import make_search
from skopt_nn.specs.distillation import Distillation, DistillationLoss, clear_teacher_cache
from skopt_nn.specs.schedules import SCHEDULES

# What every RecordingTeacher did, across clones: sklearn clones the teacher
# for every fold, so the record has to live outside the instances.
FITS = []
SCORED_ROWS = []


@pytest.fixture(autouse=True)
def _clear_records():
    FITS.clear()
    SCORED_ROWS.clear()
    clear_teacher_cache()  # teachers fitted by another test are not this test's


class RecordingTeacher(ClassifierMixin, BaseEstimator):
    """Logistic regression that records the rows it is fitted on and scores."""

    def __init__(self, C=1.0):
        self.C = C

    def fit(self, X, y):
        FITS.append(np.array(X, copy=True))
        self.model_ = LogisticRegression(C=self.C, max_iter=1000).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        SCORED_ROWS.append(len(X))
        return self.model_.predict_proba(X)

    def predict(self, X):
        return self.model_.predict(X)


class WeightedTeacher(ClassifierMixin, BaseEstimator):
    """Logistic regression that takes sample weights and a random state, and records its fits."""

    def __init__(self, C=1.0, random_state=None):
        self.C = C
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        FITS.append((np.array(X, copy=True), None if sample_weight is None else np.array(sample_weight),
                     self.random_state, self.C))
        self.model_ = LogisticRegression(C=self.C, max_iter=1000).fit(X, y, sample_weight=sample_weight)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


class ReversedClassesTeacher(ClassifierMixin, BaseEstimator):
    """A classifier whose ``classes_`` (and probability columns) are not sorted."""

    def fit(self, X, y):
        self.model_ = LogisticRegression(max_iter=1000).fit(X, y)
        self.classes_ = self.model_.classes_[::-1]
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)[:, ::-1]

    def predict(self, X):
        return self.model_.predict(X)


class SkorchModule(nn.Module):
    def __init__(self, n_in=4, n_out=3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, 16), nn.ReLU(), nn.Linear(16, n_out))

    def forward(self, X):
        return self.net(X)


def _student(teacher, **kw):
    distill = {k: kw.pop(k) for k in list(kw) if k in ("alpha", "temperature", "augment",
                                                      "augment_ratio", "noise_scale", "keep_teacher",
                                                      "reuse_teacher")}
    params = dict(module=MLP((16,)), lr=0.02, max_epochs=30, random_state=0)
    params.update(kw)
    return NNClassifier(**params, distillation=Distillation(teacher, **distill))


def _row_index(X):
    return {row.tobytes(): i for i, row in enumerate(np.asarray(X))}


@pytest.fixture(scope="module")
def unique_rows():
    X, y = make_classification(n_samples=150, n_features=5, n_informative=4, n_redundant=0,
                               n_classes=3, random_state=0)
    return X.astype(np.float32), y


def test_teacher_is_fitted_once_per_fold_on_that_folds_training_rows(unique_rows):
    X, y = unique_rows
    student = _student(RecordingTeacher(), max_epochs=5, early_stopping=True)
    cross_val_score(student, X, y, cv=3)

    index = _row_index(X)
    seen = [sorted(index[row.tobytes()] for row in rows) for rows in FITS]
    expected = [sorted(train) for train, _ in StratifiedKFold(3).split(X, y)]
    assert seen == expected  # one fit per fold, on exactly its training rows
    for rows, (_, test) in zip(seen, StratifiedKFold(3).split(X, y)):
        assert not set(rows) & set(test)


def test_frozen_teacher_is_never_refitted(unique_rows):
    X, y = unique_rows
    teacher = FrozenEstimator(RecordingTeacher().fit(X, y))
    coef = teacher.estimator.model_.coef_.copy()
    student = _student(teacher, max_epochs=5)

    student.fit(X, y)
    cross_val_score(student, X, y, cv=3)

    assert len(FITS) == 1  # only the fit before freezing
    assert len(SCORED_ROWS) == 4  # one pass per student fit, still the same model
    np.testing.assert_array_equal(teacher.estimator.model_.coef_, coef)


def test_frozen_teacher_is_scored_once_per_set_of_rows_across_fits(unique_rows):
    X, y = unique_rows
    teacher = FrozenEstimator(RecordingTeacher().fit(X, y))
    student = _student(teacher, max_epochs=3)
    student.fit(X, y)
    student.fit(X, y)
    # 2 learning rates x 3 folds and a refit on X: the folds' rows are scored once each
    GridSearchCV(student, {"lr": [0.01, 0.02]}, cv=3).fit(X, y)
    folds = sorted(len(train) for train, _ in StratifiedKFold(3).split(X, y))
    assert sorted(SCORED_ROWS) == sorted([len(X)] + folds)

    _student(teacher, max_epochs=3, reuse_teacher=False).fit(X, y)
    assert len(SCORED_ROWS) == 5  # reuse off: scored in that fit again


def test_frozen_teacher_refitted_in_place_is_scored_again(iris):
    X, y = iris
    inner = LogisticRegression(max_iter=1000).fit(X, y)
    teacher = FrozenEstimator(inner)
    student = _student(teacher, alpha=1.0, max_epochs=60)
    assert np.mean(student.fit(X, y).predict(X) == y) >= 0.9
    inner.fit(X, (y + 1) % 3)  # the model under the frozen wrapper learns shifted labels
    assert np.mean(student.fit(X, y).predict(X) == (y + 1) % 3) >= 0.9


def test_nn_module_teacher_changed_in_place_is_scored_again(iris):
    X, y = iris
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    spec = Distillation(module, temperature=1.0)

    def scores():
        return spec._prepare(X, y, task="classification", classes=np.arange(3))[0]

    first = scores()
    np.testing.assert_array_equal(scores(), first)  # the same module and rows: the kept scores
    with torch.no_grad():
        module[2].bias.add_(torch.tensor([5.0, 0.0, 0.0]))  # as an optimizer step would, in place
    fresh = Distillation(module, temperature=1.0, reuse_teacher=False)._prepare(
        X, y, task="classification", classes=np.arange(3))[0]
    np.testing.assert_allclose(scores(), fresh)
    assert not np.allclose(fresh, first)


def test_frozen_pipeline_teacher_trained_further_in_place_is_scored_again(iris):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), NNClassifier(MLP((8,)), max_epochs=3, random_state=0)).fit(X, y)
    spec = Distillation(FrozenEstimator(pipe), temperature=1.0)

    def scores(reuse=True):
        return spec.set_params(reuse_teacher=reuse)._prepare(X, y, task="classification", classes=np.arange(3))[0]

    first = scores()
    pipe[-1].partial_fit(pipe[0].transform(X), y)  # one more epoch of the network inside the pipeline
    np.testing.assert_allclose(scores(), scores(reuse=False))
    assert not np.allclose(scores(), first)


def test_frozen_teacher_that_is_not_fitted_is_refused(iris):
    X, y = iris
    with pytest.raises(NotFittedError, match="FrozenEstimator teacher wraps an unfitted"):
        _student(FrozenEstimator(LogisticRegression())).fit(X, y)


def test_fitted_teacher_is_refitted_on_the_fit_data_with_a_warning(unique_rows):
    X, y = unique_rows
    teacher = LogisticRegression(max_iter=1000).fit(X[:60], y[:60])
    coef = teacher.coef_.copy()
    student = _student(teacher, max_epochs=3, keep_teacher=True)
    with pytest.warns(UserWarning, match="FrozenEstimator"):
        student.fit(X, y)
    np.testing.assert_array_equal(teacher.coef_, coef)  # the user's model is untouched
    refit = LogisticRegression(max_iter=1000).fit(X, y)
    np.testing.assert_allclose(student.teacher_.coef_, refit.coef_, rtol=1e-6)


def test_teacher_scores_the_training_rows_once_per_fit(iris):
    X, y = iris
    student = _student(RecordingTeacher(), max_epochs=6, batch_size=32, early_stopping=True,
                       n_iter_no_change=100)
    student.fit(X, y)
    assert student.n_iter_ == 6
    assert SCORED_ROWS == [len(X)]


def test_transfer_set_adds_teacher_labelled_rows_to_every_batch(iris):
    X, y = iris
    student = _student(RecordingTeacher(), max_epochs=3, batch_size=50, augment="mixup",
                       augment_ratio=0.5, n_iter_no_change=100)
    student.fit(X, y)
    # one pass over the training rows, then one per batch over its synthetic rows only
    assert SCORED_ROWS == [150] + [25] * (3 * 3)


@pytest.mark.parametrize("augment", ["mixup", "noise"])
def test_augmented_fit_is_reproducible_whatever_the_global_rng(iris, augment):
    X, y = iris
    student = _student(RandomForestClassifier(n_estimators=10), max_epochs=5, augment=augment)
    torch.manual_seed(1)
    np.random.seed(1)
    first = clone(student).fit(X, y).predict_proba(X)
    torch.manual_seed(2)
    np.random.seed(2)
    second = clone(student).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)


def test_student_of_teacher_size_agrees_with_its_teacher_on_held_out_digits(digits):
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    teacher = NNClassifier(MLP((64,)), lr=0.01, max_epochs=40, random_state=0)
    student = NNClassifier(
        MLP((64,)), lr=0.01, max_epochs=40, random_state=1,
        distillation=Distillation(teacher, alpha=1.0, temperature=4.0, keep_teacher=True),
    ).fit(X_train, y_train)
    agreement = np.mean(student.predict(X_test) == student.teacher_.predict(X_test))
    assert agreement >= 0.95


@pytest.mark.parametrize("alpha, follows_teacher", [(1.0, True), (0.0, False)])
def test_alpha_sets_whether_the_student_follows_teacher_or_labels(iris, alpha, follows_teacher):
    X, y = iris
    # a teacher that is confidently wrong: it learnt every label shifted by one
    liar = FrozenEstimator(LogisticRegression(max_iter=1000).fit(X, (y + 1) % 3))
    student = _student(liar, alpha=alpha, max_epochs=60).fit(X, y)
    agreement = np.mean(student.predict(X) == liar.predict(X))
    assert agreement >= 0.9 if follows_teacher else agreement <= 0.1


def test_string_labels_follow_the_teachers_class_order(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    X_train, X_test, y_train, _ = train_test_split(X, names, test_size=0.4, random_state=0, stratify=names)
    student = _student(ReversedClassesTeacher(), alpha=1.0, max_epochs=60, keep_teacher=True)
    student.fit(X_train, y_train)
    assert list(student.classes_) == ["setosa", "versicolor", "virginica"]
    assert list(student.teacher_.classes_) == ["virginica", "versicolor", "setosa"]
    agreement = np.mean(student.predict(X_test) == student.teacher_.predict(X_test))
    assert agreement >= 0.95


def test_classes_missing_from_the_teacher_get_a_very_low_logit(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    two = names != "virginica"
    teacher = FrozenEstimator(LogisticRegression().fit(X[two], names[two]))
    # at temperature 1 the targets are the teacher's log-probabilities: logits up to a constant
    out, _ = Distillation(teacher, temperature=1.0)._prepare(
        X, names, task="classification", classes=np.array(["setosa", "versicolor", "virginica"])
    )
    proba = teacher.predict_proba(X)
    np.testing.assert_allclose(out[:, :2] - out[:, :1], np.log(proba) - np.log(proba[:, :1]), atol=1e-8)
    assert np.all(out[:, 2] < out[:, :2].min(axis=1) - 1000)

    # a class the student does not have is dropped, the others keep their order
    out, _ = Distillation(FrozenEstimator(LogisticRegression().fit(X, names)), temperature=1.0)._prepare(
        X, names, task="classification", classes=np.array(["virginica", "setosa"])
    )
    assert out.shape == (150, 2)
    picked = np.array(["virginica", "setosa"])[out.argmax(1)]
    assert np.mean(picked[names != "versicolor"] == names[names != "versicolor"]) >= 0.95


@pytest.mark.parametrize(
    "teacher, rows",
    [(LinearSVC(), slice(0, 100)), (RidgeClassifier(), slice(None))],
    ids=["binary", "multiclass"],
)
def test_teacher_without_predict_proba_distils_through_decision_function(iris, teacher, rows):
    X, y = iris[0][rows], iris[1][rows]
    out, fitted = Distillation(teacher)._prepare(X, y, task="classification", classes=np.unique(y))
    np.testing.assert_array_equal(np.unique(y)[out.argmax(1)], fitted.predict(X))


def test_nn_module_teacher_is_used_as_it_is(iris):
    X, y = iris
    trained = NNClassifier(MLP((16,)), lr=0.02, max_epochs=40, random_state=0).fit(X, y)
    module = trained.module_
    weights = {k: v.clone() for k, v in module.state_dict().items()}
    student = _student(module, alpha=1.0, max_epochs=60, random_state=1)
    student.fit(X, y)
    assert np.mean(student.predict(X) == trained.predict(X)) >= 0.95
    for key, value in module.state_dict().items():
        assert torch.equal(value, weights[key])


def test_nn_module_teacher_with_wrong_number_of_outputs_is_refused(iris):
    X, y = iris
    with pytest.raises(ValueError, match="2 scores per row but the student has 3 classes"):
        _student(nn.Linear(4, 2)).fit(X, y)


def test_skorch_net_teacher_gives_logits_and_is_fitted_inside_fit(iris):
    X, y = iris
    net = NeuralNetClassifier(SkorchModule, criterion=nn.CrossEntropyLoss, max_epochs=20, lr=0.1,
                              train_split=None, verbose=0)
    student = _student(net, alpha=1.0, max_epochs=60, keep_teacher=True).fit(X, y)
    teacher = student.teacher_
    assert teacher is not net and not hasattr(net, "module_")
    assert np.mean(student.predict(X) == teacher.predict(X)) >= 0.95

    out, _ = Distillation(FrozenEstimator(teacher), temperature=2.0)._prepare(
        X, y, task="classification", classes=np.arange(3))
    logits = teacher.forward(X).double()
    np.testing.assert_allclose(out, torch.log_softmax(logits / 2.0, dim=1).numpy(), rtol=1e-5, atol=1e-6)


def test_loss_is_hintons_soft_target_loss_plus_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 4, generator=gen), torch.randn(8, 4, generator=gen)
    y = torch.randint(4, (8,), generator=gen)
    T, a = 3.0, 0.3
    p, q = F.softmax(t / T, 1), F.softmax(s / T, 1)
    kl = (p * (p.log() - q.log())).sum(1).mean()
    expected = a * T * T * kl + (1 - a) * F.cross_entropy(s, y)
    got = DistillationLoss("classification", temperature=T, alpha=a)(s, (y, t))
    assert torch.isclose(got, expected, rtol=1e-5)

    # rows labelled -1 (synthetic) count only in the teacher term
    y_syn = torch.cat([y, torch.full((4,), -1)])
    s2, t2 = torch.cat([s, s[:4]]), torch.cat([t, t[:4]])
    hard_only = DistillationLoss("classification", alpha=0.0)(s2, (y_syn, t2))
    assert torch.isclose(hard_only, F.cross_entropy(s, y))

    # teacher targets softened once (log_target) and weights of ones: the same loss
    softened = DistillationLoss("classification", temperature=T, alpha=a, log_target=True)
    assert torch.isclose(softened(s, (y, softened.soften(t))), expected, rtol=1e-5)
    assert torch.isclose(softened(s, (y, softened.soften(t), torch.ones(8))), expected, rtol=1e-5)


def test_regression_loss_mixes_mse_to_teacher_and_to_targets():
    s, t, y = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [4.0]]), torch.tensor([[1.0], [float("nan")]])
    loss = DistillationLoss("regression", alpha=0.25)(s, (y, t))
    expected = 0.25 * (1 + 4) / 2 + 0.75 * 0.0  # the NaN (synthetic) row has no target
    assert loss.item() == pytest.approx(expected)


def test_regression_student_tracks_a_gradient_boosting_teacher_on_held_out_rows():
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.3, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

    def fidelity(teacher, **kw):
        student = NNRegressor(
            MLP((64, 64)), lr=0.01, max_epochs=150, batch_size=64, random_state=0,
            distillation=Distillation(teacher, alpha=1.0, keep_teacher=True, **kw),
        ).fit(X_train, y_train)
        return r2_score(student.teacher_.predict(X_test), student.predict(X_test))

    assert fidelity(HistGradientBoostingRegressor(max_depth=3, learning_rate=0.05)) >= 0.8
    # a deeper, rougher teacher needs a transfer set to be followed off the training rows
    assert fidelity(HistGradientBoostingRegressor(), augment="noise", augment_ratio=3, noise_scale=0.5) >= 0.8


def test_regression_teacher_outputs_are_scaled_like_the_targets():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 3))
    y = X @ [3.0, -2.0, 1.0] * 50 + 1000
    student = NNRegressor(MLP((16,)), lr=0.01, max_epochs=60, random_state=0,
                          distillation=Distillation(LinearRegression(), alpha=1.0, augment="mixup"))
    assert student.fit(X, y).score(X, y) > 0.95


def test_regressor_refuses_a_classifier_teacher_and_vice_versa(iris):
    X, y = iris
    with pytest.raises(ValueError, match="cannot be distilled from a classifier"):
        NNRegressor(distillation=Distillation(LogisticRegression())).fit(X, y.astype(float))
    with pytest.raises(ValueError, match="gives no class scores"):
        _student(LinearRegression()).fit(X, y)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"alpha": 1.5}, "'alpha' parameter of Distillation must be a float in the range \\[0.0, 1.0\\]"),
        ({"temperature": 0}, "'temperature' parameter of Distillation"),
        ({"augment": "cutmix"}, "'augment' parameter of Distillation must be one of \\['mixup', 'noise'\\] or None"),
        ({"augment_ratio": 0}, "'augment_ratio' parameter of Distillation"),
        ({"keep_teacher": "yes"}, "'keep_teacher' parameter of Distillation"),
    ],
)
def test_invalid_parameters_are_reported_at_fit(iris, params, match):
    X, y = iris
    spec = Distillation(LogisticRegression(), **params)  # construction never validates
    with pytest.raises(ValueError, match=match):
        NNClassifier(max_epochs=1, distillation=spec).fit(X, y)


def test_teacher_that_is_not_an_estimator_is_refused(iris):
    X, y = iris
    with pytest.raises(ValueError, match="'teacher' parameter of Distillation must be an estimator"):
        _student("random_forest").fit(X, y)


def test_augment_names_are_case_insensitive(iris):
    X, y = iris
    _student(LogisticRegression(), augment="MixUp", max_epochs=2).fit(X, y)


def test_recipe_and_teacher_parameters_are_searchable(iris):
    X, y = iris
    student = _student(LogisticRegression(), max_epochs=3)
    student.set_params(distillation__temperature=2.0, distillation__teacher__C=0.5)
    params = student.get_params()
    assert params["distillation__temperature"] == 2.0
    assert params["distillation__teacher__C"] == 0.5

    search = GridSearchCV(
        student,
        {"distillation__alpha": [0.2, 1.0], "distillation__teacher__C": [0.1, 10.0]},
        cv=2,
    ).fit(X, y)
    assert set(search.best_params_) == {"distillation__alpha", "distillation__teacher__C"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_bayes_search_tunes_temperature_and_alpha_of_a_student_in_a_pipeline():
    skopt = pytest.importorskip("skopt")
    from skopt.space import Real

    X, y = load_iris(return_X_y=True)  # unscaled: the Pipeline's scaler does it
    pipe = make_pipeline(StandardScaler(), _student(LogisticRegression(), max_epochs=3))
    space = {
        "nnclassifier__distillation__temperature": Real(1.0, 8.0, prior="log-uniform"),
        "nnclassifier__distillation__alpha": Real(0.0, 1.0),
    }
    search = skopt.BayesSearchCV(pipe, space, n_iter=4, cv=2, random_state=0, error_score="raise").fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    best = search.best_estimator_[-1]
    assert best.distillation.temperature == search.best_params_["nnclassifier__distillation__temperature"]
    assert 0.0 <= best.distillation.alpha <= 1.0
    assert not hasattr(best, "teacher_")


def test_student_pickle_carries_no_teacher_unless_asked(digits):
    X, y = digits
    X, y = X[:400], y[:400]
    forest = RandomForestClassifier(n_estimators=50, random_state=0)
    plain = NNClassifier(MLP((16,)), max_epochs=3, random_state=0).fit(X, y)
    student = _student(forest, max_epochs=3).fit(X, y)
    assert not hasattr(student, "teacher_")
    assert not hasattr(forest, "estimators_")  # the parameter stays as given
    # the Distillation spec and its loss add their settings (under 2 KB); a
    # fitted forest would add hundreds of KB
    assert len(pickle.dumps(student)) < len(pickle.dumps(plain)) + 2048

    kept = _student(forest, max_epochs=3, keep_teacher=True).fit(X, y)
    assert hasattr(kept.teacher_, "estimators_")
    assert len(pickle.dumps(kept)) > 3 * len(pickle.dumps(plain))
    kept.set_params(distillation__keep_teacher=False).fit(X, y)
    assert not hasattr(kept, "teacher_")


@pytest.mark.parametrize("schedule", SCHEDULES.names)
def test_distillation_trains_under_every_lr_schedule(iris, schedule):
    X, y = iris
    student = _student(LogisticRegression(), lr_schedule=schedule, max_epochs=4, augment="mixup",
                       early_stopping=True, n_iter_no_change=100)
    student.fit(X, y)
    assert student.n_iter_ == 4 and np.isfinite(student.loss_curve_).all()


def test_distillation_composes_with_partial_fit(iris):
    X, y = iris
    student = _student(RecordingTeacher(), augment="noise")
    for rows in (slice(0, 100), slice(50, 150), slice(0, 100)):
        student.partial_fit(X[rows], y[rows], classes=np.unique(y))
    assert student.n_iter_ == 3
    # a teacher per call's data; the third call's rows are the first's, so is its teacher
    assert [len(rows) for rows in FITS] == [100, 100]
    np.testing.assert_array_equal(FITS[1], X[50:150])


@pytest.mark.parametrize("method", ["l1_unstructured", "ln_structured"])
def test_distillation_composes_with_pruning(digits, method):
    pruning = pytest.importorskip("skopt_nn.specs.pruning")
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    teacher = FrozenEstimator(NNClassifier(MLP((64,)), lr=0.01, max_epochs=30, random_state=0).fit(X_train, y_train))
    student = NNClassifier(
        MLP((64,)), lr=0.01, max_epochs=30, random_state=1,
        pruning=pruning.Pruning(method, amount=0.5),
        distillation=Distillation(teacher, alpha=0.7),
    ).fit(X_train, y_train)
    assert student.sparsity_ == pytest.approx(0.5, abs=0.05)
    assert np.mean(student.predict(X_test) == teacher.predict(X_test)) >= 0.9


# -- one teacher per training set: reuse across the fits of a search

GRID_12 = {"lr": [0.01, 0.02, 0.03, 0.05], "distillation__alpha": [0.2, 0.5, 0.8]}


@pytest.mark.parametrize("reuse", [True, False])
def test_grid_search_fits_the_teacher_once_per_fold_and_once_for_the_refit(unique_rows, reuse):
    X, y = unique_rows
    search = GridSearchCV(_student(RecordingTeacher(), max_epochs=2, reuse_teacher=reuse), GRID_12, cv=3)
    search.fit(X, y)
    # 12 candidates x 3 folds + the refit: 37 fits of the student, 4 training sets
    assert len(FITS) == (4 if reuse else 37)
    index = _row_index(X)
    seen = {tuple(sorted(index[row.tobytes()] for row in rows)) for rows in FITS}
    expected = {tuple(sorted(train)) for train, _ in StratifiedKFold(3).split(X, y)}
    assert seen == expected | {tuple(range(len(X)))}


def test_sharing_a_teacher_changes_no_score(unique_rows):
    X, y = unique_rows
    grid = {"lr": [0.01, 0.03], "distillation__temperature": [2.0, 4.0]}
    results = []
    for reuse in (True, False):
        student = _student(HistGradientBoostingClassifier(max_iter=5), max_epochs=3, reuse_teacher=reuse)
        search = GridSearchCV(student, grid, cv=3).fit(X, y)
        results.append(search)
    for split in range(3):
        key = f"split{split}_test_score"
        np.testing.assert_array_equal(results[0].cv_results_[key], results[1].cv_results_[key])
    np.testing.assert_array_equal(results[0].predict_proba(X), results[1].predict_proba(X))


def test_teacher_is_refitted_when_the_rows_change_in_place(unique_rows):
    X, y = unique_rows
    X = X.copy()
    student = _student(RecordingTeacher(), max_epochs=2)
    student.fit(X, y)
    student.fit(X.copy(), y)  # the same rows in another array: the same teacher
    assert len(FITS) == 1
    X[0, 0] += 1.0  # one value changed in place, in the very array given before
    student.fit(X, y)
    assert len(FITS) == 2
    np.testing.assert_array_equal(FITS[-1], X)
    student.fit(X[::-1], y[::-1])  # rows in another order are other rows
    assert len(FITS) == 3


def test_teacher_is_refitted_when_the_targets_change(unique_rows):
    X, y = unique_rows
    student = _student(RecordingTeacher(), max_epochs=2)
    student.fit(X, y)
    student.fit(X, np.roll(y, 1))
    assert len(FITS) == 2


def test_teacher_is_refitted_when_sample_weight_changes(unique_rows):
    X, y = unique_rows
    w = np.linspace(0.5, 2.0, len(y))
    student = _student(WeightedTeacher(), max_epochs=2)
    student.fit(X, y, sample_weight=w)
    student.fit(X, y, sample_weight=w.copy())
    assert len(FITS) == 1
    student.fit(X, y, sample_weight=w[::-1])
    student.fit(X, y)
    assert len(FITS) == 3
    np.testing.assert_allclose(FITS[1][1], w[::-1] / w.mean())  # the teacher got those weights
    assert FITS[2][1] is None


def test_teacher_is_refitted_when_its_random_state_differs(unique_rows):
    X, y = unique_rows
    # an unset random_state is seeded from the student's: another student seed, another teacher
    for seed in (0, 1, 0):
        _student(WeightedTeacher(), max_epochs=2, random_state=seed).fit(X, y)
    assert len(FITS) == 2 and FITS[0][2] != FITS[1][2]
    # a seed set on the teacher is its own, whatever the student's
    for seed in (0, 1):
        _student(WeightedTeacher(random_state=7), max_epochs=2, random_state=seed).fit(X, y)
    assert len(FITS) == 3


def test_search_over_a_teacher_parameter_fits_one_teacher_per_setting_and_fold(unique_rows):
    X, y = unique_rows
    grid = {"distillation__teacher__C": [0.1, 1.0], "lr": [0.01, 0.03]}
    search = GridSearchCV(_student(WeightedTeacher(), max_epochs=2), grid, cv=3).fit(X, y)
    # 2 settings x 3 folds, and the refit's setting on all rows
    assert len(FITS) == 7
    assert len({(rows.tobytes(), C) for rows, _, _, C in FITS}) == 7
    assert search.best_estimator_.distillation.teacher.C in (0.1, 1.0)


def test_reuse_off_fits_a_teacher_in_every_fit(unique_rows):
    X, y = unique_rows
    student = _student(RecordingTeacher(), max_epochs=2, reuse_teacher=False)
    student.fit(X, y)
    student.fit(X, y)
    assert len(FITS) == 2


def test_shared_teacher_does_not_travel_with_clone_or_pickle(unique_rows):
    X, y = unique_rows
    student = _student(RandomForestClassifier(n_estimators=30, random_state=0), max_epochs=2)
    alone = _student(RandomForestClassifier(n_estimators=30, random_state=0), max_epochs=2,
                     reuse_teacher=False).fit(X, y)
    student.fit(X, y)
    student.fit(X, y)  # the second fit takes the first one's teacher
    assert not hasattr(student.distillation.teacher, "estimators_")
    assert not hasattr(clone(student).distillation.teacher, "estimators_")
    # the same settings (a pickle leaves out those at their defaults): the same bytes
    alone.set_params(distillation__reuse_teacher=True)
    assert len(pickle.dumps(student)) == len(pickle.dumps(alone))
    restored = pickle.loads(pickle.dumps(student))
    np.testing.assert_array_equal(restored.predict(X), student.predict(X))


def test_shared_teacher_outputs_cannot_be_changed_by_a_fit(unique_rows):
    X, y = unique_rows
    regressor_X, regressor_y = X, X[:, 0] * 3.0 + 1.0
    first = NNRegressor(MLP((8,)), max_epochs=2, random_state=0,
                        distillation=Distillation(LinearRegression())).fit(regressor_X, regressor_y)
    second = clone(first).fit(regressor_X, regressor_y)
    np.testing.assert_array_equal(first.predict(X), second.predict(X))


@pytest.mark.parametrize("method, options", [
    ("random", {"n_iter": 3, "random_state": 0}),
    ("halving", {"random_state": 0, "factor": 2, "min_resources": 1}),
    ("asha", {"n_iter": 4, "random_state": 0, "min_epochs": 1}),
    ("bayes", {"n_iter": 3, "random_state": 0}),
    ("grid", {"fuse": True}),  # distillation does not fuse: ordinary fits, one warning
])
def test_no_engine_fits_a_teacher_twice_on_the_same_rows(unique_rows, method, options):
    X, y = unique_rows
    student = _student(RecordingTeacher(), max_epochs=4)
    space = {"lr": [0.01, 0.02, 0.03, 0.05], "distillation__alpha": [0.2, 0.8]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        make_search(student, space, method, cv=2, **options).fit(X, y)
    fitted_on = [rows.tobytes() for rows in FITS]
    assert len(fitted_on) == len(set(fitted_on)) > 0


class ScoredRowsTeacher(RecordingTeacher):
    """A RecordingTeacher that records which rows it scores, byte for byte."""

    def predict_proba(self, X):
        SCORED_BYTES.append(np.asarray(X).tobytes())
        return super().predict_proba(X)


SCORED_BYTES = []


@pytest.mark.parametrize("method, options", [
    ("random", {"n_iter": 3, "random_state": 0}),
    ("halving", {"random_state": 0, "factor": 2, "min_resources": 1}),
    ("asha", {"n_iter": 4, "random_state": 0, "min_epochs": 1}),
    ("bayes", {"n_iter": 3, "random_state": 0}),
    ("grid", {"fuse": True}),
])
def test_no_engine_scores_a_frozen_teacher_twice_on_the_same_rows(unique_rows, method, options):
    X, y = unique_rows
    SCORED_BYTES.clear()
    student = _student(FrozenEstimator(ScoredRowsTeacher().fit(X, y)), max_epochs=4)
    space = {"lr": [0.01, 0.02, 0.03, 0.05], "distillation__alpha": [0.2, 0.8]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        make_search(student, space, method, cv=2, **options).fit(X, y)
    assert len(SCORED_BYTES) == len(set(SCORED_BYTES)) > 0


def test_threads_of_one_search_share_their_teachers(unique_rows):
    from joblib import parallel_config

    X, y = unique_rows
    with parallel_config(backend="threading"):
        GridSearchCV(_student(RecordingTeacher(), max_epochs=2), GRID_12, cv=3, n_jobs=2).fit(X, y)
    assert len(FITS) == 4


def test_sharing_leaves_the_teachers_arrays_writeable(unique_rows):
    X, y = unique_rows
    student = _student(RecordingTeacher(), max_epochs=2, keep_teacher=True).fit(X, y)
    assert student.teacher_.classes_.flags.writeable
