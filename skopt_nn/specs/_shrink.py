"""Reading which layer feeds which, and removing pruned units for good.

``ln_structured`` pruning leaves whole neurons and channels at zero. Removing
them needs to know, for each pruned layer, which layer consumes its outputs
and what lies in between (batch norms to slice, activations, pools, the
flatten of a CNN). That is read from a ``torch.fx`` trace of the module, and
removal is done only where the trace shows it is exact.
"""

import copy

import torch
import torch.nn.functional as F
from torch import fx, nn

__all__ = ["PRUNABLE", "analyse", "alive_units", "shrink"]

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def alive_units(layer):
    """Boolean mask of the output units that still have a non-zero weight or bias."""
    alive = (layer.weight.detach().flatten(1) != 0).any(1)
    if layer.bias is not None:
        alive |= layer.bias.detach() != 0
    return alive


# -- reading the network's structure ----------------------------------------
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# Elementwise, parameter-free: a pruned unit's constant output stays one constant.
_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.Identity,
)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_MAX_POOLS = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
)
_AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu,
    F.mish, torch.tanh, F.tanh, torch.sigmoid, F.sigmoid, F.softplus, F.hardtanh, F.hardswish,
}
_POOL_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_avg_pool1d,
                   F.adaptive_avg_pool2d, F.adaptive_avg_pool3d}
_METHODS = {"relu", "sigmoid", "tanh"}


class _Graph:
    """What a ``torch.fx`` trace says about each prunable layer of a module.

    For a layer it records whether its outputs reach the module's output
    (its units must stay), the batch norms its units pass through, the
    prunable layer that consumes them, whether a flatten lies in between,
    the constant a pruned unit carries there (``act(0)``, folded into the
    consumer's bias on removal), and why removal would not be exact.
    """

    def __init__(self, chains, error=None, last=None):
        self.chains = chains
        self.error = error
        self.last = last

    def is_output(self, name):
        if self.error is not None:
            return name == self.last
        return self.chains[name]["output"]

    def batchnorms(self, name):
        return [] if self.error is not None else self.chains[name]["bns"]

    def obstacle(self, name):
        """Why the units of ``name`` cannot be removed exactly, or None."""
        if self.error is not None:
            return f"torch.fx could not trace the module ({self.error})"
        return self.chains[name]["obstacle"]


def analyse(module):
    """Prunable layers of ``module`` in call order, and what the trace says."""
    named = dict(module.named_modules())
    registered = [n for n, m in named.items() if isinstance(m, PRUNABLE)]
    try:
        graph = fx.symbolic_trace(module).graph
    except Exception as exc:  # any user forward fx cannot follow
        last = registered[-1] if registered else None
        return registered, _Graph({}, error=f"{type(exc).__name__}: {exc}", last=last)
    calls = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(named.get(node.target), PRUNABLE):
            calls.setdefault(node.target, []).append(node)
    prunable_nodes = {node for nodes in calls.values() for node in nodes}
    chains = {}
    for name, nodes in calls.items():
        chain = _follow(nodes[0], named)
        chain["output"] = any(_reaches_output(node, prunable_nodes) for node in nodes)
        if len(nodes) > 1:
            chain["obstacle"] = "the layer is called more than once"
        layer = named[name]
        if chain["obstacle"] is None and getattr(layer, "groups", 1) != 1:
            chain["obstacle"] = "grouped convolution"
        if chain["obstacle"] is None:
            chain["obstacle"] = _consumer_obstacle(layer, named[chain["consumer"]], chain)
        chains[name] = chain
    return list(calls), _Graph(chains)


def _node_args(node):
    out = []
    fx.node.map_arg((node.args, node.kwargs), out.append)
    return out


def _op_name(node):
    return str(getattr(node.target, "__name__", node.target))


def _reaches_output(node, prunable_nodes):
    stack, seen = [node], set()
    while stack:
        for user in stack.pop().users:
            if user.op == "output":
                return True
            if user not in prunable_nodes and user not in seen:
                seen.add(user)
                stack.append(user)
    return False


def _flattens_from_1(node):
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    return start == 1 and end == -1


def _has_padding(padding):
    if isinstance(padding, str):
        return padding != "valid"
    return any(p != 0 for p in (padding if isinstance(padding, tuple) else (padding,)))


def _follow(node, named):
    """Walk from a layer's call to the prunable layer that consumes its units."""
    chain = {"bns": [], "flatten": False, "const": 0.0, "consumer": None, "obstacle": None}
    cur = node
    with torch.no_grad():
        while True:
            users = list(cur.users)
            if len(users) != 1:
                chain["obstacle"] = "its output is used by more than one operation" if users else "its output is unused"
                return chain
            user = users[0]
            if user.op == "output":
                chain["obstacle"] = "it is an output layer"
                return chain
            if any(arg is not cur for arg in _node_args(user)):
                chain["obstacle"] = f"its output is combined with another tensor ({_op_name(user)})"
                return chain
            const = chain["const"]
            obstacle = None
            if user.op == "call_module":
                m = named[user.target]
                if isinstance(m, PRUNABLE):
                    chain["consumer"] = user.target
                    return chain
                if isinstance(m, _BATCHNORMS):
                    if not m.affine:
                        obstacle = "a BatchNorm without affine parameters follows it"
                    chain["bns"].append(user.target)
                    const = 0.0  # a masked unit's scale and shift are zero
                elif isinstance(m, _ACTIVATIONS):
                    const = float(m(torch.tensor([const])).item())
                elif isinstance(m, _DROPOUTS) or isinstance(m, _MAX_POOLS):
                    pass
                elif isinstance(m, _AVG_POOLS):
                    if const != 0 and m.count_include_pad and _has_padding(m.padding):
                        obstacle = "zero padding of an average pool would change a pruned unit's constant"
                elif isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
                    chain["flatten"] = True
                else:
                    obstacle = f"it feeds a {type(m).__name__}"
            elif user.op == "call_function" and user.target in _FUNCTIONS:
                const = float(user.target(torch.tensor([const]), *user.args[1:], **user.kwargs).item())
            elif user.op == "call_function" and (user.target is F.dropout or user.target in _POOL_FUNCTIONS):
                pass
            elif user.target is torch.flatten or (user.op == "call_method" and user.target == "flatten"):
                if _flattens_from_1(user):
                    chain["flatten"] = True
                else:
                    obstacle = "a flatten other than flatten(1) follows it"
            elif user.op == "call_method" and user.target in _METHODS:
                const = float(getattr(torch.tensor([const]), user.target)().item())
            else:
                obstacle = f"it feeds {_op_name(user)}"
            if obstacle is not None:
                chain["obstacle"] = obstacle
                return chain
            chain["const"] = const
            cur = user


def _consumer_obstacle(layer, consumer, chain):
    if isinstance(consumer, nn.Linear):
        if isinstance(layer, nn.Linear):
            if chain["flatten"] or consumer.in_features != layer.out_features:
                return "its units do not map one-to-one to the next layer's inputs"
        elif not chain["flatten"]:
            return "a Linear layer acts on its channels without a flatten"
        elif consumer.in_features % layer.out_channels:
            return "the next layer's inputs do not split evenly into its channels"
        return None
    if isinstance(layer, nn.Linear) or chain["flatten"]:
        return "a convolution consumes its outputs after a reshape"
    if type(consumer) is not type(layer) or consumer.groups != 1 or consumer.in_channels != layer.out_channels:
        return "the next convolution does not take its channels one-to-one"
    if chain["const"] != 0 and _has_padding(consumer.padding):
        return "zero padding of the next convolution would change a pruned channel's constant"
    return None


# -- physical removal ----------------------------------------------------------
def shrink(module, graph, targets):
    """Remove emptied units; returns ``(module, removed layer names, problems)``.

    The module is copied before anything changes, so the estimator sees a new
    object and rebuilds its optimizer for the new parameters.
    """
    named = dict(module.named_modules())
    removals, problems = {}, []
    for name in targets:
        alive = alive_units(named[name])
        if bool(alive.all()):
            continue
        obstacle = graph.obstacle(name)
        if obstacle is not None:
            problems.append((name, obstacle))
            continue
        removals[name] = alive
    if not removals:
        return module, set(), problems
    module = copy.deepcopy(module)
    named = dict(module.named_modules())
    with torch.no_grad():
        for name, alive in removals.items():
            chain = graph.chains[name]
            layer, consumer = named[name], named[chain["consumer"]]
            keep = alive.nonzero().flatten()
            block = consumer.weight.shape[1] // alive.numel()
            cols = (keep[:, None] * block + torch.arange(block, device=keep.device)).flatten()
            if chain["const"] != 0:
                gone = (~alive).nonzero().flatten()
                gone_cols = (gone[:, None] * block + torch.arange(block, device=gone.device)).flatten()
                w = consumer.weight[:, gone_cols]
                fold = chain["const"] * w.flatten(1).sum(1)
                bias = consumer.bias if consumer.bias is not None else torch.zeros_like(fold)
                consumer.bias = nn.Parameter(bias + fold)
            consumer.weight = nn.Parameter(consumer.weight[:, cols].clone())
            _set_size(consumer, "in", consumer.weight.shape[1])
            layer.weight = nn.Parameter(layer.weight[keep].clone())
            if layer.bias is not None:
                layer.bias = nn.Parameter(layer.bias[keep].clone())
            _set_size(layer, "out", len(keep))
            for bn_name in chain["bns"]:
                bn = named[bn_name]
                bn.weight = nn.Parameter(bn.weight[keep].clone())
                bn.bias = nn.Parameter(bn.bias[keep].clone())
                if bn.running_mean is not None:
                    bn.running_mean = bn.running_mean[keep].clone()
                    bn.running_var = bn.running_var[keep].clone()
                bn.num_features = len(keep)
    return module, set(removals), problems


def _set_size(layer, side, n):
    if isinstance(layer, nn.Linear):
        setattr(layer, f"{side}_features", n)
    else:
        setattr(layer, f"{side}_channels", n)

