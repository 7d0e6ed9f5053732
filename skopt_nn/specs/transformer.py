"""Pretrained Hugging Face models as network specs: ``Transformer`` and ``LoRA``.

``Transformer(model)`` builds, at fit time, a sequence-classification model
from a local checkpoint (a ``save_pretrained`` directory or a name already in
the Hugging Face cache) with a head sized from the data, and the checkpoint's
tokenizer. The estimator then takes raw text as ``X``: the tokenizer turns
it into one int64 tensor per fit (token ids and attention mask side by side,
see ``PretrainedTextNet.encode``), so batches stay slices of one tensor as
for any other network.

``transformers`` and ``peft`` are imported only when a model is built or
loaded, never by ``import skopt_nn``.

Self-contained fitted models: the built module keeps the tokenizer's files
and the model's configuration, so a pickled model, or one written by
``skopt_nn.save``, predicts after the checkpoint directory is gone. LoRA
adapters are merged into the weights at the end of ``fit``, so a fitted
model is an ordinary ``transformers`` model.
"""

import base64
import contextlib
import glob
import json
import numbers
import os
import tempfile
import warnings

import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ._spec import LeanParams
from ._encoder_units import resize_units, unit_sizes
from .schedules import LRSchedule

__all__ = ["pool_states", "Transformer", "LoRA", "PretrainedTextNet"]

_INSTALL = 'pip install "skopt-nn[transformers]"'
# The learning rate of a fresh head: the head-only recipe's, and the head's
# own rate beside a body that trains (``head_lr="auto"``).
_HEAD_LR = 3e-3


def _hf():
    """``transformers``, imported on first use, with a clear error if it is missing."""
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise ImportError(f"Transformer needs the transformers package: {_INSTALL}.") from exc
    return transformers


@contextlib.contextmanager
def _quiet():
    """Silence transformers' load report and progress bars for one load.

    A head re-initialised for the data's classes is the expected case here,
    not news worth a table on stderr in every fit of a search.
    """
    logging = _hf().utils.logging
    level = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def _float32():
    # transformers 5 loads in the checkpoint's dtype by default ("auto"); the
    # estimators keep weights in float32 (``precision`` is autocast).
    major = int(_hf().__version__.split(".")[0])
    return {"dtype": torch.float32} if major >= 5 else {"torch_dtype": torch.float32}


class LoRA(LeanParams, BaseEstimator):
    """Low-rank adapters (LoRA, Hu et al. 2021) for a ``Transformer``, through ``peft``.

    The pretrained weights stay fixed; each targeted linear layer learns a
    low-rank update ``(alpha / r) * B @ A``. The classification or regression
    head trains in full. After ``fit`` the updates are merged into the
    weights, so the fitted model is an ordinary ``transformers`` model with
    no adapter code and no extra cost at prediction.

    Parameters
    ----------
    r : int, default=8
        Rank of the update.
    alpha : float, default=16
        Scale of the update (``lora_alpha``); the update is scaled by
        ``alpha / r``.
    dropout : float, default=0.0
        Dropout on the adapters' input.
    target_modules : list of str, "all-linear" or None, default="all-linear"
        Names of the linear layers to adapt. ``"all-linear"``: every linear
        layer of the pretrained model but the head, which trains in full
        (Dettmers et al. 2023, QLoRA, find LoRA needs all of them to match full
        fine-tuning; on the docstring task of ``benchmarks/bench_pretrained.py``
        it scored 3.0 points above ``query`` and ``value`` alone, for 1.3x
        the time). None: ``peft``'s default for the architecture (``query``
        and ``value`` for BERT-like models).

    Examples
    --------
    >>> from skopt_nn import LoRA, Transformer
    >>> spec = Transformer("path/to/checkpoint", lora=LoRA(r=4))
    >>> spec.set_params(lora__r=16).lora
    LoRA(r=16)
    """

    _parameter_constraints = {
        "r": [Interval(numbers.Integral, 1, None, closed="left")],
        "alpha": [Interval(numbers.Real, 0, None, closed="neither")],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "target_modules": [None, list, tuple, str],
    }

    def __init__(self, r=8, alpha=16, dropout=0.0, target_modules="all-linear"):
        self.r = r
        self.alpha = alpha
        self.dropout = dropout
        self.target_modules = target_modules

    def _config(self, head, model):
        """The ``peft.LoraConfig`` for ``model``; ``head`` (module names) trains in full."""
        self._validate_params()
        try:
            import peft
        except ImportError as exc:  # pragma: no cover - the extra is installed in CI
            raise ImportError(f"LoRA needs the peft package: {_INSTALL}.") from exc
        targets = self.target_modules
        if isinstance(targets, tuple):
            targets = list(targets)
        if targets == "all-linear":
            # named here rather than by peft, which keeps a sequence
            # classifier's own head among its targets
            targets = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)
                       and not any(name == h or name.startswith(h + ".") for h in head)]
        return peft.LoraConfig(
            r=int(self.r), lora_alpha=float(self.alpha), lora_dropout=float(self.dropout),
            target_modules=targets, modules_to_save=list(head),
        )


class Transformer(BaseEstimator):
    """A pretrained Hugging Face model, fine-tuned on raw text, as a network spec.

    ``X`` is text: a list, 1-D array or ``Series`` of strings, or a
    one-column ``DataFrame``. The checkpoint's tokenizer pads and truncates
    each text to ``max_length`` tokens. A classification head (one output
    per class) or regression head (one per target) is sized from the data;
    every other weight comes from the checkpoint. Nothing is downloaded
    unless ``local_files_only=False``.

    Parameters
    ----------
    model : str or path-like
        A directory written by ``save_pretrained`` (model and tokenizer), or
        the name of a model already in the local Hugging Face cache.
    max_length : int, default=128
        Tokens per text after truncation.
    freeze : int or "all", default=0
        Freeze the embeddings and the bottom ``freeze`` encoder layers (their
        weights stay bit-identical to the checkpoint's); ``"all"`` freezes the
        whole pretrained body, so only the head trains; 0 freezes nothing.
        With ``lora``, the adapters of frozen layers are frozen too.
    lora : LoRA, default=None
        Train low-rank adapters instead of the pretrained weights (searchable
        as ``module__lora__r``, ``module__lora__alpha``, ...).
    layer_lr_decay : float, default=1.0
        Layer-wise learning-rate decay: the layers above the encoder (a
        pooler) and the top encoder layer train at ``lr`` (the head at
        ``head_lr``), the layer below at ``lr * layer_lr_decay``, and so on
        down to the embeddings at ``lr * layer_lr_decay ** n_layers``.
        Learning-rate schedules scale every layer's rate alike.
    head_lr : float, None or "auto", default="auto"
        The learning rate of the fresh head (the linear layer on the pooled
        state, or the architecture's classifier) while the body trains at
        ``lr``; the schedule scales it as it scales ``lr``. None trains the
        head at ``lr``. ``"auto"``: 3e-3, the rate of the head trained alone,
        when the body trains too (full fine-tuning or LoRA), else None (with
        ``freeze="all"`` the head is all that trains, at ``lr``). A head
        initialised at random needs far larger steps than pretrained weights
        that should move little.
    gradient_checkpointing : bool, default=False
        Recompute activations in the backward pass instead of storing them:
        less memory, about a third more compute.
    local_files_only : bool, default=True
        Only read local files. Set False to let ``transformers`` download a
        model by name from the Hugging Face Hub.
    pooling : {"auto", "cls", "mean"}, default="auto"
        How a text's token states become one vector for the head.
        ``"cls"``: the architecture's own sequence-classification head (the
        first token's state, through BERT's pooler); ``"mean"``: the mean of
        the states of the text's tokens (padding left out), then a fresh
        linear head, as sentence encoders are trained. ``"auto"``: the
        checkpoint's own pooling when its folder declares one (a
        sentence-transformers ``modules.json`` and its ``Pooling``
        ``config.json``), else ``"cls"``.
    n_layers : int, default=None
        Keep only the bottom ``n_layers`` encoder layers of the checkpoint
        (the top ones are dropped before training): a smaller, faster
        student, for instance one distilled from the full model. None keeps
        every layer.

    See Also
    --------
    LoRA : Low-rank adapters for the model.

    Notes
    -----
    ``n_features_in_`` of an estimator fitted on text is 1 (one text column);
    a ``DataFrame`` column's name is its ``feature_names_in_``. A fitted
    model carries the tokenizer's files and the model's configuration: it
    pickles and saves (``skopt_nn.save``) without the checkpoint. With LoRA
    the estimator's ``n_trainable_params_`` is the number of weights the fit
    trained (adapters and head), counted before the adapters were merged.

    Examples
    --------
    >>> from skopt_nn import LoRA, NNClassifier, Transformer
    >>> clf = NNClassifier(Transformer("path/to/checkpoint", freeze=1, lora=LoRA(r=4)), lr=1e-3)
    >>> sorted(k for k in clf.get_params() if k.startswith("module__lora__"))
    ['module__lora__alpha', 'module__lora__dropout', 'module__lora__r', 'module__lora__target_modules']
    """

    # Raw text in; no sparse or float rows.
    accepts_text = True
    accepts_sparse = False

    _parameter_constraints = {
        "model": [str, os.PathLike],
        "max_length": [Interval(numbers.Integral, 1, None, closed="left")],
        "freeze": [Interval(numbers.Integral, 0, None, closed="left"), StrOptions({"all"})],
        "lora": [None, LoRA],
        "layer_lr_decay": [Interval(numbers.Real, 0, 1, closed="right")],
        "head_lr": [None, Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "gradient_checkpointing": ["boolean"],
        "local_files_only": ["boolean"],
        "pooling": [StrOptions({"auto", "cls", "mean"})],
        "n_layers": [None, Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, model, *, max_length=128, freeze=0, lora=None, layer_lr_decay=1.0,
                 head_lr="auto", gradient_checkpointing=False, local_files_only=True, pooling="auto",
                 n_layers=None):
        self.model = model
        self.max_length = max_length
        self.freeze = freeze
        self.lora = lora
        self.layer_lr_decay = layer_lr_decay
        self.head_lr = head_lr
        self.gradient_checkpointing = gradient_checkpointing
        self.local_files_only = local_files_only
        self.pooling = pooling
        self.n_layers = n_layers

    def resolved_pooling(self):
        """``"cls"`` or ``"mean"``: ``pooling``, with ``"auto"`` read from the checkpoint's folder."""
        self._validate_params()
        if self.pooling != "auto":
            return self.pooling
        return declared_pooling(os.fspath(self.model)) or "cls"

    def resolved_head_lr(self):
        """The head's own learning rate, or None (it trains at ``lr``): ``head_lr`` with "auto" resolved."""
        self._validate_params()
        if self.head_lr != "auto":
            return self.head_lr
        return None if self.freeze == "all" else _HEAD_LR

    def fit_defaults(self):
        """The fine-tuning recipe an estimator's "auto" training parameters take.

        A pretrained body wants small steps, many of them, and a learning
        rate that warms up and then decays (the recipe of small-data BERT
        fine-tuning studies, which train longer than the 3 epochs first
        proposed): batches of 16, up to 20 epochs with a linear warm-up over
        the first and linear decay to 0 at the last, every training
        row trained on (no held-out split: the decay ends the training, and
        a small task cannot spare 10 % of its rows), and a learning rate per
        mode: 3e-5 for full fine-tuning (``freeze`` an int), 1e-3 for LoRA
        adapters (``lora``) and 3e-3 for the head alone (``freeze="all"``);
        beside a body that trains, the fresh head keeps the head-only rate
        (``head_lr="auto"``). Each is a parameter of the estimator (the
        head's of the spec), set or searched like any other
        (``early_stopping=True`` keeps the best epoch on a held-out split
        instead).
        """
        if self.freeze == "all":
            lr = _HEAD_LR
        elif self.lora is not None:
            lr = 1e-3
        else:
            lr = 3e-5
        return {"lr": lr, "batch_size": 16, "max_epochs": 20,
                "lr_schedule": LRSchedule("linear", warmup_epochs=1), "early_stopping": False}

    def _load_error(self, what, exc):
        where = os.fspath(self.model)
        hint = ("it is neither a directory written by save_pretrained nor a model name in the "
                "local Hugging Face cache; nothing is downloaded with local_files_only=True (set "
                "local_files_only=False to allow it)") if self.local_files_only else str(exc)
        return ValueError(f"Transformer could not load the {what} of model={where!r}: {hint}.")

    def tokenizer(self):
        """The checkpoint's tokenizer (loaded from disk at each call)."""
        self._validate_params()
        transformers = _hf()
        try:
            with _quiet():
                tok = transformers.AutoTokenizer.from_pretrained(
                    os.fspath(self.model), local_files_only=self.local_files_only)
        except (OSError, ValueError) as exc:
            raise self._load_error("tokenizer", exc) from None
        return _with_pad_token(tok)

    def encode(self, texts):
        """Token ids and attention masks of ``texts``, side by side in one int64 tensor."""
        return encode_texts(self.tokenizer(), texts, self.max_length)

    def load_encoder(self):
        """The bare pretrained encoder (``AutoModel``, float32, eval mode) and its tokenizer."""
        self._validate_params()
        tokenizer = self.tokenizer()
        transformers = _hf()
        try:
            with _quiet():
                hf = transformers.AutoModel.from_pretrained(
                    os.fspath(self.model), local_files_only=self.local_files_only, **_float32())
        except (OSError, ValueError) as exc:
            raise self._load_error("model", exc) from None
        return hf.eval(), tokenizer

    def build(self, n_features_in, n_outputs):
        """Load the checkpoint with a fresh head of ``n_outputs`` outputs; apply freeze and LoRA."""
        self._validate_params()
        tokenizer = self.tokenizer()
        transformers = _hf()
        pooling = self.resolved_pooling()
        # "cls": the architecture's own head; "mean": the bare encoder, the head is ours
        loader = (transformers.AutoModelForSequenceClassification if pooling == "cls"
                  else transformers.AutoModel)
        try:
            with _quiet():
                hf = loader.from_pretrained(
                    os.fspath(self.model), num_labels=int(n_outputs), ignore_mismatched_sizes=True,
                    local_files_only=self.local_files_only, **_float32())
        except (OSError, ValueError) as exc:
            raise self._load_error("model", exc) from None
        if hf.config.pad_token_id is None:  # decoder heads find each text's last token by it
            hf.config.pad_token_id = tokenizer.pad_token_id
        if self.n_layers is not None:
            _keep_bottom_layers(hf, int(self.n_layers))
        return PretrainedTextNet(
            hf, tokenizer_files(tokenizer), max_length=self.max_length, freeze=self.freeze,
            lora=self.lora, layer_lr_decay=self.layer_lr_decay, head_lr=self.resolved_head_lr(),
            gradient_checkpointing=self.gradient_checkpointing, pooling=pooling,
        )


def _keep_bottom_layers(hf, n):
    """Drop the encoder layers of ``hf`` above the bottom ``n`` (in place)."""
    body = hf.base_model
    total = getattr(hf.config, "num_hidden_layers", None)
    found = [(name, m) for name, m in body.named_modules() if isinstance(m, nn.ModuleList) and len(m) == total]
    if not found:
        raise ValueError(f"Transformer(n_layers=...) found no list of {total} encoder layers in "
                         f"{type(body).__name__}.")
    if n > total:
        raise ValueError(f"n_layers={n} exceeds the {total} encoder layers of the model; use at most {total}.")
    name, layers = found[0]
    parent, _, attr = name.rpartition(".")
    setattr(body.get_submodule(parent) if parent else body, attr, nn.ModuleList(list(layers)[:n]))
    hf.config.num_hidden_layers = n


def pool_states(states, mask, pooling):
    """One vector per text from its token states: the mean over its tokens, or the first token's."""
    if pooling == "cls":
        return states[:, 0]
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def declared_pooling(folder):
    """The pooling a sentence-transformers folder declares (``"mean"`` or ``"cls"``), or None.

    Reads ``modules.json`` and the ``config.json`` of its ``Pooling``
    module; a folder without them (or a model name) declares nothing. Max
    or weighted pooling is read as ``"mean"``, the nearest this spec runs.
    """
    try:
        with open(os.path.join(folder, "modules.json"), encoding="utf-8") as f:
            modules = json.load(f)
    except (OSError, ValueError):
        return None
    for entry in modules if isinstance(modules, list) else []:
        if not str(entry.get("type", "")).endswith("Pooling"):
            continue
        try:
            with open(os.path.join(folder, entry.get("path", ""), "config.json"), encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError):
            return None
        if config.get("pooling_mode_cls_token") and not config.get("pooling_mode_mean_tokens"):
            return "cls"
        return "mean"
    return None


def _with_pad_token(tokenizer):
    # Decoder checkpoints (GPT-2) ship without a padding token; their
    # end-of-text token pads, the attention mask hides it.
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    # Padding on the right, always: the network trims each batch's columns
    # of padding from the right (``PretrainedTextNet.forward``).
    tokenizer.padding_side = "right"
    return tokenizer


def encode_texts(tokenizer, texts, max_length):
    """``[input_ids | attention_mask]`` of ``texts`` as one ``(n, 2 * width)`` int64 tensor.

    Padded to the longest text of the call (at most ``max_length`` tokens);
    the network splits the halves again and trims each batch to its own
    longest text.
    """
    texts = [str(t) for t in texts]
    if not texts:
        return torch.zeros((0, 2), dtype=torch.int64)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=int(max_length), return_tensors="pt")
    return torch.cat([enc["input_ids"].long(), enc["attention_mask"].long()], dim=1).contiguous()


def tokenizer_files(tokenizer):
    """The files ``save_pretrained`` writes for ``tokenizer``, as ``{name: base64 text}``."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        files = {}
        for path in sorted(glob.glob(os.path.join(tmp, "*"))):
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    files[os.path.basename(path)] = base64.b64encode(f.read()).decode("ascii")
    return files


def _from_files(files, loader):
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            if os.path.basename(name) != name:
                raise ValueError(f"unexpected file name {name!r} in a saved tokenizer")
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(base64.b64decode(data))
        with _quiet():
            return loader(tmp)


def _layout(hf):
    """The pretrained body's parts, bottom to top: ``(embeddings, layers, top, body)``.

    ``embeddings`` and ``top`` are lists of parameters (those registered
    before the first encoder layer, and after the last: a pooler, a final
    norm), ``layers`` the encoder layers (modules), ``body`` the base model.
    The encoder layers are the body's longest ``ModuleList`` (its length is
    ``config.num_hidden_layers`` for every encoder in transformers).
    """
    body = hf.base_model
    lists = [m for m in body.modules() if isinstance(m, nn.ModuleList)]
    n_layers = getattr(hf.config, "num_hidden_layers", None)
    exact = [m for m in lists if len(m) == n_layers]
    layers = list((exact or sorted(lists, key=len, reverse=True) or [[]])[0])
    in_layers = {id(p) for layer in layers for p in layer.parameters()}
    embeddings, top, seen = [], [], False
    for p in body.parameters():
        if id(p) in in_layers:
            seen = True
        else:
            (top if seen else embeddings).append(p)
    return embeddings, layers, top, body


def _classifier_children(hf):
    """``(name, module)`` of what a ``*ForSequenceClassification`` model adds to its body: the head."""
    *_, body = _layout(hf)
    if body is hf:  # a bare encoder has none
        return []
    return [(name, child) for name, child in hf.named_children()
            if child is not body and any(True for _ in child.parameters())]


class PretrainedTextNet(nn.Module):
    """A sequence-classification model that takes ``[input_ids | attention_mask]`` rows.

    Built by ``Transformer.build``; returns one logit per class (or one
    output per regression target) as a plain tensor, so the estimator's own
    loss trains it. With ``pooling="mean"`` it holds the bare encoder, and
    its own ``head`` reads the mean of each text's token states. Keeps the tokenizer's files so that it tokenizes text
    (``encode``) after the checkpoint directory is gone.
    """

    def __init__(self, hf, tokenizer_files, *, max_length=128, freeze=0, lora=None,
                 layer_lr_decay=1.0, head_lr=None, gradient_checkpointing=False, pooling="cls"):
        super().__init__()
        self.model = hf
        self.tokenizer_files = dict(tokenizer_files)
        self.max_length = int(max_length)
        self.freeze = freeze
        self.layer_lr_decay = float(layer_lr_decay)
        self.head_lr = None if head_lr is None else float(head_lr)
        self.pooling = pooling
        self._tokenizer = None
        self.lora_ = None
        if pooling == "mean":  # the bare encoder: a fresh head on the mean token state
            config = hf.config
            rate = getattr(config, "classifier_dropout", None)
            rate = getattr(config, "hidden_dropout_prob", 0.1) if rate is None else rate
            self.dropout = nn.Dropout(float(rate or 0.0))
            self.head = nn.Linear(config.hidden_size, config.num_labels)
            with torch.no_grad():
                self.head.weight.normal_(0.0, getattr(config, "initializer_range", 0.02))
                self.head.bias.zero_()
        self._apply_freeze()
        if gradient_checkpointing:
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if lora is not None:
            self._wrap_lora(lora)
        self.trainable_params = sum(p.numel() for p in self.parameters() if p.requires_grad)

    # -- structure -----------------------------------------------------------------------
    def _frozen_parts(self, hf):
        embeddings, layers, top, body = _layout(hf)
        if self.freeze == "all":
            return list(body.parameters()), layers
        k = int(self.freeze)
        if k == 0:  # full fine-tuning: the embeddings train too
            return [], []
        if k > len(layers):
            raise ValueError(
                f"freeze={k} exceeds the {len(layers)} encoder layers of the model; use at most "
                f"{len(layers)}, or freeze='all'."
            )
        return embeddings + [p for layer in layers[:k] for p in layer.parameters()], layers[:k]

    def _apply_freeze(self):
        for p in self.model.parameters():
            p.requires_grad_(True)
        frozen, _ = self._frozen_parts(self.model)
        for p in frozen:
            p.requires_grad_(False)

    def _wrap_lora(self, lora):
        import peft

        hf = self.model
        # the architecture's own head trains in full; a mean-pooled net's head is outside hf
        head = [name for name, _ in _classifier_children(hf)]
        _, frozen_layers = self._frozen_parts(hf)
        with _quiet(), warnings.catch_warnings():
            # peft reads an attribute transformers 5 renamed: noise, not news
            warnings.simplefilter("ignore", FutureWarning)
            self.model = peft.get_peft_model(hf, lora._config(head, hf))
        # peft trains every adapter; those inside frozen layers stay as built.
        for layer in frozen_layers:
            for p in layer.parameters():
                p.requires_grad_(False)
        self.lora_ = True

    def _base(self):
        """The transformers model, under peft's wrapper while adapters are attached."""
        return self.model.get_base_model() if self.lora_ else self.model

    def encoder_layers(self):
        """The encoder's layers, bottom to top (what structured pruning cuts into)."""
        return _layout(self._base())[1]

    def _head_modules(self):
        """The fresh head: ours on the pooled state, or the architecture's classifier."""
        if self.pooling == "mean":
            return [self.head]
        # peft wraps a classifier it trains in full; the wrapper holds its parameters
        return [child for _, child in _classifier_children(self._base())]

    def optimizer_groups(self, lr):
        """skorch ``param_groups`` for the head's own rate and layer-wise decay, or None.

        Each group carries ``lr_scale``, the factor the learning-rate
        schedule multiplies its rate by. skorch puts a parameter in the first
        group whose pattern matches it: the head's come first.
        """
        pnames = {id(p): name for name, p in self.named_parameters()}
        groups = []
        head_lr = getattr(self, "head_lr", None)  # pickles from before head_lr have none
        if head_lr is not None and head_lr != lr:
            scale = head_lr / lr
            groups += [(glob.escape(pnames[id(p)]), {"lr": head_lr, "lr_scale": scale})
                       for m in self._head_modules() for p in m.parameters()]
        decay = self.layer_lr_decay
        if decay == 1.0:
            return groups or None
        embeddings, layers, _, _ = _layout(self._base())
        names = {id(m): name for name, m in self.named_modules()}
        n = len(layers)
        for depth, layer in enumerate(reversed(layers)):
            scale = decay ** depth
            groups.append((glob.escape(names[id(layer)]) + ".*", {"lr": lr * scale, "lr_scale": scale}))
        scale = decay ** n
        for p in embeddings:
            groups.append((glob.escape(pnames[id(p)]), {"lr": lr * scale, "lr_scale": scale}))
        return groups

    def finish_fit(self):
        """Merge LoRA adapters into the weights; return True if the parameters changed.

        ``trainable_params`` becomes the number of weights this fit trained,
        counted before the merge (after it, adapters no longer exist).
        """
        self.trainable_params = sum(p.numel() for p in self.parameters() if p.requires_grad)
        if not self.lora_:
            return False
        with _quiet():
            self.model = self.model.merge_and_unload()
        self.lora_ = None
        # A continued fit (warm_start, partial_fit) trains the merged weights
        # that ``freeze`` leaves free.
        self._apply_freeze()
        return True

    def multiply_adds_per_row(self):
        """Rough multiply-adds of one text's forward pass: the body's weights once per token."""
        embeddings, *_ = _layout(self._base())
        emb = sum(p.numel() for p in embeddings)
        return max(1, (sum(p.numel() for p in self.parameters()) - emb) * self.max_length)

    # -- data ------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            transformers = _hf()
            self._tokenizer = _with_pad_token(_from_files(
                self.tokenizer_files,
                lambda d: transformers.AutoTokenizer.from_pretrained(d, local_files_only=True)))
        return self._tokenizer

    def encode(self, texts):
        """``[input_ids | attention_mask]`` rows for ``texts`` (see ``encode_texts``)."""
        return encode_texts(self.tokenizer, texts, self.max_length)

    def forward(self, x):
        width = x.shape[1] // 2
        ids, mask = x[:, :width], x[:, width:]
        if len(x) and not torch.jit.is_tracing():
            # Right-padded rows: the batch needs only its longest text's tokens.
            used = int(mask.sum(dim=1).max())
            ids, mask = ids[:, :max(used, 1)], mask[:, :max(used, 1)]
        if getattr(self, "pooling", "cls") != "mean":  # (pickles from before pooling= have none)
            return self.model(input_ids=ids, attention_mask=mask).logits
        states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.head(self.dropout(pool_states(states, mask, "mean")))

    # -- persistence -----------------------------------------------------------------------
    def blueprint(self):
        """What rebuilds this network without the checkpoint: JSON-ready, weights apart."""
        return {
            "config": self._base().config.to_json_string(use_diff=False),
            "tokenizer": dict(self.tokenizer_files),
            "max_length": self.max_length,
            "freeze": self.freeze,
            "layer_lr_decay": self.layer_lr_decay,
            "head_lr": getattr(self, "head_lr", None),
            "pooling": getattr(self, "pooling", "cls"),
            # heads and neurons left by structured pruning, where fewer than the config's
            "units": unit_sizes(self, self._base().config),
        }

    @classmethod
    def from_blueprint(cls, blueprint):
        """An untrained network of the saved architecture (load its weights next)."""
        transformers = _hf()
        config = json.loads(blueprint["config"])
        config_obj = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
        pooling = blueprint.get("pooling", "cls")  # files from before pooling= were "cls"
        loader = (transformers.AutoModelForSequenceClassification if pooling == "cls"
                  else transformers.AutoModel)
        with _quiet():
            hf = loader.from_config(config_obj, **_float32())
        net = cls(hf, blueprint["tokenizer"], max_length=blueprint["max_length"],
                  freeze=blueprint["freeze"], layer_lr_decay=blueprint["layer_lr_decay"],
                  head_lr=blueprint.get("head_lr"), pooling=pooling)
        return resize_units(net, blueprint.get("units"))

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state["_tokenizer"] = None  # rebuilt from ``tokenizer_files`` on first use
        return state


def _text_network(module):
    for m in module.modules():
        if isinstance(m, PretrainedTextNet):
            return m
    return None


def holds_text_network(module):
    """Whether ``module`` is, or holds (an ensemble's member), a pretrained text network."""
    return _text_network(module) is not None


def text_encoder(module):
    """The ``encode`` of the text network inside ``module`` (itself or an ensemble member)."""
    net = _text_network(module)
    if net is None:
        raise TypeError(f"{type(module).__name__} holds no text network.")
    return net.encode


def accepts_text(spec):
    """Whether a network spec takes raw text as ``X``."""
    return bool(getattr(spec, "accepts_text", False))
