"""The public estimators: ``NNClassifier`` and ``NNRegressor``."""


import numpy as np
import scipy.sparse as sp
import torch
from scipy.special import expit, softmax
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .specs._losses import WeightedLoss
from .training._base import BaseNN

__all__ = ["NNClassifier", "NNRegressor"]

_PARAMS_DOC = """
    Parameters
    ----------
    module : spec, nn.Module subclass or None, default=None
        The network: a spec (``MLP``, ``CNN``, ``TorchModule``), an
        ``nn.Module`` subclass (built as ``TorchModule(cls)``) or ``None`` for
        ``MLP()`` (one hidden layer of 100 ReLU units). Nested parameters are
        searchable as ``module__<name>``. With a ``Transformer`` (a
        pretrained Hugging Face model), ``X`` is raw text.
    optimizer : str or torch.optim.Optimizer subclass, default="adam"
        ``sgd``, ``adam``, ``adamw``, ``rmsprop`` or ``adagrad``
        (case-insensitive), or an optimizer class.
    lr : float or "auto", default="auto"
        Learning rate (the peak rate for ``onecycle``). "auto": 1e-3 for a
        network trained from scratch; for a ``Transformer``, the fine-tuning
        rate of its mode (see "Pretrained checkpoints" in the documentation).
    weight_decay : float, default=0.0
        L2 penalty passed to the optimizer.
    momentum : float, default=0.9
        Momentum, used by the optimizers that take one (``sgd``, ``rmsprop``).
    batch_size : int or "auto", default="auto"
        Rows per training batch. "auto": 128; 16 for a ``Transformer``.
    max_epochs : int or "auto", default="auto"
        Upper bound on training epochs. "auto": 200 for NNClassifier, 50 for
        NNRegressor; 20 for a ``Transformer``.
    lr_schedule : str, LRSchedule or "auto", default="auto"
        Learning-rate schedule: a name or an ``LRSchedule`` spec whose
        options are searchable as ``lr_schedule__<option>``. Step counts
        come from the rows each fit actually trains on. "auto":
        ``"constant"``; for a ``Transformer``, a linear warm-up over the
        first epoch, then linear decay to 0 at ``max_epochs``.
    early_stopping : bool or "auto", default="auto"
        Hold out ``validation_fraction`` of the data (stratified for
        classifiers), stop when the validation loss has not improved by
        ``tol`` for ``n_iter_no_change`` epochs, and keep the best weights.
        When False, training stops the same way on the training loss, as
        sklearn's ``MLPClassifier`` does. "auto": False.
    validation_fraction : float, default=0.1
        Share of the data held out when ``early_stopping=True``.
    n_iter_no_change : int or None, default=10
        Epochs without improvement before stopping. None turns the plateau
        stop off: every fit runs ``max_epochs`` epochs (with
        ``early_stopping=True`` the best validation weights are still kept).
    tol : float, default=1e-4
        Minimum loss improvement that counts.
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Precision of the training forward pass and loss (autocast); the
        weights and the optimizer state stay float32, and ``predict`` runs
        in float32. ``"bfloat16"`` pays on CPUs with bfloat16 instructions
        (AVX512-BF16, AMX) and on recent GPUs for wide layers; ``"float16"``
        uses a gradient scaler on CUDA (see "Large models" in the
        documentation for measured figures).
    gradient_accumulation_steps : int, default=1
        Optimizer steps once every this many batches, on the gradient of
        their rows' mean loss: ``batch_size`` is then the micro-batch, and
        ``k`` micro-batches of ``b`` rows train like one batch of ``k*b``
        rows (batch norm aside) in the memory of one. Schedules and pruning
        count optimizer steps.
    max_grad_norm : float or None, default=None
        Clip the global norm of the gradients to this value before each
        optimizer step (``torch.nn.utils.clip_grad_norm_``).
    pruning : Pruning or None, default=None
        Pruning recipe, searchable as ``pruning__<name>``.
    distillation : Distillation or None, default=None
        Distillation recipe, searchable as ``distillation__<name>``.
    quantization : Quantization or None, default=None
        Quantization applied to the trained network at the end of ``fit``
        (after pruning), searchable as ``quantization__<name>``: ``predict``,
        ``score`` and searches then use the quantized network, and pickles
        hold it.
    callbacks : list of (name, skorch callback) or None, default=None
        Extra skorch callbacks; they are copied at every fit.
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``. A model trained on
        a GPU loads and predicts on a CPU-only machine.
    n_threads : int or None, default=None
        Torch threads used by one fit (and by ``predict``). None chooses per
        call from the work per step (batch rows x multiply-adds per row:
        small networks get one thread) and the cores that other processes
        leave free, so a fit on a busy machine is not slower than with one
        thread; inside a joblib (loky), Dask or Ray worker, its share of the
        cores (``OMP_NUM_THREADS``) replaces the free cores, so ``n_jobs``
        parallel fits do not oversubscribe the machine (see "Threads" in
        the performance notes of the documentation).
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling, dropout and the validation
        split. With an int, two fits give bit-identical models on the CPU.
    n_ensemble : int, default=1
        Train this many copies of the network with their own seeds (drawn
        from ``random_state``) together as one stacked model and average
        them: the mean class probability, or the mean prediction. A deep
        ensemble is usually better calibrated and a little more accurate
        than one network, at a fraction of K fits' time. ``history_`` is the
        first member's; ``loss_curve_`` the members' mean. It needs settings
        that train fused (no pruning, distillation, ``warm_start``,
        ``callbacks`` or ``tensorboard_dir``; an optimizer by name) and does
        not combine with ``partial_fit``.
    verbose : int, default=0
        0 is silent; 1 draws a progress bar over the epochs with the latest
        losses, learning rate and sparsity; 2 or more prints one line per
        epoch instead (skorch's table), which suits log files.
    warm_start : bool, default=False
        Continue training the fitted network (and its optimizer state) on
        the next ``fit``; the optimizer state is then kept in pickles.
    tensorboard_dir : str, path-like or None, default=None
        Log the training and validation loss, learning rate and sparsity of
        every epoch for TensorBoard (needs the ``tensorboard`` package).
        Each fit writes its own run directory below this one, named after
        the parameters that differ from the defaults, so the CV fits of a
        search appear side by side.
"""

_CLASS_WEIGHT_DOC = """    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, as in sklearn's linear models: a dict
        ``{label: weight}`` (labels left out weigh 1), ``"balanced"``
        (``n_samples / (n_classes * np.bincount(y))``, from the ``y`` of
        each fit) or None (every class weighs 1). They multiply
        ``sample_weight``. ``partial_fit`` accepts a dict only, since the
        class frequencies of a stream are not known from one batch.
"""


_ATTRS_DOC = """
    net_ : skorch.NeuralNet
        The trained skorch net, without its training machinery (callbacks,
        validation split, shuffling generator), which the next warm-started
        or partial fit builds again.
    module_ : torch.nn.Module
        The trained network (``net_.module_``), in eval mode.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Feature names, when ``X`` has string column names.
    history_ : skorch.History
        Per-epoch (and per-batch) record of losses and learning rate.
    loss_curve_ : list of float
        Training loss at the end of each epoch.
    n_iter_ : int
        Number of epochs run.
    n_params_ : int
        Number of parameters of the trained network.
    n_trainable_params_ : int
        Number of those parameters that training updates (``requires_grad``).
    n_threads_ : int
        Torch threads the last fit used.
    sparsity_ : float
        Fraction of zero weights among prunable weights (with ``pruning``).
    pruning_summary_ : list of dict
        One record per ``Linear``/convolution layer (with ``pruning``):
        shapes before and after, sparsity, whether it was pruned.
    quantization_summary_ : dict
        What quantization did (with ``quantization``): ``method``, the
        quantized ``layers``, and the network's weights in bytes before
        (``float_bytes``) and after (``quantized_bytes``).
"""


def _single_network(estimator):
    """``partial_fit`` exists for one network; an ensemble is trained whole by ``fit``."""
    if estimator.n_ensemble != 1:
        raise AttributeError(
            f"partial_fit is not available with n_ensemble={estimator.n_ensemble}: an ensemble's "
            "members train together in fit. Use n_ensemble=1 to train in steps."
        )
    return True


class NNClassifier(ClassifierMixin, BaseNN):
    __doc__ = (
        """Neural network classifier whose training recipe is a set of hyperparameters.

    The network outputs one logit per class and trains with cross-entropy,
    weighted per row by ``sample_weight`` and ``class_weight``, through a
    skorch net. Labels of any type (strings, ints, bools) come back as given.
"""
        + _PARAMS_DOC
        + _CLASS_WEIGHT_DOC
        + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
"""
        + _ATTRS_DOC
        + """
    See Also
    --------
    NNRegressor : The regression counterpart.
    sklearn.neural_network.MLPClassifier : sklearn's own multi-layer perceptron.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skopt_nn import NNClassifier, MLP
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), NNClassifier(
    ...     MLP(hidden_layer_sizes=(16,)), lr=0.01, max_epochs=50, random_state=0))
    >>> clf.fit(X, y).score(X, y) > 0.9
    True
    >>> clf.predict_proba(X[:1]).shape
    (1, 3)
    """
    )

    _task = "classification"

    _parameter_constraints = {
        **BaseNN._parameter_constraints,
        "class_weight": [None, dict, StrOptions({"balanced"})],
    }

    def __init__(
        self,
        module=None,
        *,
        optimizer="adam",
        lr="auto",
        weight_decay=0.0,
        momentum=0.9,
        batch_size="auto",
        max_epochs="auto",
        lr_schedule="auto",
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        precision="float32",
        gradient_accumulation_steps=1,
        max_grad_norm=None,
        pruning=None,
        distillation=None,
        quantization=None,
        class_weight=None,
        callbacks=None,
        device="cpu",
        n_threads=None,
        random_state=None,
        n_ensemble=1,
        verbose=0,
        warm_start=False,
        tensorboard_dir=None,
    ):
        super().__init__(
            module,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            batch_size=batch_size,
            max_epochs=max_epochs,
            lr_schedule=lr_schedule,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            precision=precision,
            gradient_accumulation_steps=gradient_accumulation_steps,
            max_grad_norm=max_grad_norm,
            pruning=pruning,
            distillation=distillation,
            quantization=quantization,
            callbacks=callbacks,
            device=device,
            n_threads=n_threads,
            random_state=random_state,
            n_ensemble=n_ensemble,
            verbose=verbose,
            warm_start=warm_start,
            tensorboard_dir=tensorboard_dir,
        )
        self.class_weight = class_weight

    def _class_weighted(self, y, sample_weight, weighted, *, partial):
        if self.class_weight is None:
            return sample_weight, weighted
        if _is_multilabel(y):
            raise ValueError(
                f"class_weight={self.class_weight!r} is not supported for multilabel targets: "
                "a class weight weighs a row by its one label, and a multilabel row has several. "
                "Pass per-row weights as sample_weight instead."
            )
        if partial and self.class_weight == "balanced":
            raise ValueError(  # SGDClassifier's advice
                "class_weight 'balanced' is not supported for partial_fit. In order to use "
                "'balanced' weights, use compute_class_weight('balanced', classes=classes, y=y). "
                "In place of y you can use a large enough sample of the full training set "
                "target to properly estimate the class frequency distributions. Pass the "
                "resulting weights as the class_weight parameter."
            )
        y = column_or_1d(y)
        return sample_weight * compute_sample_weight(self.class_weight, y), True

    def _fit_task(self):
        return "multilabel" if getattr(self, "_multilabel_", False) else "classification"

    def _encode_y(self, y, *, first_call, classes=None, sample_weight=None):
        multilabel = _is_multilabel(y)
        if not first_call and multilabel != getattr(self, "_multilabel_", False):
            raise ValueError(
                f"y is {'a multilabel indicator matrix' if multilabel else 'one label per row'}, "
                f"but {type(self).__name__} was fitted with "
                f"{'one label per row' if multilabel else 'a multilabel indicator matrix'}."
            )
        if multilabel:
            return self._encode_multilabel(y, first_call=first_call, classes=classes)
        if sp.issparse(y):
            raise ValueError(  # column_or_1d's wording, which cannot read a sparse y
                f"y should be a 1d array, got a sparse matrix of shape {y.shape} instead."
            )
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if classes is not None and first_call:
            classes = unique_labels(classes)
        elif first_call:
            classes = unique_labels(y)
        else:
            classes = self.classes_
        if first_call and len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data, "
                f"but the data contains only one class: {classes[0]!r}."
            )
        encoded = np.searchsorted(classes, y)
        encoded = np.clip(encoded, 0, len(classes) - 1)
        unseen = classes[encoded] != y
        if unseen.any():
            raise ValueError(  # sklearn's MLPClassifier wording
                f"`y` has classes not in `self.classes_`. `self.classes_` has {classes}. "
                f"'y' has {unique_labels(y)}. Every label must be known at the first fit "
                "(or passed as `classes` to the first partial_fit)."
            )
        if first_call:
            self.classes_ = classes
            self.n_outputs_ = len(classes)
            self._multilabel_ = False
        return torch.as_tensor(encoded, dtype=torch.long), len(classes)

    def _encode_multilabel(self, y, *, first_call, classes=None):
        """An indicator matrix ``(n, k)`` as float targets of ``k`` sigmoid outputs."""
        y = y.toarray() if sp.issparse(y) else np.asarray(y)
        n_labels = y.shape[1]
        # As sklearn's LabelBinarizer: the classes of an indicator matrix are its columns.
        labels = np.arange(n_labels)
        if first_call and classes is not None and not np.array_equal(unique_labels(classes), labels):
            raise ValueError(
                f"classes={classes!r} does not describe a multilabel indicator y with {n_labels} "
                f"columns; pass classes=np.arange({n_labels})."
            )
        if not first_call and n_labels != self.n_outputs_:
            raise ValueError(
                f"y has {n_labels} labels, but {type(self).__name__} was fitted with {self.n_outputs_}."
            )
        if first_call:
            self.classes_ = labels
            self.n_outputs_ = n_labels
            self._multilabel_ = True
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)), n_labels

    def _validation_stratify(self, y):
        return None if _is_multilabel(y) else y

    def _criterion(self):
        return WeightedLoss(self._fit_task())

    @available_if(_single_network)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch, continuing from the current weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            All classes that can appear in ``y``; required on the first call.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row, as in ``fit``.

        Returns
        -------
        self : object
        """
        if not hasattr(self, "net_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if hasattr(self, "net_") and classes is not None and not np.array_equal(
            unique_labels(classes), self.classes_
        ):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                f"was: {self.classes_!r}"
            )
        return self._partial_fit(X, y, classes=classes, sample_weight=sample_weight)

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        logits = self._forward(X).astype(np.float64)
        if getattr(self, "_multilabel_", False):  # one independent probability per label
            return expit(logits)
        return softmax(logits, axis=1)

    def predict(self, X):
        """Most probable class for each row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        logits = self._forward(X)
        if getattr(self, "_multilabel_", False):  # the indicator matrix, as sklearn's MLPClassifier gives it
            return (logits > 0).astype(int)
        return self.classes_[np.argmax(logits, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


def _is_multilabel(y):
    return y is not None and getattr(y, "ndim", 1) == 2 and type_of_target(y) == "multilabel-indicator"


class NNRegressor(RegressorMixin, BaseNN):
    __doc__ = (
        """Neural network regressor whose training recipe is a set of hyperparameters.

    Targets are standardised inside ``fit`` (weighted mean and scale learnt
    from the data given to that fit) and predictions are mapped back, so one learning
    rate suits targets of any scale; ``loss_curve_`` is the mean squared
    error in standardised units. Several targets (2-D ``y``) are supported.
"""
        + _PARAMS_DOC
        + """
    Attributes
    ----------
    n_outputs_ : int
        Number of regression targets.
"""
        + _ATTRS_DOC
        + """
    See Also
    --------
    NNClassifier : The classification counterpart.
    sklearn.neural_network.MLPRegressor : sklearn's own multi-layer perceptron.

    Examples
    --------
    >>> import numpy as np
    >>> from skopt_nn import NNRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 3))
    >>> y = X @ [1.0, -2.0, 0.5] + 100
    >>> reg = NNRegressor(lr=0.01, max_epochs=100, random_state=0).fit(X, y)
    >>> reg.score(X, y) > 0.95
    True
    """
    )

    _task = "regression"

    # Regression overfits small tables sooner than classification: 50 epochs
    # beat 200 on diabetes in 5-fold CV (see benchmarks/bench_defaults.py).
    _AUTO = {**BaseNN._AUTO, "max_epochs": 50}

    def _encode_y(self, y, *, first_call, classes=None, sample_weight=None):
        y = np.asarray(y, dtype=np.float64)
        y2 = y.reshape(len(y), -1)
        if first_call:
            # Weighted, so that a weight of k and k copies of a row agree.
            mean = np.average(y2, axis=0, weights=sample_weight)
            scale = np.sqrt(np.average((y2 - mean) ** 2, axis=0, weights=sample_weight))
            scale[scale == 0] = 1.0
            self._y_scaler_ = (mean, scale)
            self.n_outputs_ = y2.shape[1]
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y2.shape[1]} targets, but {type(self).__name__} was fitted with {self.n_outputs_}."
            )
        mean, scale = self._y_scaler_
        y_std = ((y2 - mean) / scale).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(y_std)), y2.shape[1]

    def _encode_teacher(self, teacher_out):
        mean, scale = self._y_scaler_
        out = np.asarray(teacher_out, dtype=np.float64).reshape(-1, self.n_outputs_)
        return torch.from_numpy(((out - mean) / scale).astype(np.float32))

    def _criterion(self):
        return WeightedLoss("regression")

    @available_if(_single_network)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch, continuing from the current weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row, as in ``fit``.

        Returns
        -------
        self : object
        """
        return self._partial_fit(X, y, sample_weight=sample_weight)

    def predict(self, X):
        """Predicted targets for ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        check_is_fitted(self)
        mean, scale = self._y_scaler_
        out = self._forward(X).astype(np.float64) * scale + mean
        return out.ravel() if self.n_outputs_ == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
