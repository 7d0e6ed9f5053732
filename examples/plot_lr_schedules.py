"""
Learning-rate schedules before training
=======================================

A schedule multiplies the estimator's ``lr`` as training progresses; its
options are given in epochs, and it moves once per batch. Previewing it
with :func:`~skopt_nn.plotting.plot_lr_schedule` shows what a search is
choosing between before a single network is trained.
"""

# %%
# Decays and cycles
# -----------------
# ``steps_per_epoch`` is ``ceil(rows / batch_size)``: 8 here, as for 1,000
# training rows in batches of 128.
import matplotlib.pyplot as plt

from skopt_nn import LRSchedule
from skopt_nn.plotting import plot_lr_schedule

plot_lr_schedule(
    ["constant", "step", "cosine", LRSchedule("onecycle", pct_start=0.25), "linear"],
    lr=0.05, max_epochs=30, steps_per_epoch=8,
)
plt.show()

# %%
# Warm-up and restarts
# --------------------
# A linear warm-up can precede any schedule; warm restarts repeat a cosine
# decay, each period ``T_mult`` times longer than the last.
ax = plot_lr_schedule(
    [
        LRSchedule("cosine", warmup_epochs=3),
        LRSchedule("cosine_restarts", T_0=5, T_mult=2),
        LRSchedule("exponential", gamma=0.9),
    ],
    lr=0.05, max_epochs=30, steps_per_epoch=8,
)
ax.set_yscale("log")
plt.show()

# %%
# The exact rates
# ---------------
# :meth:`~skopt_nn.LRSchedule.preview` returns the rate at the start of every
# step. After ``fit``, the estimator's ``history_[:, "lr"]`` holds the rate
# it really used in every epoch, which
# :func:`~skopt_nn.plotting.plot_learning_curve` draws next to the losses.
rates = LRSchedule("onecycle").preview(lr=0.05, max_epochs=5, steps_per_epoch=2)
print([round(rate, 4) for rate in rates])
