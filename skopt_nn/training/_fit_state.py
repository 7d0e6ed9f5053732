"""The state one fit carries from validation to publishing.

A fit runs in three phases (``BaseNN._start_fit``, ``_build_fit``,
``_end_fit``); the fused trainer runs the first two and the last for each
member and trains the members together in between. :class:`FitState` is
what the phases hand each other: the first fills the data and settings
fields, the second the training fields.
"""

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FitState"]


@dataclass(kw_only=True, eq=False)
class FitState:
    """The fields of one fit; not public.

    Set by ``_start_fit`` (validation, no torch RNG used): the validated
    ``X`` and ``y``, their tensors ``X_t`` and ``y_t``, the normalised
    ``sample_weight`` (``w_t``: its tensor, None when all weights are equal;
    ``weighted``: whether weights or class weights were given), the number
    of network outputs, the resolved device, schedule and optimizer, the
    fit's ``seed``, where its epochs start (``start_epoch``) and how many it
    may run (``epochs``), how it was called (``continuing``, ``partial``,
    ``resume``, ``classes``) and the estimator's class name (``owner``).

    Set by ``_build_fit`` (inside ``seeded``): the skorch ``net``, the
    ``train`` and ``valid`` rows on the device, the batch ``generator``, the
    fitted ``teacher``, the pruning callback (``pruner``), the thread count,
    the callbacks, the optimizer steps per epoch and the ``loss_curve`` the
    epochs append to.
    """

    # validation (_start_fit)
    X: Any
    y: Any
    X_t: Any
    y_t: Any
    w_t: Any
    sample_weight: Any
    weighted: bool
    n_outputs: int
    device: str
    schedule: Any
    opt_cls: type
    opt_kwargs: dict
    seed: int
    start_epoch: int
    epochs: Any
    continuing: bool
    partial: bool
    resume: bool
    classes: Any
    owner: str
    # training (_build_fit)
    net: Any = None
    train: Any = None
    valid: Any = None
    generator: Any = None
    teacher: Any = None
    pruner: Any = None
    n_threads: Any = None
    callbacks: list = field(default_factory=list)
    steps_per_epoch: int = 0
    loss_curve: list = field(default_factory=list)
