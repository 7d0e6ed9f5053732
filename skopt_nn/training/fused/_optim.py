"""Optimizers with one setting per member, on a stacked ``(K, n_params)`` tensor.

torch's sgd/adam/adamw/rmsprop/adagrad updates with their default options,
each member with its own learning rate, weight decay and momentum; Adam
and AdamW members share one group (a member's decay is then coupled, as
Adam's, or decoupled, as AdamW's). The arithmetic follows torch's
single-tensor implementations, so a member takes the steps its own torch
optimizer would.
"""

import torch

__all__ = ["StackedOptimizer", "fused_family"]

# The names torch's optimizers give the same buffers in their state.
_STATE = {"sgd": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq"),
          "rmsprop": ("square_avg", "momentum_buffer"), "adagrad": ("sum",)}


def fused_family(name):
    """The update members of optimizer ``name`` share (``adamw`` trains beside ``adam``)."""
    return "adam" if name == "adamw" else name


class StackedOptimizer:
    """One optimizer update for every member of a stack.

    Parameters
    ----------
    names : list of str
        Each member's canonical optimizer name, all of one :func:`fused_family`.
    flat : torch.Tensor
        The stacked parameters, ``(K, n_params)``.
    weight_decay, momentum : torch.Tensor
        ``(K,)`` settings of the members.
    """

    def __init__(self, names, flat, weight_decay, momentum):
        self.name = fused_family(names[0])
        self.decoupled = torch.tensor([n == "adamw" for n in names]).view(-1, 1)
        self.weight_decay = weight_decay.view(-1, 1)  # (K, 1)
        self.momentum = momentum.view(-1, 1)
        self.steps = torch.zeros(len(weight_decay), 1)
        self.state = [torch.zeros_like(flat) for _ in _STATE[self.name]]
        self._flags()

    def _flags(self):
        on = self.weight_decay != 0
        self.coupled_decay = bool((on & ~self.decoupled).any())
        self.any_decoupled = bool((on & self.decoupled).any())

    def keep(self, index):
        self.weight_decay, self.momentum = self.weight_decay[index], self.momentum[index]
        self.decoupled = self.decoupled[index]
        self.steps = self.steps[index]
        self.state = [s[index] for s in self.state]
        self._flags()

    @torch.no_grad()
    def load(self, k, optimizer, params, sizes):
        """Take member ``k``'s state from its torch ``optimizer`` (a continued fit)."""
        offset = 0
        for p, size in zip(params, sizes):
            state = optimizer.state.get(p, {})
            for buf, key in zip(self.state, _STATE[self.name]):
                if state.get(key) is not None:
                    buf[k, offset : offset + size] = state[key].reshape(-1)
            if "step" in state:
                self.steps[k] = float(state["step"])
            offset += size

    @torch.no_grad()
    def export(self, k, optimizer, params, sizes):
        """Write member ``k``'s state into its torch ``optimizer``, as torch keeps it."""
        offset = 0
        for p, size in zip(params, sizes):
            state = {key: buf[k, offset : offset + size].reshape(p.shape).clone()
                     for buf, key in zip(self.state, _STATE[self.name])}
            if self.name != "sgd":
                state["step"] = torch.tensor(float(self.steps[k]))
            optimizer.state[p] = state
            offset += size

    @torch.no_grad()
    def step(self, flat, g, lr, active=None):
        """One update; ``lr`` is ``(K,)``; ``active`` (``(K,)`` bool or None) masks members out."""
        if active is not None:
            mask = active.view(-1, 1)
            old = [flat.detach().clone()] + [s.clone() for s in self.state]
            self.steps += mask
        else:
            self.steps += 1
        name, lr, wd, value = self.name, lr.view(-1, 1), self.weight_decay, flat.detach()
        if self.any_decoupled:  # AdamW: shrink the weights, not the gradient
            value.mul_(1 - lr * torch.where(self.decoupled, wd, 0.0))
        if self.coupled_decay:
            g = g + torch.where(self.decoupled, 0.0, wd) * value
        if name == "adam":
            m, v = self.state
            t = self.steps.clamp_min(1)
            m.lerp_(g, 0.1)
            v.mul_(0.999).addcmul_(g, g, value=0.001)
            denom = (v / (1 - 0.999**t)).sqrt_().add_(1e-8)
            value.addcdiv_(m * (lr / (1 - 0.9**t)), denom, value=-1)
        elif name == "sgd":
            (buf,) = self.state
            buf.mul_(self.momentum).add_(g)
            value.sub_(lr * buf)
        elif name == "rmsprop":
            sq, buf = self.state
            sq.mul_(0.99).addcmul_(g, g, value=0.01)
            buf.mul_(self.momentum).add_(g / (sq.sqrt() + 1e-8))
            value.sub_(lr * buf)
        else:  # adagrad
            (acc,) = self.state
            acc.addcmul_(g, g)
            value.sub_(lr * g / (acc.sqrt() + 1e-10))
        if active is not None:
            value.copy_(torch.where(mask, value, old[0]))
            for s, o in zip(self.state, old[1:]):
                s.copy_(torch.where(mask, s, o))
