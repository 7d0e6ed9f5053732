"""Shared estimator logic: parameters, the fit entry points and their recovery, predict.

The phases of one fit (validation, the skorch net, the epoch loop,
publishing) are ``FitPhases`` in ``_phases``, mixed into ``BaseNN``.

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
import numbers
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ._ensemble import Ensemble, fit_members
from ._errors import DivergenceError
from .data import as_float_tensor, as_text_column
from ..specs.modules import accepts_sparse, count_params, resolve_module
from ..specs.quantization import quiet_ao
from ..specs.modules import MLP
from ..specs._spec import LeanParams
from ..specs.schedules import LRSchedule
from ..specs.transformer import accepts_text, text_encoder
from ._net import _lean, _Net, finished_net, forget_float_weights
from ._phases import FitPhases
from ._pickling import NetRecord, net_record, without_history
from ._loop import PRECISIONS
from ._runtime import auto_threads, predict_rows, row_cost, seeded, torch_threads

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


class BaseNN(LeanParams, FitPhases, BaseEstimator):
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

    def _as_finished(self):
        """This fitted estimator as a finished ``fit`` would leave it: a copy, or itself.

        A fit that is to continue (a multi-fidelity search's candidate between
        rungs) keeps its optimizer state, its random state and a quantized
        model's float network; a finished fit keeps them only with
        ``warm_start``. A candidate whose pruning schedule has not reached its
        end yet is pruned to its final amount (shrunk, and quantized if the
        recipe quantizes), the network it would be if its training ended now.
        Multi-fidelity searches score this form, cost scorers measure it.
        """
        resuming = "_resume_rng_" in self.__dict__
        if not resuming or self.warm_start:
            return self
        pending = self.__dict__.pop("_finish_now_", None)
        try:
            finished = copy.deepcopy(self)
        finally:
            if pending is not None:
                self._finish_now_ = pending
        finished.__dict__.pop("_resume_rng_", None)
        finished.__dict__.pop("_float_module_", None)
        finished.net_.optimizer_.state.clear()
        if pending is not None:
            module, finished.n_params_, info = copy.deepcopy(pending)
            finished.net_.module = finished.net_.module_ = module
            finished.sparsity_, finished.pruning_summary_ = info["sparsity"], info["layers"]
            if not finished._is_quantized:  # the optimizer holds the unpruned float weights
                finished.net_.initialize_optimizer()
        if finished._is_quantized:
            forget_float_weights(finished.net_)
        return finished

    def _encode_teacher(self, teacher_out):
        return torch.as_tensor(np.asarray(teacher_out, dtype=np.float32))

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
