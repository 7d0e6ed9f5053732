"""Pruning as a hyperparameter: methods, schedules, masks during training, removal after.

A ``Pruning`` spec becomes, at fit time, a skorch callback that installs
``torch.nn.utils.prune`` masks when training begins, raises the sparsity on
the schedule's steps (computed in fractional epochs of ``max_epochs``, so the
whole recipe fits the estimator's epoch budget) and makes the masks permanent
when training ends. ``_finalize`` then measures the result and, for
``ln_structured``, physically removes the pruned neurons and channels, with
the inputs of the layers that consumed them. Which layer feeds which is read
from a ``torch.fx`` trace of the module; where the trace fails or shows an
operation that removal could not keep exact, the zeros stay and a warning
says so.
"""

import functools
import math
import numbers
import warnings

import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback
from torch.nn.utils import prune

from ._spec import LeanParams
from ._registry import Registry
from ._encoder_units import encoder_units, remove_units
from ._shrink import alive_units, analyse, shrink

__all__ = ["Pruning", "PRUNING_METHODS", "PRUNING_SCHEDULES"]


# -- methods -----------------------------------------------------------------
class _Method:
    """How one pruning method scores and selects weights.

    ``structured`` methods score whole output units (rows of a ``Linear``
    weight, output channels of a convolution); ``global_`` methods rank
    every layer's scores against one threshold.
    """

    def __init__(self, score, *, structured=False, global_=False, gradient=False):
        self.score = score
        self.structured = structured
        self.global_ = global_
        # ranked by what training's gradients say (pretrained encoders' heads and neurons only)
        self.gradient = gradient


def _l1_score(weight, norm, generator):
    return weight.abs()


def _random_score(weight, norm, generator):
    # Drawn on the CPU from the fit's generator, so the global RNG is untouched.
    return torch.rand(weight.shape, generator=generator).to(weight.device)


def _ln_score(weight, norm, generator):
    return torch.linalg.vector_norm(weight.flatten(1), ord=norm, dim=1)


PRUNING_METHODS = Registry("pruning method")
PRUNING_METHODS.register("l1_unstructured", _Method(_l1_score))
PRUNING_METHODS.register("random_unstructured", _Method(_random_score))
PRUNING_METHODS.register("global_l1", _Method(_l1_score, global_=True))
PRUNING_METHODS.register("ln_structured", _Method(_ln_score, structured=True))
PRUNING_METHODS.register("taylor_structured", _Method(_ln_score, structured=True, gradient=True))


# -- schedules ---------------------------------------------------------------
def _one_shot(p, max_epochs):
    return [(p["end"] * max_epochs, p["amount"])]


def _gradual(p, max_epochs):
    # Zhu & Gupta (2017): s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))^3
    # at t = t0 + k dt, k = 0..n.
    s_i, s_f, n = p["initial_sparsity"], p["amount"], p["n_steps"]
    t0 = p["start"] * max_epochs
    dt = (p["end"] - p["start"]) * max_epochs / n
    first = 0 if s_i > 0 else 1
    return [(t0 + k * dt, s_f + (s_i - s_f) * (1 - k / n) ** 3) for k in range(first, n + 1)]


PRUNING_SCHEDULES = Registry("pruning schedule")
PRUNING_SCHEDULES.register("one_shot", _one_shot)
PRUNING_SCHEDULES.register("gradual", _gradual)


def _n_pruned(sparsity, n):
    """Number of entries pruned at ``sparsity`` (rounded half up, as documented)."""
    return int(math.floor(sparsity * n + 0.5))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Pruning(LeanParams, BaseEstimator):
    """Pruning recipe: which weights go, how many, and when during training.

    Pass it as ``NNClassifier(pruning=Pruning(...))``; every parameter is
    searchable as ``pruning__<name>``. Masks are applied during training, so
    pruned weights stay zero while the rest keep learning, and the pruning is
    made permanent at the end of ``fit``: the fitted ``module_`` holds plain
    weights. With ``ln_structured`` the pruned neurons and channels are
    removed, so the fitted network is smaller and faster.

    Parameters
    ----------
    method : str, default="l1_unstructured"
        - ``l1_unstructured``: the smallest-magnitude weights of each layer.
        - ``random_unstructured``: random weights of each layer, drawn from
          the estimator's ``random_state``.
        - ``global_l1``: the smallest-magnitude weights across all prunable
          layers (one threshold), so layers end up with different sparsities.
        - ``ln_structured``: whole neurons of ``Linear`` layers and whole
          output channels of convolutions, smallest L-``norm`` first; the
          output layer's units are never removed.
        - ``taylor_structured``: for a pretrained ``Transformer`` network,
          whole attention heads and feed-forward neurons, least important
          first by the first-order Taylor estimate of the loss change their
          removal causes, accumulated from the training's gradients.
    amount : float, default=0.5
        Final fraction pruned, in [0, 1): of the weights of every
        ``Linear``/convolution layer before the output layer (per layer, or
        overall for ``global_l1``), or of the units of each of those layers
        for ``ln_structured``. The output layer stays dense.
    schedule : str, default="one_shot"
        - ``one_shot``: train dense until ``end``, prune to ``amount`` at
          once, fine-tune for the rest of ``max_epochs``.
        - ``gradual``: raise the sparsity from ``initial_sparsity`` to
          ``amount`` in ``n_steps`` steps between ``start`` and ``end`` on the
          cubic schedule of Zhu & Gupta (2017), then fine-tune.
    start : float, default=0.1
        Where the ``gradual`` schedule begins, as a fraction of
        ``max_epochs``.
    end : float, default=0.6
        Where the final sparsity is reached, as a fraction of ``max_epochs``
        (the pruning point of ``one_shot``). The remaining epochs fine-tune
        at the final sparsity; ``end=1`` prunes after the last batch.
    n_steps : int, default=10
        Number of pruning steps of the ``gradual`` schedule.
    initial_sparsity : float, default=0.0
        Sparsity applied at ``start`` by the ``gradual`` schedule; at most
        ``amount``.
    norm : float, default=1
        Order of the norm that ranks units for ``ln_structured`` (1 for L1,
        2 for L2, ``float("inf")`` for the max).
    head_amount : float, default=None
        For a pretrained ``Transformer`` network with ``ln_structured`` or
        ``taylor_structured``: the fraction of attention heads pruned in each
        encoder layer, while ``amount`` is the fraction of its feed-forward
        neurons. None: the same as ``amount``. Ignored by other networks.

    See Also
    --------
    torch.nn.utils.prune : The masks this spec installs during training.

    Notes
    -----
    Unstructured masks make a network sparse, not faster: the zeros are
    still multiplied. Only ``ln_structured`` shrinks the dense layers, which
    is what makes prediction faster and pickles smaller.

    On a pretrained ``Transformer`` network (an encoder laid out as BERT's),
    ``ln_structured`` prunes whole attention heads and whole feed-forward
    neurons of every encoder layer, each ranked by the ``norm`` of its
    weights (its query, key and value rows and its output-projection
    columns; a neuron's intermediate row and output column), and removes
    them after training: the projections are sliced, so the encoder is
    smaller and faster. The classification head and the embeddings stay.

    Epoch points are fractions of ``max_epochs``, so the recipe always spends
    exactly the estimator's epoch budget (the resource of successive-halving
    searches). While the sparsity is still rising, early stopping neither
    stops training nor keeps weights from before the final sparsity.

    References
    ----------
    M. Zhu and S. Gupta, "To prune, or not to prune: exploring the efficacy
    of pruning for model compression", arXiv:1710.01878, 2017.

    P. Michel, O. Levy and G. Neubig, "Are sixteen heads really better than
    one?", NeurIPS 2019.

    P. Molchanov, A. Mallya, S. Tyree, I. Frosio and J. Kautz, "Importance
    estimation for neural network pruning", CVPR 2019.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skopt_nn import MLP, NNClassifier, Pruning
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NNClassifier(MLP((32,)), lr=0.01, max_epochs=30, random_state=0,
    ...                    pruning=Pruning("ln_structured", amount=0.5))
    >>> clf.fit(X, y).module_[0]
    Linear(in_features=4, out_features=16, bias=True)
    >>> [(e, round(s, 3)) for e, s in Pruning(
    ...     "global_l1", amount=0.9, schedule="gradual", start=0, end=0.5, n_steps=4
    ... ).preview(max_epochs=8)]
    [(1.0, 0.52), (2.0, 0.787), (3.0, 0.886), (4.0, 0.9)]
    """

    def __init__(
        self,
        method="l1_unstructured",
        amount=0.5,
        schedule="one_shot",
        start=0.1,
        end=0.6,
        n_steps=10,
        initial_sparsity=0.0,
        norm=1,
        head_amount=None,
    ):
        self.method = method
        self.amount = amount
        self.schedule = schedule
        self.start = start
        self.end = end
        self.n_steps = n_steps
        self.initial_sparsity = initial_sparsity
        self.norm = norm
        self.head_amount = head_amount

    def _validated(self):
        """Checked parameters with canonical names; raises at fit, never earlier."""
        owner = "Pruning"
        p = dict(
            self.get_params(),
            method=PRUNING_METHODS.canonical(self.method, param="method", owner=owner),
            schedule=PRUNING_SCHEDULES.canonical(self.schedule, param="schedule", owner=owner),
        )
        for name in ("amount", "start", "end"):
            right = ")" if name == "amount" else "]"
            value = p[name]
            if not _is_real(value) or not 0 <= value <= 1 or (name == "amount" and value == 1):
                raise InvalidParameterError(
                    f"The {name!r} parameter of {owner} must be a float in [0, 1{right}; got {value!r}."
                )
            p[name] = float(value)
        if p["start"] > p["end"]:
            raise InvalidParameterError(
                f"The 'start' parameter of {owner} must not exceed 'end'; "
                f"got start={p['start']!r}, end={p['end']!r}."
            )
        n = p["n_steps"]
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
            raise InvalidParameterError(f"The 'n_steps' parameter of {owner} must be an int >= 1; got {n!r}.")
        s_i = p["initial_sparsity"]
        if not _is_real(s_i) or not 0 <= s_i <= p["amount"]:
            raise InvalidParameterError(
                f"The 'initial_sparsity' parameter of {owner} must be a float in "
                f"[0, amount={p['amount']!r}]; got {s_i!r}."
            )
        head = p["head_amount"]
        if head is not None:
            if not _is_real(head) or not 0 <= head < 1:
                raise InvalidParameterError(
                    f"The 'head_amount' parameter of {owner} must be a float in [0, 1) or None; got {head!r}."
                )
            p["head_amount"] = float(head)
        if not _is_real(p["norm"]) or not p["norm"] > 0:
            raise InvalidParameterError(
                f"The 'norm' parameter of {owner} must be a number > 0 (1, 2 or float('inf')); got {p['norm']!r}."
            )
        return p

    def preview(self, *, max_epochs):
        """The schedule's steps as ``(epoch, sparsity)`` pairs, without training.

        Parameters
        ----------
        max_epochs : int
            The estimator's epoch budget.

        Returns
        -------
        steps : list of (float, float)
            Fractional epoch at which each step is applied (after the batch
            that reaches it) and the sparsity it sets.
        """
        p = self._validated()
        return PRUNING_SCHEDULES.get(p["schedule"])(p, max_epochs)

    # -- protocol used by the estimators (see skopt_nn.training._base) ----------------
    def _make_callback(self, module, *, max_epochs, steps_per_epoch, start_epoch=0, generator=None):
        p = self._validated()
        method = PRUNING_METHODS.get(p["method"])
        groups = encoder_units(module) if method.structured else None
        if groups is not None:
            return self._encoder_callback(groups, p, max_epochs=max_epochs, steps_per_epoch=steps_per_epoch,
                                          start_epoch=start_epoch, generator=generator)
        if method.gradient:
            raise ValueError(
                f"Pruning(method={p['method']!r}) ranks the attention heads and feed-forward neurons of "
                f"a pretrained Transformer network; {type(module).__name__} is not one. Use "
                "ln_structured to remove the neurons and channels of other networks."
            )
        layers, graph = analyse(module)
        # The output layer stays dense: its weights are few and every
        # prediction goes through them (and its units are the outputs).
        targets = [n for n in layers if not graph.is_output(n)]
        if not targets:
            raise ValueError(
                f"Pruning found no layer to prune in {type(module).__name__}: it prunes the "
                "Linear, Conv1d, Conv2d and Conv3d layers before the output layer."
            )
        if method.structured:
            named = dict(module.named_modules())
            for name in targets:
                n = named[name].weight.shape[0]
                if _n_pruned(p["amount"], n) >= n:
                    raise ValueError(
                        f"The 'amount' parameter of Pruning is too large for layer {name!r} "
                        f"({type(named[name]).__name__} with {n} units): ln_structured with "
                        f"amount={p['amount']!r} would remove every unit. Use amount < "
                        f"{(n - 0.5) / n:.3g} or a wider layer."
                    )
        steps = PRUNING_SCHEDULES.get(p["schedule"])(p, max_epochs)
        return _PruningCallback(
            method=p["method"],
            steps=steps,
            targets=targets,
            layers=layers,
            graph=graph,
            norm=p["norm"],
            steps_per_epoch=steps_per_epoch,
            start_epoch=start_epoch,
            generator=generator,
        )

    @staticmethod
    def _encoder_callback(groups, p, *, max_epochs, **kwargs):
        """Heads and neurons of a pretrained encoder, each kind at its own amount."""
        amounts = {"neurons": p["amount"],
                   "heads": p["amount"] if p["head_amount"] is None else p["head_amount"]}
        for group in groups:
            amount = amounts[group.kind]
            if _n_pruned(amount, group.n) >= group.n:
                param = "amount" if group.kind == "neurons" or p["head_amount"] is None else "head_amount"
                raise ValueError(
                    f"The {param!r} parameter of Pruning is too large for {group.name!r}: "
                    f"{p['method']} with {param}={amount!r} would remove all {group.n} {group.kind}. "
                    f"Use {param} < {(group.n - 0.5) / group.n:.3g}."
                )
        # One schedule, laid out for the larger amount; each kind follows it in proportion.
        base = max(amounts.values())
        steps = PRUNING_SCHEDULES.get(p["schedule"])(dict(p, amount=base), max_epochs)
        ratios = {kind: (amount / base if base > 0 else 0.0) for kind, amount in amounts.items()}
        kind = _TaylorPruningCallback if PRUNING_METHODS.get(p["method"]).gradient else _EncoderPruningCallback
        return kind(groups=groups, ratios=ratios, method=p["method"], steps=steps, norm=p["norm"], **kwargs)

    def _prune_now(self, module):
        """``module``, in place, as the schedule would leave it at its end, without more training.

        Every step still due is applied at once (the final ``amount``; units
        or weights already pruned stay pruned) and ``ln_structured`` shrinks
        the layers. For a candidate scored between the rungs of a
        multi-fidelity search before its schedule is complete: the model it
        would be if its budget ended there. Returns ``(module, info)`` as
        :meth:`_finalize` does.
        """
        # a generator of its own: random_unstructured must not draw from the fit's streams
        callback = self._make_callback(module, max_epochs=1, steps_per_epoch=1,
                                       generator=torch.Generator().manual_seed(0)).initialize()
        holder = _Holder(module)
        callback.on_train_begin(holder)
        try:
            callback._advance(math.inf)
        finally:
            callback.on_train_end(holder)
        return self._finalize(module, callback)

    def _finalize(self, module, callback):
        if isinstance(callback, _EncoderPruningCallback):
            module, info = callback.finish(module)
            callback.release()
            return module, info
        method = PRUNING_METHODS.get(callback.method)
        removed = set()
        if method.structured and callback.complete_:
            module, removed, problems = shrink(module, callback.graph, callback.targets)
            if problems:
                details = "; ".join(f"{name!r}: {why}" for name, why in problems)
                warnings.warn(
                    f"ln_structured could not physically remove the pruned units of "
                    f"{type(module).__name__} ({details}). Those units stay as zero weights "
                    "(the pruning is permanent) but the network is not smaller.",
                    UserWarning,
                    stacklevel=2,
                )
        info = _summary(module, callback, removed)
        callback.release()
        return module, info


class _Holder:
    """What the pruning callback reads of a skorch net, around a bare module (``_prune_now``)."""

    def __init__(self, module):
        self.module_ = module
        self.history = [None]  # continuing: what is already pruned stays pruned
        self.recipe_busy_ = False


# -- the callback ------------------------------------------------------------
class _PruningCallback(Callback):
    """skorch callback that applies a pruning schedule during training.

    Built by ``Pruning`` at fit time. Masks are ``torch.nn.utils.prune``
    reparametrizations from ``on_train_begin`` to ``on_train_end``, where they
    are made permanent, so the module is plain outside training (and in
    every pickle).

    Parameters
    ----------
    method : str
        Canonical pruning method name.
    steps : list of (float, float)
        ``(epoch, sparsity)`` schedule steps.
    targets : list of str
        Qualified names of the layers whose weights (or units) are pruned.
    layers : list of str
        Every prunable layer, for the summary.
    graph : _Graph
        What the ``torch.fx`` trace says about the module's layers.
    norm : float
        Norm order of ``ln_structured``.
    steps_per_epoch : int
        Training batches per epoch.
    start_epoch : int, default=0
        Epoch this fit starts at (``partial_fit`` continues a schedule).
    generator : torch.Generator, default=None
        Source of ``random_unstructured``'s draws.
    """

    def __init__(self, *, method, steps, targets, layers, graph, norm, steps_per_epoch,
                 start_epoch=0, generator=None):
        self.method = method
        self.steps = steps
        self.targets = targets
        self.layers = layers
        self.graph = graph
        self.norm = norm
        self.steps_per_epoch = steps_per_epoch
        self.start_epoch = start_epoch
        self.generator = generator

    def initialize(self):
        self.step_ = int(self.start_epoch * self.steps_per_epoch)
        # Steps at or before a continued fit's first epoch ran in earlier calls.
        self.reached_ = float(self.start_epoch) if self.start_epoch > 0 else -math.inf
        self.complete_ = self.steps[-1][0] <= self.reached_ + 1e-9
        self.sparsity_ = max([s for e, s in self.steps if e <= self.reached_ + 1e-9], default=0.0)
        self.shapes_ = None
        self._masks, self._expand, self._layers, self._alive, self._orders = [], [], {}, {}, {}
        self._weight, self._fused_specs = None, []
        return self

    def _begin(self, module, continuing):
        """Alive units or weights of every target layer; the tensors masked, by name.

        Returns ``(layer name, parameter name, how to expand the target's
        alive entries to the mask, target layer name)`` for each masked tensor.
        """
        named = dict(module.named_modules())
        self.shapes_ = {n: tuple(named[n].weight.shape) for n in self.layers}
        structured = PRUNING_METHODS.get(self.method).structured
        masks = []
        for name in self.targets:
            layer = named[name]
            w = layer.weight.detach()
            if structured:
                alive = torch.ones(w.shape[0], dtype=torch.bool, device=w.device)
                if continuing:  # units emptied by an earlier fit stay pruned
                    alive = alive_units(layer)
                masks.append((name, "weight", _expand_units, name))
                if layer.bias is not None:
                    masks.append((name, "bias", _as_is, name))
                # A pruned unit's batch-norm scale and shift go too, so the unit
                # outputs exactly zero before its activation.
                for bn in self.graph.batchnorms(name):
                    masks += [(bn, "weight", _as_is, name), (bn, "bias", _as_is, name)]
            else:
                alive = w != 0 if continuing else torch.ones_like(w, dtype=torch.bool)
                masks.append((name, "weight", _as_is, name))
            self._alive[name] = alive
        return masks

    def on_train_begin(self, net, **kwargs):
        module = net.module_
        named = dict(module.named_modules())
        masks = self._begin(module, continuing=len(net.history) > 0)
        for lname, pname, _, _ in masks:
            if hasattr(named[lname], pname + "_mask"):
                raise ValueError(
                    f"Layer {named[lname]} already carries a torch.nn.utils.prune mask on {pname!r}; "
                    "call torch.nn.utils.prune.remove on it before fitting with Pruning."
                )
        for lname, pname, _, _ in masks:
            layer = named[lname]
            self._orders.setdefault(layer, list(layer._parameters))
            prune.custom_from_mask(layer, pname, torch.ones_like(getattr(layer, pname)))
            self._masks.append((layer, pname))
        self._expand = [(getattr(named[lname], pname + "_mask"), expand, name)
                        for lname, pname, expand, name in masks]
        self._layers = {name: named[name] for name in self.targets}
        self._weight = self._masked_weight
        self._write_masks()
        self._advance(float(self.start_epoch))
        net.recipe_busy_ = not self.complete_

    def _masked_weight(self, name):
        layer = self._layers[name]
        return layer.weight_orig.detach() * layer.weight_mask

    # -- hooks of the fused trainer (training.fused): the same schedule and
    # selection on a member's rows of the stacked weights, which hold the
    # masks themselves instead of torch's reparametrization.
    def fused_begin(self, net, weight):
        """Start the schedule on a member of a stacked group.

        ``weight(layer name)`` returns the layer's current (masked) weight.
        Returns ``fused_masks()``.
        """
        module = net.module_
        self._fused_specs = [(lname, pname, expand, name, tuple(getattr(dict(module.named_modules())[lname],
                                                                       pname).shape))
                             for lname, pname, expand, name in self._begin(module, len(net.history) > 0)]
        self._weight = weight
        self._advance(float(self.start_epoch))
        net.recipe_busy_ = not self.complete_
        return self.fused_masks()

    def fused_step(self):
        """Count one optimizer step; True when the masks changed (a schedule step was due)."""
        self.step_ += 1
        return self._advance(self.step_ / self.steps_per_epoch)

    def fused_masks(self):
        """``{(layer name, parameter name): 0/1 mask}`` of every masked tensor."""
        return {(lname, pname): expand(self._alive[name], torch.empty(shape)).float()
                for lname, pname, expand, name, shape in self._fused_specs}

    def on_epoch_begin(self, net, **kwargs):
        # Cleared at the first epoch that runs entirely at the final sparsity,
        # so early stopping never compares a loss from before it.
        if self.complete_:
            net.recipe_busy_ = False

    def on_batch_end(self, net, batch=None, training=None, stepped=True, **kwargs):
        if training and stepped:  # optimizer steps, as the schedule counts them
            self.step_ += 1
            self._advance(self.step_ / self.steps_per_epoch)

    def on_epoch_end(self, net, **kwargs):
        net.history.record("sparsity", self.sparsity_)

    def on_train_end(self, net, **kwargs):
        # Runs on success and on failure alike, so the module is never left
        # reparametrized (a failed warm-start fit restores a plain state_dict).
        for layer, pname in self._masks:
            prune.remove(layer, pname)
        # prune.remove registers the weight anew, after the bias; the original
        # order keeps named_parameters (and saved optimizer states) aligned.
        for layer, order in self._orders.items():
            for key in order:
                layer._parameters[key] = layer._parameters.pop(key)
        self._masks, self._expand, self._layers, self._orders = [], [], {}, {}
        net.recipe_busy_ = False

    def release(self):
        """Drop references to tensors and the generator so pickles stay small."""
        self._masks, self._expand, self._layers, self._alive, self._orders = [], [], {}, {}, {}
        self._weight, self._fused_specs = None, []
        self.generator = None

    def _advance(self, progress):
        due = [s for e, s in self.steps if self.reached_ < e <= progress + 1e-9]
        self.reached_ = max(self.reached_, progress)
        if not due:
            return False
        self.complete_ = self.steps[-1][0] <= progress + 1e-9
        self.sparsity_ = max(due)
        self._select(self.sparsity_)
        self._write_masks()
        return True

    def _select(self, target):
        """Prune the lowest-scored live entries until ``target`` of them are gone."""
        method = PRUNING_METHODS.get(self.method)
        scores, alive = [], []
        for name in self.targets:
            weight = self._weight(name)
            scores.append(method.score(weight, self.norm, self.generator).flatten().float())
            alive.append(self._alive[name].flatten())
        groups = [(torch.cat(scores), torch.cat(alive))] if method.global_ else list(zip(scores, alive))
        new_alive = [_prune_lowest(score, live, target) for score, live in groups]
        if method.global_:
            new_alive = torch.split(new_alive[0], [a.numel() for a in alive])
        for name, live in zip(self.targets, new_alive):
            self._alive[name] = live.view_as(self._alive[name])

    def _write_masks(self):
        for mask, expand, name in self._expand:
            mask.copy_(expand(self._alive[name], mask))


def _prune_lowest(score, live, target):
    """``live`` with its lowest-scored entries cleared until ``target`` of all are gone.

    Entries already pruned count towards the target and never return.
    """
    n_more = _n_pruned(target, live.numel()) - int((~live).sum())
    live = live.clone()
    if n_more > 0:
        ranked = score.masked_fill(~live, math.inf)
        live[torch.topk(ranked, n_more, largest=False).indices] = False
    return live


class _EncoderPruningCallback(_PruningCallback):
    """The pruning schedule on the attention heads and feed-forward neurons of an encoder.

    The same steps, masks and hooks as :class:`_PruningCallback`; its
    targets are unit groups (``_encoder_units``): a layer's heads, whose
    masks cover their query, key and value rows, and a layer's neurons,
    whose masks cover their intermediate rows. Each kind prunes ``ratio``
    of the schedule's sparsity. ``finish`` slices the pruned units away.
    """

    def __init__(self, *, groups, ratios, **kwargs):
        super().__init__(targets=[g.name for g in groups],
                         layers=[name for g in groups for name in g.layers()], graph=None, **kwargs)
        self.groups = groups
        self.ratios = ratios

    def initialize(self):
        super().initialize()
        self._named = {}
        return self

    def _begin(self, module, continuing):
        named = self._named = dict(module.named_modules())
        self.shapes_ = {n: tuple(named[n].weight.shape) for n in self.layers}
        masks = []
        for group in self.groups:
            self._alive[group.name] = group.alive(named) if continuing else torch.ones(group.n, dtype=torch.bool)
            expand = functools.partial(_expand_rows, group.width)
            for lname in group.masked:
                masks.append((lname, "weight", expand, group.name))
                if named[lname].bias is not None:
                    masks.append((lname, "bias", expand, group.name))
        return masks

    def _layer_weight(self, name):
        layer = self._named[name]
        if hasattr(layer, "weight_orig"):
            return layer.weight_orig.detach() * layer.weight_mask
        return layer.weight.detach()

    def _scores(self, group):
        return group.scores(self._layer_weight, self.norm).cpu()

    def _select(self, target):
        for group in self.groups:
            self._alive[group.name] = _prune_lowest(self._scores(group), self._alive[group.name],
                                                    target * self.ratios[group.kind])

    def finish(self, module):
        """``(module, info)``: the pruned units sliced away (once the schedule is complete)."""
        removed = set()
        if self.complete_:
            module, removed = remove_units(module, self.groups, [self._alive[g.name] for g in self.groups])
        named = dict(module.named_modules())
        rows, n_total, n_zero = [], 0, 0
        for group in self.groups:
            before = sum(math.prod(self.shapes_[n]) for n in group.layers())
            weights = [named[n].weight.detach() for n in group.layers()]
            zeros = before - sum(w.numel() for w in weights) + sum(int((w == 0).sum()) for w in weights)
            n_total, n_zero = n_total + before, n_zero + zeros
            kept = int(self._alive[group.name].sum())
            rows.append({
                "layer": group.name, "type": group.kind, "shape": self.shapes_[group.masked[0]],
                "final_shape": tuple(named[group.masked[0]].weight.shape),
                "sparsity": zeros / before if before else 0.0, "pruned": True,
                "units": group.n, "units_kept": kept, "removed": group.name in removed,
            })
        return module, {"sparsity": n_zero / n_total if n_total else 0.0, "layers": rows}

    def release(self):
        super().release()
        self._named = {}


class _TaylorPruningCallback(_EncoderPruningCallback):
    """Heads and neurons ranked by the loss change their removal would cause.

    The first-order Taylor estimate of a unit's importance (Molchanov et al.
    2019; for heads, the head importance of Michel et al. 2019): the
    derivative of the loss with respect to a gate on the unit's output,
    ``sum(W * dL/dW)`` over the unit's columns of the projection reading it,
    its absolute value summed over the training batches since the last
    pruning step. Read from the gradients the training computes anyway; a
    step with no batch behind it (a model pruned before training) ranks by
    the weights' norm instead.
    """

    def initialize(self):
        super().initialize()
        self.importance_ = {}
        return self

    def on_grad_computed(self, net, named_parameters=None, **kwargs):
        if self.complete_:
            return
        with torch.no_grad():
            for group in self.groups:
                weight = self._named[group.reader].weight
                if weight.grad is None:
                    continue
                gate = (weight * weight.grad).view(weight.shape[0], group.n, group.width).sum(dim=(0, 2))
                total = self.importance_.get(group.name)
                self.importance_[group.name] = gate.abs() if total is None else total.add_(gate.abs())

    def _scores(self, group):
        importance = self.importance_.pop(group.name, None)
        if importance is None:
            return super()._scores(group)
        return importance.float().cpu()

    def release(self):
        super().release()
        self.importance_ = {}


def _expand_rows(width, alive, mask):
    return alive.repeat_interleave(width).view(-1, *([1] * (mask.dim() - 1))).expand_as(mask)


def _as_is(alive, mask):
    return alive.view_as(mask)


def _expand_units(alive, mask):
    return alive.view(-1, *([1] * (mask.dim() - 1))).expand_as(mask)


# -- summary -----------------------------------------------------------------
def _summary(module, callback, removed):
    """Per-layer record, and the sparsity of the pruned layers (removed weights count as zeros)."""
    named = dict(module.named_modules())
    shapes = callback.shapes_ or {n: tuple(named[n].weight.shape) for n in callback.layers}
    targets = set(callback.targets)
    structured = PRUNING_METHODS.get(callback.method).structured
    rows, n_total, n_zero = [], 0, 0
    for name in callback.layers:
        layer = named[name]
        w = layer.weight.detach()
        before = math.prod(shapes[name])
        zeros = before - w.numel() + int((w == 0).sum())
        if name in targets:
            n_total += before
            n_zero += zeros
        row = {
            "layer": name,
            "type": type(layer).__name__,
            "shape": shapes[name],
            "final_shape": tuple(w.shape),
            "sparsity": zeros / before if before else 0.0,
            "pruned": name in targets,
        }
        if structured:
            row["units"] = shapes[name][0]
            row["units_kept"] = int(alive_units(layer).sum())
            row["removed"] = name in removed
        rows.append(row)
    return {"sparsity": n_zero / n_total if n_total else 0.0, "layers": rows}
