"""Learning-rate schedules as searchable specs.

Every schedule is a multiplier of the estimator's ``lr`` written as a function
of training progress measured in (fractional) epochs. Progress advances once
per batch, so schedules that need a total step count (``onecycle``,
``cosine``, ``linear``) are exact for the number of batches a fit really
runs: the count is derived from the rows left after the validation split, in
every cross-validation fold. Options are given in epochs, which keeps one
search space valid whatever the data size.
"""

import math
import numbers

from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback

from ._registry import Registry
from ._spec import OpenParams

__all__ = ["LRSchedule", "SCHEDULES", "resolve_schedule"]


class _Curve:
    """Picklable multiplier ``f(epoch_progress) -> float`` of one schedule."""

    def __init__(self, name, options, max_epochs, base_lr):
        self.name = name
        self.o = dict(options)
        self.max_epochs = max_epochs
        self.base_lr = base_lr

    def __call__(self, t):
        o, name, total = self.o, self.name, max(self.max_epochs, 1e-12)
        if name == "constant":
            return 1.0
        if name == "step":
            step_size = o["step_size"] or max(1, self.max_epochs // 3)
            return o["gamma"] ** math.floor(t / step_size)
        if name == "multistep":
            milestones = o["milestones"]
            if milestones is None:
                milestones = (round(0.5 * self.max_epochs), round(0.75 * self.max_epochs))
            return o["gamma"] ** sum(math.floor(t) >= m for m in milestones)
        if name == "exponential":
            return o["gamma"] ** math.floor(t)
        if name == "cosine":
            period = o["T_max"] or total
            floor = o["eta_min"] / self.base_lr if self.base_lr else 0.0
            frac = min(t / period, 1.0)
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))
        if name == "cosine_restarts":
            period = float(o["T_0"] or max(1, self.max_epochs // 4))
            while t >= period:
                t -= period
                period *= o["T_mult"]
            floor = o["eta_min"] / self.base_lr if self.base_lr else 0.0
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t / period))
        if name == "onecycle":
            frac = min(t / total, 1.0)
            start, end = 1.0 / o["div_factor"], 1.0 / (o["div_factor"] * o["final_div_factor"])
            up = o["pct_start"]
            if frac < up:
                lo, hi, p = start, 1.0, frac / up
            else:
                lo, hi, p = end, 1.0, 1.0 - (frac - up) / max(1.0 - up, 1e-12)
            return lo + (hi - lo) * 0.5 * (1.0 - math.cos(math.pi * p))
        if name == "linear":
            frac = min(t / total, 1.0)
            return o["start_factor"] + (o["end_factor"] - o["start_factor"]) * frac
        if name == "plateau":
            return 1.0  # the callback applies the plateau reductions
        raise AssertionError(name)  # pragma: no cover - names are validated first


# name -> default options; the option names double as the validation list.
_DEFAULTS = {
    "constant": {},
    "step": {"step_size": None, "gamma": 0.1},
    "multistep": {"milestones": None, "gamma": 0.1},
    "exponential": {"gamma": 0.95},
    "cosine": {"T_max": None, "eta_min": 0.0},
    "cosine_restarts": {"T_0": None, "T_mult": 1, "eta_min": 0.0},
    "onecycle": {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
    "linear": {"start_factor": 1.0, "end_factor": 0.0},
    "plateau": {"factor": 0.1, "patience": 5, "threshold": 1e-4, "min_lr": 0.0},
}

SCHEDULES = Registry("lr_schedule")
for _name, _defaults in _DEFAULTS.items():
    SCHEDULES.register(_name, _defaults)


class LRSchedule(OpenParams):
    """A learning-rate schedule with optional linear warm-up.

    The schedule multiplies the estimator's ``lr``; its options are reached
    in searches as ``lr_schedule__<option>``.

    Parameters
    ----------
    name : str, default="constant"
        One of ``constant``, ``step``, ``multistep``, ``exponential``,
        ``cosine``, ``cosine_restarts``, ``onecycle``, ``plateau``,
        ``linear`` (case-insensitive).
    warmup_epochs : float, default=0
        Length of a linear warm-up from ``lr / n_warmup_steps`` to the
        schedule's value, in epochs (fractions allowed).
    **options
        Options of the schedule, in epochs where they are durations:

        - ``step``: ``step_size`` (default a third of ``max_epochs``), ``gamma=0.1``
        - ``multistep``: ``milestones`` (default half and three quarters of
          ``max_epochs``), ``gamma=0.1``
        - ``exponential``: ``gamma=0.95`` per epoch
        - ``cosine``: ``T_max`` (default ``max_epochs``), ``eta_min=0``
        - ``cosine_restarts``: ``T_0`` (default a quarter of ``max_epochs``),
          ``T_mult=1``, ``eta_min=0``
        - ``onecycle``: ``pct_start=0.3``, ``div_factor=25``,
          ``final_div_factor=1e4``; ``lr`` is the peak
        - ``linear``: ``start_factor=1``, ``end_factor=0``
        - ``plateau``: ``factor=0.1``, ``patience=5``, ``threshold=1e-4``,
          ``min_lr=0``; watches the validation loss when ``early_stopping``
          holds one out, else the training loss.

    Examples
    --------
    >>> from skopt_nn import LRSchedule
    >>> sched = LRSchedule("cosine", warmup_epochs=1, eta_min=1e-5)
    >>> sched
    LRSchedule(name='cosine', warmup_epochs=1, eta_min=1e-05)
    >>> sched.set_params(eta_min=0.0).get_params()["eta_min"]
    0.0
    >>> [round(v, 3) for v in sched.preview(lr=0.1, max_epochs=4, steps_per_epoch=1)]
    [0.05, 0.085, 0.05, 0.015]
    """

    _named, _open = ("name", "warmup_epochs"), "options"

    def __init__(self, name="constant", *, warmup_epochs=0, **options):
        self.name = name
        self.warmup_epochs = warmup_epochs
        self.options = options

    def __repr__(self):
        args = [f"name={self.name!r}"]
        if self.warmup_epochs:
            args.append(f"warmup_epochs={self.warmup_epochs!r}")
        args += [f"{k}={v!r}" for k, v in self.options.items()]
        return f"LRSchedule({', '.join(args)})"

    def _resolved(self, owner=None):
        """Validate and return ``(canonical_name, options with defaults)``."""
        name = SCHEDULES.canonical(self.name, param="lr_schedule", owner=owner)
        defaults = SCHEDULES.get(name)
        unknown = sorted(set(self.options) - set(defaults))
        if unknown:
            raise InvalidParameterError(
                f"Unknown option(s) {unknown} for lr_schedule {name!r}; "
                f"valid options are {sorted(defaults)}."
            )
        w = self.warmup_epochs
        if not isinstance(w, numbers.Real) or isinstance(w, bool) or w < 0:
            raise InvalidParameterError(
                f"The 'warmup_epochs' option of lr_schedule must be a number >= 0; got {w!r}."
            )
        return name, {**defaults, **self.options}

    def preview(self, *, lr, max_epochs, steps_per_epoch=1):
        """Learning rate at the start of every step, without training."""
        curve = _Curve(*self._resolved(), max_epochs, lr)
        warm = self.warmup_epochs * steps_per_epoch
        out = []
        for step in range(int(max_epochs * steps_per_epoch)):
            factor = curve(step / steps_per_epoch)
            if warm and step < warm:
                factor *= (step + 1) / (warm + 1)
            out.append(lr * factor)
        return out


def resolve_schedule(lr_schedule, owner=None):
    """Turn an ``lr_schedule`` parameter (name or spec) into an ``LRSchedule``."""
    if isinstance(lr_schedule, LRSchedule):
        lr_schedule._resolved(owner)
        return lr_schedule
    if isinstance(lr_schedule, str):
        SCHEDULES.canonical(lr_schedule, param="lr_schedule", owner=owner)
        return LRSchedule(lr_schedule)
    raise InvalidParameterError(
        SCHEDULES.error_message(
            lr_schedule, param="lr_schedule", owner=owner, extra=" or an LRSchedule"
        )
    )


class ScheduleCallback(Callback):
    """skorch callback that sets the learning rate before every batch.

    It holds no reference to the optimizer between calls, so a fitted net
    pickles without a second copy of the optimizer.
    """

    def __init__(self, schedule, *, lr, max_epochs, steps_per_epoch, start_epoch=0):
        self.schedule = schedule
        self.lr = lr
        self.max_epochs = max_epochs
        self.steps_per_epoch = steps_per_epoch
        self.start_epoch = start_epoch

    def initialize(self):
        name, options = self.schedule._resolved()
        self.curve_ = _Curve(name, options, self.max_epochs, self.lr)
        self.is_plateau_ = name == "plateau"
        self.options_ = options
        self.warmup_steps_ = self.schedule.warmup_epochs * self.steps_per_epoch
        self.step_ = int(self.start_epoch * self.steps_per_epoch)
        self.plateau_scale_ = 1.0
        self.best_ = math.inf
        self.bad_epochs_ = 0
        return self

    def _rate(self, step):
        factor = self.curve_(step / self.steps_per_epoch) * self.plateau_scale_
        if self.warmup_steps_ and step < self.warmup_steps_:
            factor *= (step + 1) / (self.warmup_steps_ + 1)
        lr = self.lr * factor
        if self.is_plateau_:
            lr = max(lr, self.options_["min_lr"])
        return lr

    def epoch_rates(self, net, n_steps):
        """The rates of this epoch's ``n_steps`` optimizer steps, the schedule advanced past them.

        What ``on_batch_end`` gives step by step, at once: the fused trainer
        (``training.fused``) sets a whole group's rates per epoch. The first
        is the rate ``on_epoch_begin`` set; the optimizer ends at the rate of
        the step after the last.
        """
        rates = [self._rate(self.step_ + j) for j in range(n_steps)]
        self.step_ += n_steps
        self._apply(net)
        return rates

    def _apply(self, net):
        lr = self._rate(self.step_)
        for group in net.optimizer_.param_groups:
            # ``lr_scale``: a group's share of the rate (layer-wise decay)
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def on_epoch_begin(self, net, **kwargs):
        net.history.record("lr", self._apply(net))

    def on_batch_end(self, net, batch=None, training=None, stepped=True, **kwargs):
        # With gradient accumulation only a window's last micro-batch steps
        # the optimizer: the schedule counts optimizer steps.
        if training and stepped:
            self.step_ += 1
            self._apply(net)

    def on_epoch_end(self, net, **kwargs):
        if not self.is_plateau_:
            return
        row = net.history[-1]
        value = row.get("valid_loss", row.get("train_loss"))
        if value is None or not math.isfinite(value):
            return
        if value < self.best_ * (1.0 - self.options_["threshold"]):
            self.best_, self.bad_epochs_ = value, 0
        else:
            self.bad_epochs_ += 1
            if self.bad_epochs_ > self.options_["patience"]:
                self.plateau_scale_ *= self.options_["factor"]
                self.bad_epochs_ = 0
