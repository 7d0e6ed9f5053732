"""Shared estimator logic: validation, building the skorch net, the epoch loop.

The public estimators are plain sklearn estimators. ``fit`` validates the
data, resolves every spec (module, optimizer, schedule, pruning,
distillation) into torch/skorch objects, trains a skorch ``NeuralNet`` kept as
``net_``, and only then publishes the fitted attributes. A fit that fails
puts every fitted attribute back as it was, so an earlier model stays usable.

Recipe parts plug in through two small protocols (see ``_fit_core``):

* a pruning spec gives ``_make_callback(module, max_epochs=..., steps_per_epoch=...,
  start_epoch=..., generator=...)`` -> skorch callback, and
  ``_finalize(module, callback) -> (module, info)`` where ``info`` has
  ``"sparsity"`` and ``"layers"``;
* a distillation spec gives ``_prepare(X, y, task=..., classes=..., random_state=...,
  sample_weight=...)``
  -> ``(teacher_outputs, fitted_teacher)``, ``_criterion(task)`` -> loss module
  taking ``(y_pred, (y_true, teacher_out[, weight]))``, and
  ``_augmenter(fitted_teacher, task=..., generator=..., target_scaler=..., classes=...)``
  -> ``None`` or ``fn(X_batch, y_batch) -> (X_batch, y_batch)``.

Unequal sample weights travel with the targets: a batch's targets are
``y`` or ``(y, weight)``, with distillation ``(y, teacher_out)`` or
``(y, teacher_out, weight)``, and each loss is the weighted mean
``sum(w * l) / sum(w)`` of the batch (see ``_losses``). Equal weights
(none given, or constant) travel as nothing, so they give the very same
model as no weights.

A fitted estimator keeps the trained module, the history and the optimizer,
and none of the training machinery: its net's callbacks, split, shuffling
generator and setters are dropped at the end of ``fit`` and built afresh by
the next warm-started or partial fit (see ``_lean``).
"""

import copy
import math
import numbers
import os
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.model_selection import train_test_split
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
from torch import nn

from ._ensemble import Ensemble, fit_members
from ._callbacks import DivergenceGuard, ValidScore
from ._errors import DivergenceError
from ._fit_state import FitState
from .data import TensorData, as_float_tensor, as_text_column
from ..specs.modules import accepts_sparse, count_params, resolve_module
from ..specs.optim import resolve_optimizer
from ..specs.quantization import continue_refusal, float_copy, quiet_ao
from ..specs.modules import MLP
from ..specs._spec import LeanParams
from ..specs.schedules import LRSchedule, ScheduleCallback, resolve_schedule
from ..specs.transformer import accepts_text, holds_text_network, text_encoder
from ._net import _Holdout, _lean, _Net, _register_optimizer_setters, finished_net, make_net
from ._pickling import NetRecord, net_record, without_history
from ._loop import PRECISIONS, steps_in_epoch
from ._progress import _fit_callbacks
from ._stopping import Plateau, outputs_diverged
from ._runtime import (
    GLOBAL_RNG, auto_threads, cpu_low_precision, manual_seed, predict_rows, resolve_device, row_cost, seeded,
    torch_threads,
)

__all__ = ["DivergenceError", "BaseNN"]


_MIN_ROWS = 8


def _rows_alike(module, xb):
    """``module(xb)``, each row computed as it would be inside a larger batch.

    CPU matrix kernels sum a batch of one to three rows in another order than
    a full batch (a matrix-vector product), so a row's outputs would move in
    the 7th digit with the rows predicted beside it. A dense batch of fewer
    than ``_MIN_ROWS`` rows is padded with zero rows, which every layer
    computes row by row, and the padding is dropped from the outputs.
    """
    n = len(xb)
    if n >= _MIN_ROWS or xb.is_sparse or not torch.is_floating_point(xb):
        return module(xb)
    pad = xb.new_zeros((_MIN_ROWS - n, *xb.shape[1:]))
    return module(torch.cat([xb, pad]))[:n]


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


def _fit_defaults(estimator, module):
    """What the estimator's "auto" training parameters stand for with ``module``."""
    spec = module if hasattr(module, "fit_defaults") else None
    return {**estimator._AUTO, **(spec.fit_defaults() if spec is not None else {})}


class BaseNN(LeanParams, BaseEstimator):
    """Logic shared by ``NNClassifier`` and ``NNRegressor``; not public."""

    _parameter_constraints = {
        "module": "no_validation",
        "optimizer": "no_validation",
        "lr": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "momentum": [Interval(numbers.Real, 0, 1, closed="both")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "lr_schedule": "no_validation",
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "precision": [StrOptions(set(PRECISIONS))],
        "gradient_accumulation_steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_grad_norm": [None, Interval(numbers.Real, 0, None, closed="neither")],
        "pruning": "no_validation",
        "distillation": "no_validation",
        "quantization": "no_validation",
        "callbacks": [None, list],
        "device": "no_validation",
        "n_threads": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "n_ensemble": [Interval(numbers.Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "tensorboard_dir": [None, str, os.PathLike],
    }

    # Set by the subclasses.
    _task = None

    # What the parameters left at "auto" stand for with a network trained
    # from scratch; a pretrained network's spec gives its own (fit_defaults).
    _AUTO = {"lr": 1e-3, "batch_size": 128, "max_epochs": 200, "lr_schedule": "constant",
             "early_stopping": False}

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
        callbacks=None,
        device="cpu",
        n_threads=None,
        random_state=None,
        n_ensemble=1,
        verbose=0,
        warm_start=False,
        tensorboard_dir=None,
    ):
        self.module = module
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.lr_schedule = lr_schedule
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.precision = precision
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.max_grad_norm = max_grad_norm
        self.pruning = pruning
        self.distillation = distillation
        self.quantization = quantization
        self.callbacks = callbacks
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.n_ensemble = n_ensemble
        self.verbose = verbose
        self.warm_start = warm_start
        self.tensorboard_dir = tensorboard_dir

    def set_params(self, **params):
        """Set the parameters; nested names reach a default the parameter stands for.

        ``module=None`` stands for ``MLP()`` and ``lr_schedule="step"`` for
        ``LRSchedule("step")``: a nested name (``module__width``,
        ``lr_schedule__gamma``) turns them into that spec first, so a search
        can set nested values of a choice among strings and specs, or on an
        estimator left at its default module (sklearn's own ``set_params``
        fails there with "'NoneType' object has no attribute 'set_params'").
        """
        heads = {key.partition("__")[0] for key in params if "__" in key}
        if "module" in heads and params.get("module", self.module) is None:
            params = {**params, "module": MLP()}
        if "lr_schedule" in heads:
            schedule = params.get("lr_schedule", self.lr_schedule)
            if _is_auto(schedule):  # the schedule "auto" stands for, with the (new) module
                module = params.get("module", self.module)
                schedule = copy.deepcopy(_fit_defaults(self, module)["lr_schedule"])
            if isinstance(schedule, str):
                schedule = LRSchedule(schedule)
            params = {**params, "lr_schedule": schedule}
        return super().set_params(**params)

    def _setting(self, name):
        """The value a training parameter takes in a fit: its own, or what "auto" stands for.

        ``lr``, ``batch_size``, ``max_epochs``, ``lr_schedule`` and
        ``early_stopping`` default to "auto": the values of the network's
        spec (``fit_defaults``, the fine-tuning recipe of a ``Transformer``)
        where it has them, else those of a network trained from scratch.
        """
        value = getattr(self, name)
        return _fit_defaults(self, self.module)[name] if _is_auto(value) else value

    def __deepcopy__(self, memo):
        # A copy in memory is whole (history included): only files are lean.
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        for key, value in self.__dict__.items():
            copied.__dict__[key] = copy.deepcopy(value, memo)
        return copied

    def __getstate__(self):
        state = dict(super().__getstate__())  # sklearn's may be the instance's own __dict__
        # A finished fit is saved lean: its per-epoch history stays with the
        # model in memory (history_; loss_curve_ is kept), not in every file.
        # A fit that goes on (warm_start, a candidate between rungs) keeps it.
        # Its net is the network and the estimator's settings: it is rebuilt
        # from them when it holds nothing else (NetRecord).
        net = state.get("net_")
        if net is not None and not self.warm_start and "_resume_rng_" not in state:
            state["net_"] = net_record(net, _Net) or without_history(net)
        return state

    def __setstate__(self, state):
        record = state.get("net_")
        super().__setstate__(state)
        if isinstance(record, NetRecord):
            with quiet_ao():
                module = record.module()
            # An int8 network has no float parameters for skorch's optimizer:
            # it is made over a stand-in, then left holding none, as fit leaves it.
            net = finished_net(self, module, float_module=nn.Linear(1, 1) if record.bare_optimizer else None)
            for key, value in record.steps.items():
                setattr(net, key, value)
            self.net_ = net

    # -- fitted views onto the skorch net (one copy of the weights in a pickle)
    @property
    def _is_quantized(self):
        """Whether the fitted network is a quantized copy (``quantization_summary_`` published)."""
        return getattr(self, "quantization_summary_", None) is not None

    @property
    def _float_module(self):
        """The float network a quantized fit keeps to train on (warm start, partial fit), or None."""
        return getattr(self, "_float_module_", None)

    @property
    def module_(self):
        """The trained ``torch.nn.Module``."""
        try:
            return self.__dict__["net_"].module_
        except KeyError:
            raise AttributeError("module_") from None

    @property
    def history_(self):
        """skorch ``History`` of the fit: one row per epoch."""
        try:
            return self.__dict__["net_"].history
        except KeyError:
            raise AttributeError("history_") from None

    # -- hooks for the subclasses
    def _encode_y(self, y, *, first_call, classes=None, sample_weight=None):
        """Return ``(y_tensor, n_outputs)``; sets label attributes on first call."""
        raise NotImplementedError

    def _class_weighted(self, y, sample_weight, weighted, *, partial):
        """``(sample_weight, weighted)`` after the estimator's class weights, if any."""
        return sample_weight, weighted

    def _criterion(self):
        raise NotImplementedError

    def _fit_task(self):
        """The task of the targets being fitted: ``_task``, or "multilabel"."""
        return self._task

    def _validation_stratify(self, y_encoded):
        return None

    # -- fit entry points
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network on ``X``, ``y``.

        With ``warm_start=True`` and a fitted model, training continues from
        the current weights and optimizer state; otherwise it starts afresh.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; float64 is converted to float32 once.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row; None weighs every row 1. The
            loss of a batch is ``sum(w * loss) / sum(w)``, so only the
            ratios of the weights matter; weights follow their rows into the
            early-stopping validation set, whose loss and score are weighted
            too. With one batch per epoch (``batch_size`` at least the
            number of rows), an integer weight equals repeating the row.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        continuing = self.warm_start and hasattr(self, "net_")
        return self._guarded_fit(
            X, y, continuing=continuing, epochs=self._setting("max_epochs"), sample_weight=sample_weight
        )

    def _partial_fit(self, X, y, classes=None, sample_weight=None):
        # sklearn's _fit_context skips validation on partial_fit once fitted;
        # parameters changed between calls (lr=-1) must still be refused.
        self._validate_params()
        continuing = hasattr(self, "net_")
        return self._guarded_fit(
            X, y, continuing=continuing, epochs=1, classes=classes, partial=True,
            sample_weight=sample_weight,
        )

    def _fit_epochs(self, X, y, epochs, sample_weight=None):
        """Train the next ``epochs`` epochs of one ``max_epochs``-long fit.

        Unlike ``partial_fit``, consecutive calls replay a single ``fit``:
        the seed, the shuffling generator and torch's RNG carry over between
        calls, and schedules and pruning stay laid out over ``max_epochs``,
        so calls whose epochs add up to ``max_epochs`` end where one ``fit``
        with the same ``random_state`` ends (multi-fidelity searches train
        candidates rung by rung this way). The plateau detection of
        ``n_iter_no_change`` starts afresh at each call.
        """
        self._validate_params()
        continuing = hasattr(self, "net_") and getattr(self, "_resume_rng_", None) is not None
        return self._guarded_fit(X, y, continuing=continuing, epochs=epochs, resume=True,
                                 sample_weight=sample_weight)

    def _guarded_fit(self, X, y, **kwargs):
        saved = {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("__")}
        net = saved.get("net_")
        snapshot = None
        if net is not None and kwargs["continuing"]:
            published = (net.module_, net.module, net.device, net.optimizer_)
            # The weights training changes in place: the float network a
            # quantized model keeps, or the network itself. A quantized model
            # without a float copy trains a new one (float_copy), which
            # changes nothing of the published model.
            no_float = "quantization_summary_" in saved and "_float_module_" not in saved
            trained = None if no_float else saved.get("_float_module_", net.module_)
            snapshot = (
                None if trained is None else copy.deepcopy(trained.state_dict()),
                copy.deepcopy(net.optimizer_.state_dict()),
                len(net.history),
            )
        try:
            return self._fit_core(X, y, **kwargs)
        except BaseException:
            for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
                if key not in saved:
                    delattr(self, key)
            vars(self).update(saved)
            if snapshot is not None:
                if trained is not None:
                    trained.load_state_dict(snapshot[0])
                net.module_, net.module, net.device, net.optimizer_ = published
                net.optimizer_.load_state_dict(snapshot[1])
                del net.history[snapshot[2] :]
                _lean(net)
            raise

    def _fit_core(self, X, y, *, continuing, epochs, classes=None, partial=False, resume=False,
                  sample_weight=None):
        if self.n_ensemble > 1:
            self._check_recipe(type(self).__name__)
            if partial or (continuing and not resume):
                raise ValueError(
                    f"n_ensemble={self.n_ensemble} trains a new ensemble at every fit; partial_fit "
                    "and warm_start need n_ensemble=1."
                )
            return self._fit_ensemble(X, y, sample_weight, epochs=epochs if resume else None,
                                      continuing=continuing)
        fit = self._start_fit(X, y, continuing=continuing, epochs=epochs, classes=classes,
                              partial=partial, resume=resume, sample_weight=sample_weight)
        with seeded(fit.seed, fit.device), torch_threads(self.n_threads) as threads:
            self._build_fit(fit, threads)
            n_run = self._train(fit.net, fit.train, epochs, fit.loss_curve)
            self._end_fit(fit, n_run)
        return self

    def _check_recipe(self, owner):
        """The compression specs are specs, with valid options that fit together (before training)."""
        for name, hook in (("pruning", "_make_callback"), ("distillation", "_prepare"),
                           ("quantization", "_apply")):
            value = getattr(self, name)
            if value is not None and not hasattr(value, hook):
                raise InvalidParameterError(
                    f"The {name!r} parameter of {owner} must be None or a "
                    f"{name.title()} spec; got {value!r} instead."
                )
        if self.quantization is not None:
            self.quantization._check_fit(module=self.module, pruning=self.pruning,
                                         n_ensemble=self.n_ensemble)

    # The three phases of one fit. The fused trainer (``_fused``) runs the
    # first two and the last for each member and trains the members together
    # in between, so a fused member is set up and published exactly as a
    # plain fit is.
    def _start_fit(self, X, y, *, continuing, epochs, classes=None, partial=False, resume=False,
                   sample_weight=None):
        """Validate the data and the recipe; return the fit's state (no torch RNG used)."""
        owner = type(self).__name__
        if y is None:
            raise ValueError(
                f"{owner} requires y to be passed, but the target y is None."
            )
        text = self._takes_text()
        X, y = validate_data(
            self,
            as_text_column(X, owner) if text else X,
            y,
            reset=not continuing,
            accept_sparse=self._sparse_formats(),
            dtype=None if text else [np.float32, np.float64],
            y_numeric=self._task == "regression",
            # 2-D classification targets are checked to be multilabel in _encode_y.
            multi_output=True,
        )
        device = resolve_device(self.device)
        schedule = resolve_schedule(self._setting("lr_schedule"), owner)
        opt_cls, opt_kwargs = resolve_optimizer(
            self.optimizer, weight_decay=self.weight_decay, momentum=self.momentum, owner=owner
        )
        self._check_recipe(owner)
        if continuing and self._float_module is None and self._is_quantized:
            refusal = continue_refusal(self.quantization_summary_, owner)
            if refusal is not None:
                raise refusal
        weighted = sample_weight is not None
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        sample_weight, weighted = self._class_weighted(y, sample_weight, weighted, partial=partial)
        # Only ratios matter (see _losses); dividing by the mean keeps float32
        # far from overflow and underflow, and makes constant weights ones.
        sample_weight = sample_weight / sample_weight.mean()
        y_t, n_outputs = self._encode_y(
            y, first_call=not continuing, classes=classes, sample_weight=sample_weight
        )
        if text:  # tokenized once per fit, by the fitted network's tokenizer when continuing
            encode = text_encoder(self.module_) if continuing else resolve_module(self.module, owner).encode
            X_t = encode(X[:, 0])
        else:
            X_t = as_float_tensor(X)
        # Equal weights travel as None: the fit then runs the fused mean losses.
        w_t = None if np.all(sample_weight == 1.0) else torch.from_numpy(sample_weight.astype(np.float32))

        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        start_epoch = self.n_iter_ if continuing else 0
        if partial:
            seed = (seed + start_epoch) % np.iinfo(np.int32).max
        return FitState(
            X=X, y=y, X_t=X_t, y_t=y_t, w_t=w_t, n_outputs=n_outputs, weighted=weighted,
            sample_weight=sample_weight, device=device, schedule=schedule, opt_cls=opt_cls,
            opt_kwargs=opt_kwargs, seed=seed, start_epoch=start_epoch, continuing=continuing,
            epochs=epochs, classes=classes, partial=partial, resume=resume, owner=owner,
        )

    def _build_fit(self, fit, threads=None):
        """Teacher, data split, module, callbacks and the skorch net, inside ``seeded``.

        ``threads`` (from ``torch_threads``) receives the thread count the
        work calls for when ``n_threads`` is None; the fused trainer passes
        None and chooses for the whole group.
        """
        X, y, device, seed, partial, resume = fit.X, fit.y, fit.device, fit.seed, fit.partial, fit.resume
        continuing, w_t, owner = fit.continuing, fit.w_t, fit.owner
        generator = torch.Generator().manual_seed(seed)
        if resume and continuing:  # pick up the random streams where the last call left them
            generator.set_state(self._resume_rng_[0])
            with GLOBAL_RNG:
                torch.set_rng_state(self._resume_rng_[1])

        teacher_out, teacher = None, None
        task = self._fit_task()
        criterion = self._criterion()
        weight = () if w_t is None else (w_t,)
        target = (fit.y_t, *weight) if weight else fit.y_t
        if self.distillation is not None:
            teacher_out, teacher = self.distillation._prepare(
                X, y, task=task, classes=getattr(self, "classes_", None),
                random_state=seed, sample_weight=fit.sample_weight if fit.weighted else None,
            )
            teacher_out = self._encode_teacher(teacher_out)
            criterion = self.distillation._criterion(task)
            target = (fit.y_t, teacher_out, *weight)

        data = TensorData(fit.X_t, target)
        train, valid = data, None
        if self._setting("early_stopping") and not partial:
            train, valid = self._split(data, y, seed)
            if w_t is not None and not bool(valid.take(slice(None))[1][-1].any()):
                raise ValueError(  # SGDClassifier's wording
                    "The sample weights for validation set are all zero, consider using a "
                    "different random state."
                )
        steps_per_epoch = steps_in_epoch(len(train), self._setting("batch_size"), self.gradient_accumulation_steps)

        if continuing:
            net = self.net_
            module = net.module_
            fresh_optimizer = False
            if self._float_module is not None:  # quantized: training goes on in float
                module = self._float_module
                net.module = net.module_ = module
                net.device = device
            elif self._is_quantized:
                # No float weights were kept (a plain fit, a loaded model):
                # training goes on from the rounded ones, with a new optimizer.
                module = float_copy(module)
                net.module = net.module_ = module
                net.device = device
                fresh_optimizer = True
        else:
            with GLOBAL_RNG:  # reseeded: the initial weights are this fit's own
                manual_seed(seed, device)
                module = self._build_module(X.shape[1], fit.n_outputs)
            if self.quantization is not None:
                module = self.quantization._prepare_training(module, fit.X_t)

        n_threads = self.n_threads
        if n_threads is None and threads is not None:
            n_threads = threads.set(auto_threads(
                min(self._setting("batch_size"), len(train)) * row_cost(module, X.shape[1], device)))
        schedule_start = fit.start_epoch if partial or resume else 0
        callbacks, pruner = self._callbacks(
            fit.schedule, module, steps_per_epoch, schedule_start, generator, fit.epochs,
            weighted=w_t is not None,
        )
        device_data = self._place(train, device), self._place(valid, device)
        setup = dict(
            callbacks=callbacks,
            criterion=criterion,
            train_split=_Holdout(device_data[1]),
            iterator_train__generator=generator,
        )
        if continuing:
            self._renew_net(net, fit.opt_cls, fit.opt_kwargs, **setup)
            if fresh_optimizer:
                net.initialize_optimizer()
        else:
            opt_kwargs = fit.opt_kwargs
            groups = getattr(module, "optimizer_groups", None)
            groups = groups(self._setting("lr")) if groups is not None else None
            if groups:  # per-layer rates (Transformer's layer_lr_decay)
                opt_kwargs = {**opt_kwargs, "param_groups": groups}
            net = make_net(self, module, fit.opt_cls, opt_kwargs, device=device, **setup)
        if self.gradient_accumulation_steps > 1 and isinstance(net.optimizer_, torch.optim.LBFGS):
            raise ValueError(
                f"gradient_accumulation_steps={self.gradient_accumulation_steps} needs an optimizer "
                "that steps once on accumulated gradients; LBFGS re-evaluates its closure. Use "
                "gradient_accumulation_steps=1 with LBFGS."
            )
        if self.precision != "float32" and device == "cpu" and cpu_low_precision(self.precision) is False:
            warnings.warn(
                f"precision={self.precision!r}: this CPU has no {self.precision} instructions, so "
                "autocast emulates them and the fit is usually slower than in float32.",
                UserWarning,
                stacklevel=2,
            )
        net.configure_steps(precision=self.precision, accumulation=self.gradient_accumulation_steps,
                            max_grad_norm=self.max_grad_norm)
        if self.distillation is not None:
            if getattr(self.distillation, "augment", None) is not None and self._takes_text():
                raise ValueError(
                    f"Distillation(augment={self.distillation.augment!r}) makes synthetic rows of "
                    "numeric features; a text network's inputs are tokens. Use augment=None."
                )
            net.batch_transform_ = self.distillation._augmenter(
                teacher, task=task, generator=generator,
                target_scaler=getattr(self, "_y_scaler_", None),
                classes=getattr(self, "classes_", None),
            )
        fit.net, fit.train, fit.valid, fit.generator = net, device_data[0], device_data[1], generator
        fit.teacher, fit.pruner, fit.n_threads, fit.callbacks = teacher, pruner, n_threads, callbacks
        fit.steps_per_epoch = steps_per_epoch
        fit.loss_curve = list(self.loss_curve_) if continuing else []
        return fit

    def _build_module(self, n_features_in, n_outputs):
        """A fresh network for these sizes: the module spec's, or an ensemble of them."""
        spec = resolve_module(self.module, type(self).__name__)
        modules = [spec.build(n_features_in, n_outputs) for _ in range(self.n_ensemble)]
        for module in modules:
            if not isinstance(module, nn.Module):
                raise TypeError(f"The module spec built {type(module).__name__}, not an nn.Module.")
        return modules[0] if len(modules) == 1 else Ensemble(modules, self._fit_task())

    def _fit_ensemble(self, X, y, sample_weight, *, epochs=None, continuing=False):
        """``n_ensemble`` members with their own seeds, trained fused; one averaged network.

        With ``epochs`` (``_fit_epochs``: an ASHA rung), the members train that
        many more epochs, continuing where the last call left them; they are
        kept (``_members_``, sharing their modules with the ensemble) for the
        next call.
        """
        kept = self.__dict__.get("_members_") if continuing else None
        members = fit_members(self, X, y, sample_weight, epochs=epochs, members=kept)
        first = members[0]
        for key, value in vars(first).items():
            if key.endswith("_") and not key.startswith("__") and key != "net_":
                setattr(self, key, value)
        if epochs is None:
            self.__dict__.pop("_members_", None)
        else:
            self._members_ = members
        # the first member's history, settings and (empty) optimizer, in a copy
        # whose network is the ensemble: the member's own net stays as it is
        net = copy.copy(first.net_)
        module = Ensemble([m.module_ for m in members], self._fit_task()).eval()
        net.module = net.module_ = module
        net.initialize_optimizer()
        _lean(net)
        self.net_ = net
        self.n_iter_ = max(m.n_iter_ for m in members)
        self.loss_curve_ = [
            float(np.mean([m.loss_curve_[i] for m in members if i < len(m.loss_curve_)]))
            for i in range(self.n_iter_)
        ]
        self.n_params_ = count_params(module)
        self.n_trainable_params_ = count_params(module, trainable=True)
        if self.quantization is not None:
            rows = None
            if self.quantization._calibrates:
                rows = as_float_tensor(check_array(X, accept_sparse=False, dtype=np.float32))
            self._quantize(net, rows, keep_float=False)
        return self

    def _end_fit(self, fit, n_run):
        """Check the trained network, make pruning permanent, publish the fitted attributes."""
        net, pruner = fit.net, fit.pruner
        self._check_finite(net, fit.train)
        resume_rng = (fit.generator.get_state(), torch.get_rng_state()) if fit.resume else None

        if pruner is not None:
            module, info = self.pruning._finalize(net.module_, pruner)
            if module is not net.module_:
                # net.module too: it still holds the unpruned network,
                # which pickles would otherwise carry.
                net.module = net.module_ = module
                net.initialize_optimizer()
            self.sparsity_ = info["sparsity"]
            self.pruning_summary_ = info["layers"]
        finish = getattr(net.module_, "finish_fit", None)
        if finish is not None and finish():  # LoRA adapters merged: new parameters
            net.initialize_optimizer()

        keep = self.warm_start or fit.partial or fit.resume
        self._publish(net, n_iter=fit.start_epoch + n_run, loss_curve=fit.loss_curve,
                      n_threads=fit.n_threads, teacher=fit.teacher, keep_optimizer=keep)
        self._quantize(net, fit.train.X, keep_float=keep)
        if resume_rng is None:
            self.__dict__.pop("_resume_rng_", None)
        else:
            self._resume_rng_ = resume_rng

    def _as_finished(self):
        """This fitted estimator as a finished ``fit`` would leave it: a copy, or itself.

        A fit that is to continue (a multi-fidelity search's candidate between
        rungs) keeps its optimizer state, its random state and a quantized
        model's float network; a finished fit keeps them only with
        ``warm_start``. Cost scorers measure the finished form.
        """
        resuming = "_resume_rng_" in self.__dict__
        if not resuming or self.warm_start:
            return self
        finished = copy.deepcopy(self)
        finished.__dict__.pop("_resume_rng_", None)
        finished.__dict__.pop("_float_module_", None)
        finished.net_.optimizer_.state.clear()
        return finished

    def _quantize(self, net, rows, *, keep_float):
        """Replace the published float network by its quantized copy (with ``quantization``).

        The fitted attributes that describe the network (``n_params_``) stay
        those of the float network. ``rows`` are training inputs, for
        calibration. ``keep_float`` keeps the float network
        (``_float_module_``) for a fit that will continue training it.
        """
        self.__dict__.pop("_float_module_", None)
        self.__dict__.pop("quantization_summary_", None)
        if self.quantization is None:
            return
        float_module = net.module_
        if rows is not None:
            rows = rows[: self.quantization.calibration_rows]
            rows = rows.to_dense() if getattr(rows, "is_sparse", False) else rows
        module, summary = self.quantization._apply(float_module, rows)
        if summary["method"].endswith("int8"):
            net.device = "cpu"  # int8 kernels run on the CPU
        net.module = net.module_ = module
        self.quantization_summary_ = summary
        if keep_float:
            self._float_module_ = float_module
        else:  # the optimizer would otherwise carry the float weights into pickles
            for group in net.optimizer_.param_groups:
                group["params"] = []

    def _callbacks(self, schedule, module, steps_per_epoch, start_epoch, generator, epochs,
                   weighted=False):
        """The fit's skorch callbacks, and the pruning callback if any."""
        callbacks = [
            (
                "lr_schedule",
                ScheduleCallback(
                    schedule,
                    lr=self._setting("lr"),
                    max_epochs=self._setting("max_epochs"),
                    steps_per_epoch=steps_per_epoch,
                    start_epoch=start_epoch,
                ),
            ),
            ("divergence", DivergenceGuard()),
            ("valid_score", ValidScore(self._fit_task(), weighted)),
        ]
        pruner = None
        if self.pruning is not None:
            pruner = self.pruning._make_callback(
                module,
                max_epochs=self._setting("max_epochs"),
                steps_per_epoch=steps_per_epoch,
                start_epoch=start_epoch,
                generator=generator,
            )
            callbacks.append(("pruning", pruner))
        if self.quantization is not None:
            callbacks += self.quantization._training_callbacks(
                module, max_epochs=self._setting("max_epochs"), start_epoch=start_epoch)
        callbacks += copy.deepcopy(self.callbacks or [])
        callbacks += _fit_callbacks(self, epochs)
        return callbacks, pruner

    @staticmethod
    def _renew_net(net, opt_cls, opt_kwargs, *, callbacks, criterion, train_split, iterator_train__generator):
        """Prepare a fitted net for a warm-started fit, keeping weights and optimizer state.

        The callbacks, setters and criterion that ``_lean`` dropped after the
        last fit are built again here.
        """
        _register_optimizer_setters(net)
        net.callbacks = callbacks
        net.train_split = train_split
        net.iterator_train__generator = iterator_train__generator
        net.criterion = criterion
        if type(net.optimizer_) is not opt_cls:
            # A new optimizer choice between warm-started fits takes effect.
            for key in [k for k in vars(net) if k.startswith("optimizer__")]:
                delattr(net, key)
            for key, value in opt_kwargs.items():
                setattr(net, f"optimizer__{key}", value)
            net.optimizer = opt_cls
            net.initialize_optimizer()
        for group in net.optimizer_.param_groups:
            group.update(opt_kwargs)
        net.initialize_callbacks()
        net.initialize_criterion()

    def _publish(self, net, *, n_iter, loss_curve, n_threads, teacher, keep_optimizer):
        """Set the fitted attributes; nothing here can fail."""
        _lean(net)
        if not keep_optimizer:
            net.optimizer_.state.clear()  # no optimizer state in pickles
        net.module_.eval()
        self.net_ = net
        self.n_iter_ = n_iter
        self.loss_curve_ = loss_curve
        self.n_params_ = count_params(net.module_)
        # A network that trained weights it no longer has (merged LoRA
        # adapters) says how many it trained.
        self.n_trainable_params_ = getattr(net.module_, "trainable_params", None) or count_params(
            net.module_, trainable=True)
        self.n_threads_ = n_threads
        if getattr(self.distillation, "keep_teacher", False):
            self.teacher_ = teacher
        else:  # a teacher kept by an earlier fit does not describe this one
            self.__dict__.pop("teacher_", None)

    def _encode_teacher(self, teacher_out):
        return torch.as_tensor(np.asarray(teacher_out, dtype=np.float32))

    def _split(self, data, y, seed):
        n = len(data)
        n_valid = int(math.ceil(self.validation_fraction * n))
        if n_valid < 1 or n - n_valid < 1:
            raise ValueError(
                f"early_stopping with validation_fraction={self.validation_fraction} "
                f"cannot split {n} samples into a training and a validation set."
            )
        index = np.arange(n)
        stratify = self._validation_stratify(y)
        try:
            train_idx, valid_idx = train_test_split(
                index, test_size=n_valid, random_state=seed, stratify=stratify
            )
        except ValueError:  # a class too small to stratify
            train_idx, valid_idx = train_test_split(index, test_size=n_valid, random_state=seed)
        return data.subset(np.sort(train_idx)), data.subset(np.sort(valid_idx))

    @staticmethod
    def _place(data, device):
        """Move a data set to the device once; keep it on the CPU if it does not fit."""
        if data is None or device == "cpu":
            return data
        try:
            return data.to(device)
        except torch.OutOfMemoryError:
            # Too large for the device: stay on the CPU; the iterator moves
            # each batch with a non-blocking copy (see ``_Net.get_iterator``).
            return data

    @staticmethod
    def _check_finite(net, train, n_rows=1024):
        """Raise ``DivergenceError`` if the trained network's outputs overflow.

        The last optimizer step comes after the last loss was checked, so a
        network can end with a finite loss curve and outputs that are not
        finite; one inference pass over the first ``n_rows`` training rows
        catches that at fit time rather than at predict.
        """
        module = net.module_
        if holds_text_network(module):
            n_rows = min(n_rows, 64)  # a transformer's pass is costly; a few rows tell
        was_training = module.training
        module.eval()
        try:
            with torch.inference_mode():
                # The rows stay on the CPU when the data did not fit on the device.
                out = module(train.X[:n_rows].to(torch.device(net.device)))
        finally:
            module.train(was_training)
        if not bool(torch.isfinite(out).all()):
            raise outputs_diverged(len(net.history))

    def _train(self, net, train, epochs, loss_curve):
        """Run up to ``epochs`` epochs; stop on a plateau like sklearn's MLP."""
        monitor = ("valid_loss" if self._setting("early_stopping") and net.train_split.valid is not None
                   else "train_loss")
        plateau = Plateau(tol=self.tol, n_iter_no_change=self.n_iter_no_change, monitor=monitor)
        best_state, n_run = None, 0
        net.notify("on_train_begin", X=train, y=None)
        try:
            for _ in range(epochs):
                try:
                    net.fit_loop(train, None, epochs=1)
                except KeyboardInterrupt:  # skorch callbacks stop training this way
                    break
                n_run += 1
                row = net.history[-1]
                loss_curve.append(float(row["train_loss"]))
                # While the recipe (e.g. pruning in progress) is still changing
                # the network, nothing stops it and no weights from before are kept.
                busy = getattr(net, "recipe_busy_", False)
                improved, stop = plateau.update(row[monitor], epoch=len(net.history), busy=busy)
                if busy:
                    best_state = None
                    continue
                if improved and monitor == "valid_loss":
                    best_state = copy.deepcopy(net.module_.state_dict())
                if stop:
                    break
            if best_state is not None:
                # Before on_train_end, which may change the module's parameters
                # (pruning makes its masks permanent there).
                net.module_.load_state_dict(best_state)
        finally:
            net.notify("on_train_end", X=train, y=None)
        return n_run

    # -- prediction
    def _forward(self, X):
        """Network outputs for ``X`` as a float32 array, computed in batches."""
        check_is_fitted(self)
        text = self._takes_text()
        X = validate_data(
            self, as_text_column(X, type(self).__name__) if text else X, reset=False,
            accept_sparse=self._sparse_formats(), dtype=None if text else [np.float32, np.float64],
        )
        net = self.net_
        module, device = net.module_, torch.device(net.device)
        if text:  # tokenized batch by batch: memory stays bounded
            X_t, encode = X[:, 0], text_encoder(module)
        else:
            X_t, encode = as_float_tensor(X), None
        module.eval()
        dense_only = self._is_quantized  # int8 kernels take dense rows
        batch = max(int(self._setting("batch_size")), 64 if text else predict_rows(module, X.shape[1], device))
        out = []
        n_threads = self.n_threads or auto_threads(min(len(X_t), batch) * row_cost(module, X.shape[1], device))
        with torch.inference_mode(), torch_threads(n_threads):
            for start in range(0, len(X_t), batch):
                xb = X_t[start : start + batch]
                xb = (encode(xb) if text else xb).to(device, non_blocking=True)
                if dense_only and xb.is_sparse:
                    xb = xb.to_dense()
                out.append(_rows_alike(module, xb).float().cpu())
        if not out:
            return np.empty((0, self.n_outputs_), dtype=np.float32)
        return torch.cat(out).numpy()

    def _sparse_formats(self):
        """``accept_sparse`` for ``validate_data``: sparse formats if the network takes them.

        Other formats (DOK, LIL, ...) are converted to CSR by sklearn; CSC
        and COO become CSR once (``SparseRows``), never dense.
        """
        try:
            spec = resolve_module(self.module, type(self).__name__)
        except (TypeError, ValueError):
            return False  # the fit reports the bad module
        return ["csr", "csc", "coo"] if accepts_sparse(spec) else False

    def _takes_text(self):
        """Whether ``X`` is raw text: the module spec says so (``Transformer``)."""
        try:
            return accepts_text(resolve_module(self.module, type(self).__name__))
        except (TypeError, ValueError):
            return False  # the fit reports the bad module

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = bool(self._sparse_formats())
        if self._takes_text():  # as sklearn's text vectorizers
            tags.input_tags.string = True
            tags.input_tags.two_d_array = False
        return tags
