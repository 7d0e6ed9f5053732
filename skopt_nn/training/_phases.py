"""How one fit runs: validate, build the skorch net, train the epochs, publish.

:class:`FitPhases` is mixed into ``BaseNN``: it holds the three phases of a
fit (``_start_fit``, ``_build_fit``, ``_end_fit``) and the parts they use
(the callbacks, the data split, the epoch loop, the checks before and after
training). ``BaseNN`` (``_base``) keeps the estimator's face: parameters,
the fit entry points and their recovery, ensembles and prediction. The
fused trainer (``fused``) runs the first two phases and the last for each
member and trains the members together in between, so a fused member is set
up and published exactly as a plain fit is.
"""

import copy
import math
import warnings

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import _check_sample_weight, validate_data
from torch import nn

from ._ensemble import Ensemble
from ._callbacks import DivergenceGuard, ValidScore
from ._fit_state import FitState
from .data import TensorData, as_float_tensor, as_text_column
from ..specs.modules import count_params, resolve_module
from ..specs.optim import resolve_optimizer
from ..specs.quantization import continue_refusal, float_copy
from ..specs.schedules import ScheduleCallback, resolve_schedule
from ..specs.transformer import holds_text_network, text_encoder
from ._net import _Holdout, _lean, _register_optimizer_setters, forget_float_weights, make_net
from ._loop import steps_in_epoch
from ._progress import _fit_callbacks
from ._stopping import Plateau, outputs_diverged
from ._runtime import GLOBAL_RNG, auto_threads, cpu_low_precision, manual_seed, resolve_device, row_cost


class FitPhases:
    """The phases of one fit, as methods of the estimator; not public."""

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
        continuing, w_t = fit.continuing, fit.w_t
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

    def _end_fit(self, fit, n_run):
        """Check the trained network, make pruning permanent, publish the fitted attributes."""
        net, pruner = fit.net, fit.pruner
        self._check_finite(net, fit.train)
        resume_rng = (fit.generator.get_state(), torch.get_rng_state()) if fit.resume else None

        # a candidate between rungs whose pruning is still to come: kept as it would finish now
        pending = fit.resume and pruner is not None and not pruner.complete_
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
        float_module = net.module_
        self._quantize(net, fit.train.X, keep_float=keep)
        self.__dict__.pop("_finish_now_", None)
        if pending:
            self._finish_now_ = self._finished_now(float_module, fit.train.X)
        if resume_rng is None:
            self.__dict__.pop("_resume_rng_", None)
        else:
            self._resume_rng_ = resume_rng

    def _finished_now(self, float_module, rows):
        """``(module, n_params, pruning info)``: the network this fit leaves if it ends now.

        A copy of the float network with the pruning schedule brought to its
        end at once (``Pruning._prune_now``: the final amount, shrunk), then
        quantized as the fit would quantize it. ``_as_finished`` puts it in
        place for a multi-fidelity search's scorers.
        """
        module, info = self.pruning._prune_now(copy.deepcopy(float_module))
        n_params = count_params(module)
        if self.quantization is not None:
            module, _ = self.quantization._apply(module, _calibration_rows(self.quantization, rows))
        return module, n_params, info

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
        module, summary = self.quantization._apply(float_module, _calibration_rows(self.quantization, rows))
        if summary["method"].endswith("int8"):
            net.device = "cpu"  # int8 kernels run on the CPU
        net.module = net.module_ = module
        self.quantization_summary_ = summary
        if keep_float:
            self._float_module_ = float_module
        else:
            forget_float_weights(net)

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
        plateau = Plateau.of(self, validating=net.train_split.valid is not None)
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
                improved, stop = plateau.update(row[plateau.monitor], epoch=len(net.history), busy=busy)
                if busy:
                    best_state = None
                    continue
                if improved and plateau.monitor == "valid_loss":
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


def _calibration_rows(quantization, rows):
    """The training rows a quantization calibrates on, dense (None stays None)."""
    if rows is None:
        return None
    rows = rows[: quantization.calibration_rows]
    return rows.to_dense() if getattr(rows, "is_sparse", False) else rows
