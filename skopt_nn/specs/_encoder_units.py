"""Attention heads and feed-forward neurons of a pretrained encoder, as prunable units.

Structured pruning of a ``Transformer`` spec removes whole attention heads
(their rows of the query, key and value projections and their columns of
the attention output projection) and whole feed-forward neurons (a row of
the intermediate projection and a column of the output projection), layer
by layer.

During training the pruning callback masks the query, key and value rows
of a pruned head and the intermediate row of a pruned neuron, biases
included. A masked head's queries, keys and values are all zero, so its
attention is uniform over zero values and it adds exactly nothing to the
output projection; a masked neuron's pre-activation is zero and the
activations of these encoders map 0 to 0 (GELU, ReLU, SiLU). Removal then
slices those matrices, so the encoder is smaller and faster and computes
the same outputs as the masked one.

Encoders laid out as BERT's are supported (BERT, RoBERTa, MiniLM,
ELECTRA, XLM-RoBERTa and the other checkpoints whose layers hold
``attention.self.{query,key,value}``, ``attention.output.dense``,
``intermediate.dense`` and ``output.dense``); their attention splits its
projections into heads by the head size, so a layer keeps working with
fewer heads.
"""

import copy

import torch
from torch import nn

from ._shrink import alive_units

__all__ = ["UnitGroup", "encoder_units", "remove_units", "resize_units", "unit_sizes"]


class UnitGroup:
    """One layer's heads, or one layer's feed-forward neurons.

    Parameters
    ----------
    name : str
        Qualified name of the block (``...layer.0.attention`` or
        ``...layer.0.intermediate``), the name the summary gives it.
    kind : {"heads", "neurons"}
    n : int
        Number of units.
    width : int
        Rows of each masked projection per unit (the head size; 1 for a
        neuron).
    masked : list of str
        Linear layers whose output rows belong to the units (query, key,
        value; the intermediate projection).
    reader : str
        The Linear layer whose input columns are the units' outputs.
    owner : str or None
        The self-attention module whose head count changes with removal.
    """

    def __init__(self, name, kind, n, width, masked, reader, owner=None):
        self.name, self.kind, self.n, self.width = name, kind, int(n), int(width)
        self.masked, self.reader, self.owner = list(masked), reader, owner

    def layers(self):
        return self.masked + [self.reader]

    def rows(self, alive):
        """Per-row alive flags of the masked projections, from per-unit ones."""
        return alive.repeat_interleave(self.width)

    def scores(self, weight, norm):
        """Each unit's ``norm`` over its rows in ``masked`` and its columns in ``reader``."""
        parts = [weight(name).reshape(self.n, -1) for name in self.masked]
        reader = weight(self.reader)
        parts.append(reader.reshape(reader.shape[0], self.n, self.width).transpose(0, 1).reshape(self.n, -1))
        return torch.linalg.vector_norm(torch.cat(parts, dim=1).float(), ord=norm, dim=1)

    def alive(self, named):
        """Units that still have a non-zero row or bias in the masked projections."""
        alive = torch.zeros(self.n, dtype=torch.bool)
        for name in self.masked:
            alive |= alive_units(named[name]).cpu().view(self.n, self.width).any(1)
        return alive


def _linear(module, *path):
    for attr in path:
        module = getattr(module, attr, None)
        if module is None:
            return None
    return module if isinstance(module, nn.Linear) else None


def _text_network(module):
    # a pretrained text network (``transformer.PretrainedTextNet``) lists its encoder layers
    return next((m for m in module.modules() if callable(getattr(m, "encoder_layers", None))), None)


def encoder_units(module):
    """The unit groups of the pretrained text network in ``module``, or None if it holds none.

    Raises ``ValueError`` for a text network whose encoder layers are not
    laid out as BERT's, or whose projections are wrapped (LoRA adapters).
    """
    net = _text_network(module)
    if net is None:
        return None
    if getattr(net, "lora_", None):
        raise ValueError(
            "Pruning of attention heads and feed-forward neurons cannot train with LoRA adapters: "
            "a pruned row would come back through the adapter's update. Prune with full "
            "fine-tuning (lora=None), or prune a fitted model's merged weights with a second fit."
        )
    prefix = {id(m): name for name, m in module.named_modules()}
    groups = []
    for layer in net.encoder_layers():
        attention = getattr(getattr(layer, "attention", None), "self", None)
        q, k, v = (_linear(attention, a) for a in ("query", "key", "value"))
        out = _linear(layer, "attention", "output", "dense")
        inter, ffn_out = _linear(layer, "intermediate", "dense"), _linear(layer, "output", "dense")
        size = getattr(attention, "attention_head_size", None)
        if None in (q, k, v, out, inter, ffn_out, size):
            raise ValueError(
                f"Pruning whole attention heads and feed-forward neurons needs an encoder laid out "
                f"as BERT's (attention.self.query/key/value, attention.output.dense, "
                f"intermediate.dense, output.dense); {type(layer).__name__} is not. Use an unstructured method (l1_unstructured, global_l1) for it."
            )
        base = prefix[id(layer)]
        groups.append(UnitGroup(
            f"{base}.attention", "heads", q.out_features // size, size,
            [prefix[id(q)], prefix[id(k)], prefix[id(v)]], prefix[id(out)], owner=prefix[id(attention)]))
        groups.append(UnitGroup(
            f"{base}.intermediate", "neurons", inter.out_features, 1, [prefix[id(inter)]],
            prefix[id(ffn_out)]))
    return groups


def _slice_rows(layer, keep):
    new = nn.Linear(layer.in_features, len(keep), bias=layer.bias is not None,
                    device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(layer.weight[keep])
        if layer.bias is not None:
            new.bias.copy_(layer.bias[keep])
    new.train(layer.training)
    return new


def _slice_cols(layer, keep):
    new = nn.Linear(len(keep), layer.out_features, bias=layer.bias is not None,
                    device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(layer.weight[:, keep])
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    new.train(layer.training)
    return new


def _replace(module, name, new):
    parent, _, attr = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, attr, new)


def remove_units(module, groups, alive, *, copy_module=True):
    """``module`` without the units whose flag in ``alive`` (one vector per group) is False.

    Returns ``(module, removed group names)``; the module is copied first
    (unless ``copy_module=False``) when anything is removed, so the
    estimator sees a new object.
    """
    todo = [(g, a) for g, a in zip(groups, alive) if not bool(a.all())]
    if not todo:
        return module, set()
    if copy_module:
        module = copy.deepcopy(module)
    for group, flags in todo:
        keep_units = flags.nonzero().flatten()
        keep = group.rows(flags).nonzero().flatten()
        for name in group.masked:
            _replace(module, name, _slice_rows(module.get_submodule(name), keep))
        _replace(module, group.reader, _slice_cols(module.get_submodule(group.reader), keep))
        if group.owner is not None:
            attention = module.get_submodule(group.owner)
            attention.num_attention_heads = len(keep_units)
            attention.all_head_size = len(keep_units) * group.width
    return module, {g.name for g, _ in todo}


def unit_sizes(module, config):
    """``{group name: units}`` of the groups that have fewer units than ``config`` gives.

    What a saved network records so that loading rebuilds the pruned shapes.
    """
    full = {"heads": getattr(config, "num_attention_heads", None),
            "neurons": getattr(config, "intermediate_size", None)}
    try:
        groups = encoder_units(module)
    except ValueError:  # not laid out as BERT's: never pruned this way
        return {}
    return {g.name: g.n for g in groups or [] if g.n != full[g.kind]}


def resize_units(module, sizes):
    """Shrink a freshly built network in place to the unit counts of ``unit_sizes``."""
    if not sizes:
        return module
    groups = encoder_units(module)
    alive = [torch.arange(g.n) < sizes.get(g.name, g.n) for g in groups]
    remove_units(module, groups, alive, copy_module=False)
    return module
