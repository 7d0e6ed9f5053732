"""The stacked network of a fused group: K members' weights on one leading axis.

Two forward paths share one stacked state:

* ``nn.Sequential`` nets of ``Linear`` layers, parameter-free activations
  and ``Dropout`` (every ``MLP`` without batch norm) run explicit batched
  layers (``baddbmm``); members may differ in their dropout rates, a rate of
  zero (no ``Dropout`` layer at all) included;
* any other module (``CNN``, ``TorchModule``, batch norm) runs through
  ``torch.func.vmap`` over ``functional_call``.

A member that prunes has a row of 0/1 masks beside its weights: the layers
see ``weights * mask``, so pruned entries get no gradient, exactly as under
``torch.nn.utils.prune``'s reparametrization in a plain fit.
"""

import copy
import math

import torch
from torch import nn

__all__ = ["Plan", "Stack", "signature"]

# Activations that hold no parameters and work on any leading shape.
_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Identity)


class CannotStack(Exception):
    """The group's module does not run stacked (``vmap`` refused it)."""


def explicit_layers(module):
    """The layer types of a plain Linear/activation/Dropout Sequential, Dropout left out; else None."""
    if type(module) is not nn.Sequential:
        return None
    layers = []
    for layer in module:
        if isinstance(layer, nn.Dropout) and type(layer) is nn.Dropout:
            continue
        if type(layer) is nn.Linear and layer.bias is not None:
            layers.append("linear")
        elif type(layer) in _ELEMENTWISE:
            layers.append(repr(layer))
        else:
            return None
    return tuple(layers)


def signature(module):
    """Members with equal signatures stack into one group."""
    layers = explicit_layers(module)
    shapes = tuple((n, tuple(t.shape), t.dtype) for n, t in module.state_dict().items())
    if layers is not None:
        # Without names: a Dropout layer shifts the indices of the layers after it.
        return ("explicit", layers, tuple(t[1:] for t in shapes))
    return ("vmap", repr(module), shapes)


def _dropout_rates(module):
    """Dropout rate after each non-dropout layer of an explicit Sequential."""
    rates, position = {}, -1
    for layer in module:
        if type(layer) is nn.Dropout:
            rates[position] = rates.get(position, 0.0) + float(layer.p)  # one layer each in practice
        else:
            position += 1
    return rates


class Plan:
    """How one group's stacked forward pass runs, from its members' modules."""

    def __init__(self, modules):
        first = modules[0]
        self.explicit = explicit_layers(first) is not None and all(
            explicit_layers(m) == explicit_layers(first) for m in modules
        )
        if self.explicit:
            self.layers = explicit_layers(first)
            # The first member's own (parameter-free) activation modules.
            self.acts = [layer for layer in first if type(layer) is not nn.Dropout]
            self.dropouts = [_dropout_rates(m) for m in modules]
            self.slots = [(name, p) for name, layer in first.named_children()
                          if isinstance(layer, nn.Linear) for p in ("weight", "bias")]
        else:
            self.base = copy.deepcopy(first).to("meta")
            self.names = [n for n, _ in first.named_parameters()]
            self.buffer_names = [n for n, _ in first.named_buffers()]
            self.slots = [tuple(n.rsplit(".", 1)) if "." in n else ("", n) for n in self.names]

    def params_of(self, module):
        if self.explicit:
            out = []
            for layer in (x for x in module if isinstance(x, nn.Linear)):
                out += [layer.weight, layer.bias]
            return out
        return [p for _, p in module.named_parameters()]

    def buffers_of(self, module):
        return [] if self.explicit else [b for _, b in module.named_buffers()]


class Stack:
    """The members' parameters (and buffers, and masks) stacked on a first axis of size K.

    All parameters of a member live in one row of a ``(K, n_params)`` leaf
    tensor, ``flat``; the layers see views of it (times ``mask`` when some
    member prunes). One gradient tensor and one optimizer update then cover
    every layer of every member.
    """

    def __init__(self, plan, modules):
        self.plan = plan
        per_member = [plan.params_of(m) for m in modules]
        self.shapes = [tuple(p.shape) for p in per_member[0]]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.slot_index = {slot: i for i, slot in enumerate(plan.slots)}
        self.mask = None
        with torch.no_grad():
            self.flat = torch.stack([
                torch.cat([p.detach().reshape(-1) for p in params]) for params in per_member
            ]).requires_grad_()
            self.buffers = [
                torch.stack([b.detach() for b in group]).clone()
                for group in zip(*(plan.buffers_of(m) for m in modules))
            ]
        if plan.explicit:
            n_layers = len(plan.layers)
            rates = [[plan.dropouts[i].get(pos, 0.0) for pos in range(-1, n_layers)] for i in range(len(modules))]
            self.rates = torch.tensor(rates, dtype=torch.float32)  # (K, n_layers + 1)

    @property
    def params(self):
        """Per-layer views ``(K, *shape)`` of the (masked) weights."""
        source = self.flat if self.mask is None else self.flat * self.mask
        K = source.shape[0]
        parts = torch.split(source, self.sizes, dim=1)
        return [part.view(K, *shape) for part, shape in zip(parts, self.shapes)]

    def set_masks(self, k, masks):
        """Member ``k``'s masks, ``{(layer name, parameter name): 0/1 tensor}``; others stay ones."""
        if self.mask is None:
            self.mask = torch.ones_like(self.flat, requires_grad=False)
        row = torch.ones(self.flat.shape[1])
        for slot, mask in masks.items():
            i = self.slot_index[slot]
            row[self.offsets[i] : self.offsets[i] + self.sizes[i]] = mask.reshape(-1)
        self.mask[k] = row

    def weight(self, k, slot):
        """Member ``k``'s current (masked) tensor of ``slot``, shaped like its module's."""
        i = self.slot_index[slot]
        row = self.flat.detach()[k, self.offsets[i] : self.offsets[i] + self.sizes[i]]
        if self.mask is not None:
            row = row * self.mask[k, self.offsets[i] : self.offsets[i] + self.sizes[i]]
        return row.view(self.shapes[i])

    def keep(self, index):
        """Only the members at ``index`` stay (a LongTensor of positions)."""
        with torch.no_grad():
            self.flat = self.flat.detach()[index].requires_grad_()
            self.buffers = [b[index] for b in self.buffers]
        if self.mask is not None:
            self.mask = self.mask[index]
        if self.plan.explicit:
            self.rates = self.rates[index]

    def member_state(self, k, masked=True):
        """``(parameters, buffers)`` of member ``k``, as lists of tensors shaped like its module's.

        ``masked=False`` gives the raw weights (what the optimizer moves),
        for restoring them later with :meth:`set_member_state`.
        """
        row = self.flat.detach()[k].clone()
        if masked and self.mask is not None:
            row = row * self.mask[k]
        params = [part.view(shape) for part, shape in zip(torch.split(row, self.sizes), self.shapes)]
        return params, [b[k].clone() for b in self.buffers]

    def set_member_state(self, k, state):
        with torch.no_grad():
            self.flat[k] = torch.cat([p.reshape(-1) for p in state[0]])
            for b, v in zip(self.buffers, state[1]):
                b[k] = v

    def forward(self, x, training, generator=None):
        """Outputs ``(K, rows, n_outputs)`` for inputs ``(K, rows, n_features)``."""
        plan = self.plan
        if plan.explicit:
            return self._explicit(x, training, generator)
        plan.base.train(training)
        names, bnames = plan.names, plan.buffer_names

        def one(params, buffers, xb):
            state = dict(zip(names, params))
            state.update(zip(bnames, buffers))
            return torch.func.functional_call(plan.base, state, (xb,))

        return torch.func.vmap(one, randomness="different")(tuple(self.params), self.buffers, x)

    def first_forward(self, x, generator):
        """The first training forward pass; ``CannotStack`` when ``vmap`` refuses the module."""
        if self.plan.explicit:
            return self.forward(x, True, generator)
        try:
            return self.forward(x, True, generator)
        except RuntimeError as exc:  # vmap's refusals are RuntimeErrors
            raise CannotStack(str(exc).splitlines()[0]) from exc

    def _explicit(self, x, training, generator):
        params = self.params
        h = self._dropout(x, 0, training, generator)
        linear = 0
        for position, layer in enumerate(self.plan.layers):
            if layer == "linear":
                w, b = params[2 * linear], params[2 * linear + 1]
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
                linear += 1
            else:
                h = self.plan.acts[position](h)
            h = self._dropout(h, position + 1, training, generator)
        return h

    def _dropout(self, h, slot, training, generator):
        if not training:
            return h
        p = self.rates[:, slot]
        if not bool((p > 0).any()):
            return h
        keep = 1.0 - p.view(-1, 1, 1)
        mask = torch.rand(h.shape, generator=generator) < keep
        return h * mask / keep


@torch.no_grad()
def write_back(plan, module, state):
    """Copy a member's ``(parameters, buffers)`` into its own module."""
    params, buffers = state
    for p, v in zip(plan.params_of(module), params):
        p.copy_(v)
    for b, v in zip(plan.buffers_of(module), buffers):
        b.copy_(v)
