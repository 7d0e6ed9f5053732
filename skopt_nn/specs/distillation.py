"""Knowledge distillation as a searchable hyperparameter.

A ``Distillation`` spec names a teacher and the recipe for learning from it.
Inside every ``fit`` of the student the teacher is resolved once:

* an sklearn-style estimator (unfitted *or* fitted, a ``Pipeline``, a skorch
  net, another ``NNClassifier``) is cloned and fitted on the rows that fit
  was given, so cross-validation and every search stay leak-free; a fit
  whose teacher would learn from exactly the same inputs (rows, targets,
  weights, parameters, random state) takes the one already fitted, with its
  outputs (``_teacher_cache``);
* a fitted model wrapped in ``sklearn.frozen.FrozenEstimator`` is used as it
  is and never refitted;
* a ``torch.nn.Module`` is used as it is (it has no ``fit``).

Its outputs for the training rows are computed in one pass and travel with
the targets as ``(y, teacher_out, weight)``; the loss mixes the teacher's soft
targets with the hard labels (Hinton et al. 2015). An optional transfer set
(``augment``) adds synthetic rows to every batch, labelled by the teacher on
the fly (Bucila et al. 2006).
"""

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import Interval, InvalidParameterError
from sklearn.utils.validation import check_is_fitted, has_fit_parameter
from torch import nn

from ._spec import LeanParams
from ._distill_loss import _NO_LABEL, DistillationLoss
from ._registry import Registry
from ._teacher_cache import TEACHERS, clear_teacher_cache, fingerprint

__all__ = ["Distillation", "DistillationLoss", "AUGMENTS", "clear_teacher_cache"]

# Floor for teacher probabilities before the log: a random forest gives exact
# zeros, and log(0) would make the softened teacher distribution degenerate.
_PROBA_FLOOR = 1e-12
# A student class the teacher never saw gets a logit this far below the row's
# lowest score: its softened probability is zero at any sensible temperature.
_MISSING_CLASS_GAP = 1e4


def _to_scipy(X):
    """A torch sparse COO batch as a scipy CSR matrix (float32)."""
    X = X.coalesce().cpu()
    row, col = X.indices().numpy()
    return sp.csr_matrix((X.values().numpy(), (row, col)), shape=tuple(X.shape))


def _to_torch(X):
    """A scipy sparse matrix as a float32 torch sparse COO tensor."""
    coo = sp.coo_matrix(X)
    coo.sum_duplicates()
    return torch.sparse_coo_tensor(
        torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64)),
        torch.from_numpy(coo.data.astype(np.float32)), coo.shape, check_invariants=False,
    ).coalesce()


def _mixup(X, n_new, generator, noise_scale):
    """Convex combinations of random pairs of rows, weights drawn uniformly."""
    if X.is_sparse:  # rows stay sparse: a mix of two sparse rows is sparse
        Xs = _to_scipy(X)
        first = torch.randint(X.shape[0], (n_new,), generator=generator).numpy()
        second = torch.randint(X.shape[0], (n_new,), generator=generator).numpy()
        lam = torch.rand((n_new,), generator=generator).numpy()
        return _to_torch(sp.diags(lam) @ Xs[first] + sp.diags(1 - lam) @ Xs[second]).to(X.device)
    n = len(X)
    first = torch.randint(n, (n_new,), generator=generator).to(X.device)
    second = torch.randint(n, (n_new,), generator=generator).to(X.device)
    lam = torch.rand((n_new,) + (1,) * (X.dim() - 1), generator=generator).to(X.device, X.dtype)
    return lam * X[first] + (1 - lam) * X[second]


def _noise(X, n_new, generator, noise_scale):
    """Random rows plus Gaussian noise scaled by each feature's spread in the batch.

    On sparse rows only the stored (nonzero) entries get noise, so the rows
    stay sparse.
    """
    if X.is_sparse:
        Xs = _to_scipy(X)
        rows = torch.randint(X.shape[0], (n_new,), generator=generator).numpy()
        mean = np.asarray(Xs.mean(axis=0)).ravel()
        spread = np.sqrt(np.maximum(np.asarray(Xs.multiply(Xs).mean(axis=0)).ravel() - mean**2, 0))
        picked = Xs[rows].tocsr()
        eps = torch.randn((picked.nnz,), generator=generator).numpy()
        picked.data = picked.data + noise_scale * spread[picked.indices] * eps
        return _to_torch(picked).to(X.device)
    rows = torch.randint(len(X), (n_new,), generator=generator).to(X.device)
    spread = X.std(dim=0, unbiased=False)
    eps = torch.randn((n_new,) + tuple(X.shape[1:]), generator=generator).to(X.device, X.dtype)
    return X[rows] + noise_scale * spread * eps


AUGMENTS = Registry("augment")
AUGMENTS.register("mixup", _mixup)
AUGMENTS.register("noise", _noise)


class Distillation(LeanParams, BaseEstimator):
    """Knowledge-distillation recipe: a teacher and how the student learns from it.

    Every parameter is searchable through the student, as
    ``distillation__<name>``; the teacher's own parameters are reached as
    ``distillation__teacher__<name>``.

    Parameters
    ----------
    teacher : estimator, FrozenEstimator or torch.nn.Module
        - An sklearn-style estimator (``HistGradientBoostingClassifier()``,
          a ``Pipeline``, a skorch net, an ``NNClassifier``...): cloned and
          fitted inside every ``fit`` of the student, on the data that fit
          was given (with that fit's ``sample_weight`` and ``class_weight``
          when its ``fit`` takes ``sample_weight``), so cross-validation
          scores stay honest. This holds for a
          *fitted* estimator too: its fitted state is not used (a warning
          says so), exactly as sklearn's searches and ``clone`` would drop it.
        - ``sklearn.frozen.FrozenEstimator(fitted_model)``: used as it is,
          never refitted. Use it for a teacher trained on other data; under
          cross-validation on the data it was trained on, it leaks.
        - A ``torch.nn.Module``: used as it is. For a classifier student it
          must output one logit per class, in the order of the student's
          ``classes_``; for a regressor, predictions in target units.
    temperature : float, default=4.0
        Softmax temperature of the soft targets; higher spreads the teacher's
        probability over more classes. Ignored for regression.
    alpha : float, default=0.5
        Weight of the teacher term, in [0, 1]: 1 learns from the teacher
        only, 0 ignores it.
    augment : {"mixup", "noise"} or None, default=None
        Transfer set: add synthetic rows to every training batch, labelled
        by the teacher, which only the teacher term learns from. ``"mixup"``
        mixes random pairs of rows with uniform weights, ``"noise"`` adds
        Gaussian noise to random rows. Draws come from the student's
        ``random_state``.
    augment_ratio : float, default=1.0
        Synthetic rows per real row in each batch (at least one row).
    noise_scale : float, default=0.1
        For ``augment="noise"``: noise standard deviation as a fraction of
        each feature's standard deviation in the batch.
    keep_teacher : bool, default=False
        Expose the fitted teacher as the student's ``teacher_`` attribute
        (and so keep it in the student's pickle).
    reuse_teacher : bool, default=True
        Take a teacher already fitted in this process, with its scores on
        the rows, when everything it learns from is the same: the rows
        (byte for byte), the targets, the sample weights it is given, its
        parameters and the random state it gets. A search then fits the
        teacher once per fold and teacher setting rather than once per
        candidate, with the same scores. Never shared across different rows,
        so cross-validation stays leak-free. A teacher used as it is
        (``FrozenEstimator``, ``nn.Module``) is likewise scored once per set
        of rows for as long as it is not refitted, trained or given new
        attributes; one whose arrays are changed in place needs
        ``clear_teacher_cache()``. False fits (and scores) a teacher in
        every fit.

    See Also
    --------
    NNClassifier, NNRegressor : The students.
    sklearn.frozen.FrozenEstimator : Mark a fitted teacher as not to be refitted.

    Notes
    -----
    Teacher scores, in order of preference: logits (``NNClassifier``,
    skorch nets trained with ``CrossEntropyLoss``, ``nn.Module``), then
    ``log(predict_proba)`` floored at ``log(1e-12)``, then
    ``decision_function``. Log-probabilities differ from logits by a constant
    per row, which the softmax ignores, so at any temperature they give the
    same soft targets. The teacher's ``classes_`` are matched to the
    student's by label; a student class the teacher lacks gets a logit far
    below the others.

    Teacher outputs for the training rows are computed once per fit, or,
    with ``reuse_teacher``, once per shared teacher and set of rows. With
    ``augment``, the teacher also labels each batch's synthetic rows, one
    pass per batch.

    References
    ----------
    Hinton, Vinyals and Dean (2015). Distilling the knowledge in a neural
    network. arXiv:1503.02531.

    Bucila, Caruana and Niculescu-Mizil (2006). Model compression. KDD.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skopt_nn import MLP, Distillation, NNClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> student = NNClassifier(
    ...     MLP(hidden_layer_sizes=(16,)), lr=0.05, max_epochs=60, random_state=0,
    ...     distillation=Distillation(RandomForestClassifier(n_estimators=20), alpha=0.7),
    ... )
    >>> student.fit(X, y).score(X, y) > 0.9
    True
    >>> student.set_params(distillation__temperature=2.0, distillation__teacher__max_depth=3)
    ... # doctest: +ELLIPSIS
    NNClassifier(...)
    >>> student.distillation.teacher
    RandomForestClassifier(max_depth=3, n_estimators=20)
    """

    _parameter_constraints = {
        "teacher": "no_validation",
        "temperature": [Interval(numbers.Real, 0, None, closed="neither")],
        "alpha": [Interval(numbers.Real, 0, 1, closed="both")],
        "augment": "no_validation",  # checked against AUGMENTS, case-insensitive
        "augment_ratio": [Interval(numbers.Real, 0, None, closed="neither")],
        "noise_scale": [Interval(numbers.Real, 0, None, closed="left")],
        "keep_teacher": ["boolean"],
        "reuse_teacher": ["boolean"],
    }

    def __init__(
        self,
        teacher,
        *,
        temperature=4.0,
        alpha=0.5,
        augment=None,
        augment_ratio=1.0,
        noise_scale=0.1,
        keep_teacher=False,
        reuse_teacher=True,
    ):
        self.teacher = teacher
        self.temperature = temperature
        self.alpha = alpha
        self.augment = augment
        self.augment_ratio = augment_ratio
        self.noise_scale = noise_scale
        self.keep_teacher = keep_teacher
        self.reuse_teacher = reuse_teacher

    # -- protocol used by BaseNN._fit_core
    def _prepare(self, X, y, *, task, classes=None, random_state=None, sample_weight=None):
        """Fit (or take) the teacher and score the training rows once.

        Returns ``(teacher_outputs, fitted_teacher)``: for classification the
        teacher's log-probabilities at the temperature, ``log_softmax(logits / T)``,
        with columns in the order of ``classes`` (what the loss built by
        ``_criterion`` takes); for regression predictions in target units. ``sample_weight`` (the student's weights) goes
        to a teacher fitted here when its ``fit`` takes ``sample_weight``.
        """
        self._validate_params()
        if self.augment is not None:
            self._augment_fn()
        teacher, to_fit = self._resolve_teacher(task, random_state)
        if not to_fit:
            # Used as it is (a FrozenEstimator or an nn.Module): scored once
            # per set of rows while its state stays the one it had.
            key, pins = self._given_key(teacher, X) if self.reuse_teacher else (None, None)
            if key is None:
                return self._targets(_teacher_scores(teacher, X, task=task, classes=classes), task), teacher
            entry = TEACHERS.given(key, teacher, pins)
            scores = TEACHERS.outputs(entry, task, lambda: _raw_scores(teacher, X, task=task))
            return self._targets(_scores_for(scores, task=task, classes=classes), task), teacher
        fit_weight = sample_weight if sample_weight is not None and has_fit_parameter(
            teacher, "sample_weight") else None

        def fit():
            if fit_weight is not None:
                return teacher.fit(X, y, sample_weight=fit_weight)
            return teacher.fit(X, y)

        key = self._reuse_key(teacher, X, y, fit_weight) if self.reuse_teacher else None
        if key is None:
            fitted = fit()
            return self._targets(_teacher_scores(fitted, X, task=task, classes=classes), task), fitted
        entry = TEACHERS.get(key, fit)
        scores = TEACHERS.outputs(entry, task, lambda: _raw_scores(entry.teacher, X, task=task))
        return self._targets(_scores_for(scores, task=task, classes=classes), task), entry.teacher

    def _targets(self, scores, task):
        """What the loss takes: log-probabilities at the temperature for a classifier.

        Softened once here, in float64, so no batch has to (``log_target``).
        """
        if task != "classification":
            return scores
        return _soften(scores, float(self.temperature))

    def _criterion(self, task):
        return DistillationLoss(task, temperature=self.temperature, alpha=self.alpha, log_target=True)

    def _fuse_refusal(self):
        """Why a fit with this spec cannot train in a fused group, or None."""
        if self.augment is not None:
            return (f"Distillation(augment={self.augment!r}) adds synthetic rows to every batch, "
                    "a different number per member")
        return None

    def _augmenter(self, teacher, *, task, generator, target_scaler=None, classes=None):
        if self.augment is None:
            return None
        return _TransferSet(
            self._augment_fn(),
            teacher,
            task=task,
            classes=classes,
            target_scaler=target_scaler,
            ratio=float(self.augment_ratio),
            noise_scale=float(self.noise_scale),
            generator=generator,
            temperature=float(self.temperature),
        )

    # -- helpers
    def _augment_fn(self):
        if self.augment in AUGMENTS:
            return AUGMENTS.get(self.augment)
        raise InvalidParameterError(
            AUGMENTS.error_message(self.augment, param="augment", owner="Distillation", extra=" or None")
        )

    def _resolve_teacher(self, task, random_state):
        """``(teacher, to_fit)``: the teacher to use as it is, or a seeded clone to fit."""
        teacher = self.teacher
        if isinstance(teacher, nn.Module):
            return teacher, False
        if not hasattr(teacher, "fit"):
            raise InvalidParameterError(
                "The 'teacher' parameter of Distillation must be an estimator with fit "
                "(unfitted, or fitted and wrapped in sklearn.frozen.FrozenEstimator) or a "
                f"torch.nn.Module; got {teacher!r} instead."
            )
        if task == "regression" and is_classifier(teacher):
            raise ValueError(
                f"A regressor cannot be distilled from a classifier teacher; got {_name(teacher)}."
            )
        if isinstance(teacher, FrozenEstimator):
            try:
                # FrozenEstimator.fit is a no-op that checks the model is fitted.
                return teacher.fit(None, None), False
            except NotFittedError:
                raise NotFittedError(
                    f"The FrozenEstimator teacher wraps an unfitted {_name(teacher)}. Fit it "
                    "first, or pass the unfitted estimator itself to have it fitted inside "
                    "every fit of the student."
                ) from None
        if _is_fitted(teacher):
            warnings.warn(
                f"The teacher {_name(teacher)} is already fitted; Distillation refits a clone "
                "of it on the data given to fit, so that cross-validation stays leak-free. "
                "To use the fitted model as it is, wrap it in sklearn.frozen.FrozenEstimator.",
                UserWarning,
                stacklevel=2,
            )
        fitted = clone(teacher, safe=False)
        _seed_unset_random_states(fitted, random_state)
        return fitted, True

    @staticmethod
    def _given_key(teacher, X):
        """Key of a teacher used as it is on the rows ``X``, and what it names by identity.

        ``(None, None)`` when it cannot be taken: the teacher is then scored
        in every fit.
        """
        pins = []
        try:
            return ("given", _state_stamp(teacher, pins), fingerprint(X)), pins
        except Exception:  # rows that cannot be fingerprinted, a state that does not hash
            return None, None

    @staticmethod
    def _reuse_key(teacher, X, y, sample_weight):
        """Fingerprint of all a teacher learns from, or None when it cannot be taken."""
        try:
            return fingerprint(X, y, sample_weight, estimator=teacher)
        except Exception:  # e.g. a parameter that does not pickle: fit it, share nothing
            return None


def _name(estimator):
    while isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    return type(estimator).__name__


def _is_fitted(estimator):
    try:
        check_is_fitted(estimator)
    except (NotFittedError, TypeError):
        return False
    return True


def _seed_unset_random_states(estimator, random_state):
    """Give every ``random_state=None`` of the teacher a seed from the student's.

    An int ``random_state`` on the student then makes the whole fit, teacher
    included, reproducible; seeds the user set on the teacher are kept.
    """
    if random_state is None or not hasattr(estimator, "get_params"):
        return
    rng = np.random.RandomState(random_state)
    unset = sorted(
        key
        for key, value in estimator.get_params(deep=True).items()
        if value is None and (key == "random_state" or key.endswith("__random_state"))
    )
    if unset:
        estimator.set_params(**{key: int(rng.randint(np.iinfo(np.int32).max)) for key in unset})


# How deep _state_stamp looks into the attributes of an object that is not an
# estimator (an estimator's own attributes are always looked into).
_STAMP_DEPTH = 3


def _state_stamp(obj, pins, depth=0, seen=None):
    """The identities (and versions) of the state a fitted model predicts with.

    A tensor is its identity and its in-place version counter, which an
    optimizer step or ``load_state_dict`` moves on; a module is its
    parameters and buffers; an estimator (anything with ``get_params``: an
    sklearn estimator, a FrozenEstimator, a Pipeline's steps, a skorch net)
    is its identity and those of its attributes, and any other object down
    to ``_STAMP_DEPTH`` levels, through lists, tuples and dicts: refitting
    replaces fitted attributes with new objects, and training a network
    moves its tensors' versions, so the stamp changes. An array changed in
    place keeps its identity and is not seen. Every object stamped goes into
    ``pins``, whose holder keeps them alive, so that no other object can
    come to have one of their identities while the stamp is in use.
    """
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return "seen", id(obj)
    seen.add(id(obj))
    pins.append(obj)
    if isinstance(obj, torch.Tensor):
        return id(obj), obj._version
    if isinstance(obj, nn.Module):
        tensors = [*obj.parameters(), *obj.buffers()]
        return id(obj), obj.training, tuple(_state_stamp(t, pins, 0, seen) for t in tensors)
    estimator = hasattr(obj, "get_params") and not isinstance(obj, type)
    if estimator:
        depth = 0
    elif depth >= _STAMP_DEPTH or isinstance(obj, np.ndarray):
        return id(obj)
    if isinstance(obj, (list, tuple)):
        return id(obj), tuple(_state_stamp(v, pins, depth + 1, seen) for v in obj)
    if isinstance(obj, dict):
        items = obj.items()
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        items = vars(obj).items()
    else:
        return id(obj)
    return id(obj), tuple((k, _state_stamp(v, pins, depth + 1, seen)) for k, v in items if isinstance(k, str))


def _unfrozen(model):
    while isinstance(model, FrozenEstimator):
        model = model.estimator
    return model


def _module_forward(module, X):
    """Outputs of a plain ``nn.Module`` for ``X``, in batches, without gradients."""
    params = next(module.parameters(), None)
    device = params.device if params is not None else torch.device("cpu")
    dtype = params.dtype if params is not None and params.is_floating_point() else torch.float32
    was_training = module.training
    module.eval()
    try:
        out = []
        with torch.no_grad():
            if sp.issparse(X):  # sparse batches, never the whole matrix dense
                X = sp.csr_matrix(X)
                batches = (_to_torch(X[start : start + 4096]) for start in range(0, X.shape[0], 4096))
            else:
                X_t = torch.as_tensor(np.asarray(X), dtype=dtype)
                batches = (X_t[start : start + 4096] for start in range(0, len(X_t), 4096))
            for batch in batches:
                out.append(module(batch.to(device)).detach().double().cpu())
    finally:
        module.train(was_training)
    if not out:
        return np.empty((0, 0))
    return torch.cat(out).numpy()


def _logits(model, X):
    """Logits of teachers that have them, else None."""
    model = _unfrozen(model)
    if isinstance(model, nn.Module):
        return _module_forward(model, X)
    # skopt_nn's own classifiers are known by their logits method, not by
    # class: a spec must not import the estimators that it configures.
    if callable(getattr(type(model), "_forward", None)) and hasattr(model, "net_") and is_classifier(model):
        return model._forward(X).astype(np.float64)
    from skorch import NeuralNet

    if isinstance(model, NeuralNet) and isinstance(getattr(model, "criterion_", None), nn.CrossEntropyLoss):
        return model.forward(np.asarray(X, dtype=np.float32), training=False).double().numpy()
    return None


def _class_scores(teacher, X):
    """Scores whose softmax is the teacher's class distribution, and its classes."""
    classes = None if isinstance(teacher, nn.Module) else getattr(teacher, "classes_", None)
    scores = _logits(teacher, X)
    if scores is None and hasattr(teacher, "predict_proba"):
        proba = np.asarray(teacher.predict_proba(X), dtype=np.float64)
        scores = np.log(np.clip(proba, _PROBA_FLOOR, None))
    elif scores is None and hasattr(teacher, "decision_function"):
        scores = np.asarray(teacher.decision_function(X), dtype=np.float64)
        if scores.ndim == 1:
            # binary: the score is the log-odds of classes_[1]
            scores = np.column_stack([-scores / 2, scores / 2])
    elif scores is None:
        raise ValueError(
            f"The teacher {_name(teacher)} gives no class scores: a classifier student needs "
            "a teacher with predict_proba or decision_function, or one that outputs logits."
        )
    return np.asarray(scores, dtype=np.float64), classes


def _map_classes(scores, teacher_classes, classes):
    """Reorder teacher columns to the student's ``classes``."""
    if scores.ndim != 2:
        raise ValueError(f"The teacher's class scores must be 2-D; got shape {scores.shape}.")
    if teacher_classes is None:
        if scores.shape[1] != len(classes):
            raise ValueError(
                f"The teacher gives {scores.shape[1]} scores per row but the student has "
                f"{len(classes)} classes; a teacher without classes_ must output one score per "
                f"class, in the order of the student's classes_ {list(classes)}."
            )
        return scores
    teacher_classes = list(np.asarray(teacher_classes).tolist())
    if scores.shape[1] != len(teacher_classes):
        raise ValueError(
            f"The teacher gives {scores.shape[1]} scores per row for {len(teacher_classes)} classes."
        )
    column = {label: j for j, label in enumerate(teacher_classes)}
    index = [column.get(label, -1) for label in np.asarray(classes).tolist()]
    if all(j < 0 for j in index):
        raise ValueError(
            f"None of the teacher's classes {teacher_classes} is among the student's classes "
            f"{list(classes)}; fit the teacher on the same labels."
        )
    out = np.empty((len(scores), len(index)))
    # Teacher classes the student lacks are dropped: the softmax over the rest
    # is the teacher's distribution given that the label is a student class.
    floor = (scores.min(axis=1) if len(scores) else np.zeros(0)) - _MISSING_CLASS_GAP
    for k, j in enumerate(index):
        out[:, k] = scores[:, j] if j >= 0 else floor
    return out


def _label_scores(teacher, X, n_labels=None):
    """Logits of each label of a multilabel teacher: ``(n_samples, n_labels)``."""
    scores = _logits(teacher, X)
    if scores is None and hasattr(teacher, "predict_proba"):
        proba = teacher.predict_proba(X)
        if isinstance(proba, list):  # one (n, 2) array per label (forests, neighbours)
            proba = np.column_stack([np.asarray(p)[:, -1] for p in proba])
        proba = np.clip(np.asarray(proba, dtype=np.float64), _PROBA_FLOOR, 1 - _PROBA_FLOOR)
        scores = np.log(proba) - np.log1p(-proba)
    elif scores is None and hasattr(teacher, "decision_function"):
        scores = teacher.decision_function(X)
    elif scores is None:
        raise ValueError(
            f"The teacher {_name(teacher)} gives no label scores: a multilabel student needs "
            "a teacher with predict_proba or decision_function, or one that outputs logits."
        )
    scores = np.asarray(scores, dtype=np.float64)
    if n_labels is not None and (scores.ndim != 2 or scores.shape[1] != n_labels):
        raise ValueError(
            f"The teacher gives scores of shape {scores.shape}; a multilabel student with "
            f"{n_labels} labels needs one score per label."
        )
    return scores


def _raw_scores(teacher, X, *, task):
    """One pass of the teacher over ``X``, before the student's classes are known.

    ``(scores, teacher_classes)`` for classification, predictions for
    regression, label logits for multilabel: what a shared teacher keeps for
    the rows it was fitted on.
    """
    if task == "multilabel":
        return _label_scores(teacher, X)
    if task == "classification":
        scores, classes = _class_scores(teacher, X)
        # a copy: the teacher's own classes_ stays as it is (the cache makes what it keeps read-only)
        return scores, None if classes is None else np.array(classes, copy=True)
    if isinstance(teacher, nn.Module):
        pred = _module_forward(teacher, X)
    else:
        pred = teacher.predict(X)
    pred = np.asarray(pred, dtype=np.float64)
    return pred.reshape(len(pred), -1)


def _scores_for(raw, *, task, classes=None):
    """The student's training signal from ``_raw_scores``."""
    if task == "classification":
        scores, teacher_classes = raw
        return _map_classes(scores, teacher_classes, classes)
    if task == "multilabel" and (raw.ndim != 2 or raw.shape[1] != len(classes)):
        raise ValueError(
            f"The teacher gives scores of shape {raw.shape}; a multilabel student with "
            f"{len(classes)} labels needs one score per label."
        )
    return raw


def _soften(scores, temperature):
    """``log_softmax(scores / T)`` of a float64 array, row by row."""
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True) if z.size else z
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _teacher_scores(teacher, X, *, task, classes=None):
    """One pass of the teacher over ``X``: the student's training signal."""
    return _scores_for(_raw_scores(teacher, X, task=task), task=task, classes=classes)


class _TransferSet:
    """Per-batch transform adding synthetic rows labelled by the teacher.

    Synthetic rows get no hard label, so only the distillation term learns
    from them, and the mean weight of the batch's real rows.
    """

    def __init__(self, make, teacher, *, task, classes, target_scaler, ratio, noise_scale, generator,
                 temperature=1.0):
        self.make = make
        self.teacher = teacher
        self.task = task
        self.classes = classes
        self.target_scaler = target_scaler
        self.ratio = ratio
        self.noise_scale = noise_scale
        self.generator = generator
        self.temperature = temperature

    def __call__(self, X, y):
        y_true, teacher_out, *weight = y
        n_new = max(1, int(round(self.ratio * X.shape[0])))
        with torch.no_grad():
            X_new = self.make(X, n_new, self.generator, self.noise_scale)
        rows = _to_scipy(X_new) if X_new.is_sparse else X_new.cpu().numpy()
        scores = _teacher_scores(self.teacher, rows, task=self.task, classes=self.classes)
        if self.task == "regression" and self.target_scaler is not None:
            mean, scale = self.target_scaler
            scores = (scores - mean) / scale
        elif self.task == "classification":  # as the fit's own rows: softened (log_target)
            scores = _soften(scores, self.temperature)
        scores = torch.as_tensor(scores, dtype=teacher_out.dtype, device=teacher_out.device)
        scores = scores.reshape((n_new,) + tuple(teacher_out.shape[1:]))
        if self.task == "classification":
            no_label = torch.full((n_new,), _NO_LABEL, dtype=y_true.dtype, device=y_true.device)
        else:
            no_label = torch.full(
                (n_new,) + tuple(y_true.shape[1:]), float("nan"), dtype=y_true.dtype, device=y_true.device
            )
        # Synthetic rows weigh what the batch's real rows weigh on average, so
        # their share of the teacher term does not depend on the weights' scale.
        weight = [torch.cat([w, w.mean().expand(n_new)]) for w in weight]
        return (
            torch.cat([X, X_new]),
            (torch.cat([y_true, no_label]), torch.cat([teacher_out, scores]), *weight),
        )
