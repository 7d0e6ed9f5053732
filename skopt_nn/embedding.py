"""A frozen pretrained encoder as a scikit-learn transformer: text in, embeddings out.

:class:`TextEmbedder` turns each text into the pooled state of a pretrained
encoder (a Hugging Face checkpoint, as :class:`~skopt_nn.Transformer`
reads it), so any sklearn estimator can sit on top of it in a Pipeline.
Nothing is learned from the data: ``fit`` loads the encoder, ``transform``
encodes. Encoding is the expensive part (a forward pass of the whole
encoder per text), and cross-validation and searches transform the same
texts again and again, in clones of the step; so embeddings are kept in a
process-wide cache keyed by the encoder's content and settings and by the
text, and each text is encoded once per process.
"""

import hashlib
import json
import numbers
import os
from collections import OrderedDict

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .specs.transformer import (Transformer, _float32, _from_files, _hf, _quiet, _with_pad_token, declared_pooling,
                                encode_texts, pool_states, tokenizer_files)
from .training.data import as_text_column

__all__ = ["TextEmbedder", "clear_embedding_cache"]

# Embeddings by (encoder fingerprint, text), least recently used dropped first
# past _CACHE_BYTES; loaded encoders by their checkpoint and settings.
_CACHE_BYTES = 256 * 2**20
_EMBEDDINGS = OrderedDict()
_ENCODERS = OrderedDict()
_N_ENCODERS = 2
_state = {"bytes": 0}


def clear_embedding_cache():
    """Forget every cached embedding and loaded encoder of this process."""
    _EMBEDDINGS.clear()
    _ENCODERS.clear()
    _state["bytes"] = 0


def _remember(key, vector):
    _EMBEDDINGS[key] = vector
    _state["bytes"] += vector.nbytes
    while _state["bytes"] > _CACHE_BYTES and _EMBEDDINGS:
        _, old = _EMBEDDINGS.popitem(last=False)
        _state["bytes"] -= old.nbytes


def _fingerprint(hf, pooling, max_length, normalize):
    """A digest of the encoder's weights and configuration and of the settings that change outputs."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(hf.config.to_json_string(use_diff=False).encode())
    digest.update(f"{pooling}|{max_length}|{normalize}".encode())
    for name, tensor in hf.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _checkpoint_key(spec):
    """The checkpoint's identity on disk: its path, and the sizes and times of its files."""
    path = os.path.abspath(os.fspath(spec.model))
    files = []
    if os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if os.path.isfile(full):
                info = os.stat(full)
                files.append((name, info.st_size, info.st_mtime_ns))
    return (path, spec.local_files_only, tuple(files))


class TextEmbedder(TransformerMixin, BaseEstimator):
    """A frozen pretrained encoder as a transformer: each text becomes one vector.

    ``fit`` loads the checkpoint and learns nothing from the data (nor from
    ``y``); ``transform`` returns the pooled last hidden states, one row per
    text, so that any sklearn estimator can be trained on them
    (``make_pipeline(TextEmbedder(path), LogisticRegression())``). Each text
    is encoded once per process: clones made by cross-validation and
    searches share the encoder and a cache of embeddings. A fitted embedder
    carries its encoder and tokenizer, so it pickles and loads without the
    checkpoint directory, and ``skopt_nn.save`` stores it without pickle.

    Parameters
    ----------
    model : str or path-like
        A directory written by ``save_pretrained`` (model and tokenizer), or a
        model name in the local Hugging Face cache, as for
        :class:`~skopt_nn.Transformer`.
    pooling : {"auto", "mean", "cls"}, default="auto"
        ``"mean"``: the mean of the text's token states (padding left out);
        ``"cls"``: the first token's state; ``"auto"``: the checkpoint's own
        pooling when its folder declares one (sentence-transformers), else
        ``"mean"``.
    max_length : int, default=128
        Tokens per text after truncation.
    normalize : bool, default=False
        Scale each embedding to unit length (cosine geometry).
    batch_size : int, default=64
        Texts encoded per forward pass.
    local_files_only : bool, default=True
        Only read local files.

    Attributes
    ----------
    encoder_ : torch.nn.Module
        The frozen encoder (shared with clones fitted on the same checkpoint).
    pooling_ : str
        The pooling used, ``"mean"`` or ``"cls"``.
    n_features_in_ : int
        1: one text column.
    feature_names_in_ : ndarray
        The text column's name, when ``X`` was a one-column DataFrame.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from skopt_nn import TextEmbedder
    >>> pipe = make_pipeline(TextEmbedder("path/to/checkpoint"), LogisticRegression())
    >>> pipe.steps[0][1].pooling
    'auto'
    """

    _parameter_constraints = {
        "model": [str, os.PathLike],
        "pooling": [StrOptions({"auto", "mean", "cls"})],
        "max_length": [Interval(numbers.Integral, 1, None, closed="left")],
        "normalize": ["boolean"],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "local_files_only": ["boolean"],
    }

    def __init__(self, model, *, pooling="auto", max_length=128, normalize=False, batch_size=64,
                 local_files_only=True):
        self.model = model
        self.pooling = pooling
        self.max_length = max_length
        self.normalize = normalize
        self.batch_size = batch_size
        self.local_files_only = local_files_only

    def _spec(self):
        return Transformer(self.model, max_length=self.max_length, local_files_only=self.local_files_only)

    def fit(self, X, y=None):
        """Load the encoder; nothing is learned from ``X`` or ``y`` (validated only).

        Parameters
        ----------
        X : list, array or Series of str, or a one-column DataFrame
        y : ignored

        Returns
        -------
        self : TextEmbedder
        """
        self._validate_params()
        validate_data(self, as_text_column(X, type(self).__name__), reset=True, dtype=None)
        spec = self._spec()
        pooling = self.pooling if self.pooling != "auto" else (declared_pooling(os.fspath(self.model))
                                                                or "mean")
        key = (_checkpoint_key(spec), pooling, int(self.max_length), bool(self.normalize))
        if key in _ENCODERS:
            _ENCODERS.move_to_end(key)
            hf, files, fingerprint = _ENCODERS[key]
        else:
            hf, tokenizer = spec.load_encoder()
            for p in hf.parameters():
                p.requires_grad_(False)
            files = tokenizer_files(tokenizer)
            fingerprint = _fingerprint(hf, pooling, int(self.max_length), bool(self.normalize))
            _ENCODERS[key] = (hf, files, fingerprint)
            while len(_ENCODERS) > _N_ENCODERS:
                _ENCODERS.popitem(last=False)
        self.encoder_ = hf
        self.tokenizer_files_ = files
        self.fingerprint_ = fingerprint
        self.pooling_ = pooling
        self.embedding_dim_ = int(hf.config.hidden_size)
        self.__dict__.pop("_tokenizer_cache", None)
        return self

    def _tokenizer(self):
        tok = self.__dict__.get("_tokenizer_cache")
        if tok is None:
            transformers = _hf()
            tok = _with_pad_token(_from_files(
                self.tokenizer_files_,
                lambda d: transformers.AutoTokenizer.from_pretrained(d, local_files_only=True)))
            self.__dict__["_tokenizer_cache"] = tok
        return tok

    def transform(self, X):
        """The embedding of each text, one row each: ``(n_texts, embedding_dim_)`` float32.

        Parameters
        ----------
        X : list, array or Series of str, or a one-column DataFrame

        Returns
        -------
        embeddings : ndarray of shape (n_texts, n_dims)
            ``n_dims`` is the encoder's hidden size, ``embedding_dim_``.
        """
        check_is_fitted(self, "encoder_")
        column = validate_data(self, as_text_column(X, type(self).__name__), reset=False, dtype=None)
        texts = [str(t) for t in np.asarray(column, dtype=object)[:, 0]]
        out = np.empty((len(texts), self.embedding_dim_), dtype=np.float32)
        missing = {}
        for i, text in enumerate(texts):
            vector = _EMBEDDINGS.get((self.fingerprint_, text))
            if vector is None:
                missing.setdefault(text, []).append(i)
            else:
                _EMBEDDINGS.move_to_end((self.fingerprint_, text))
                out[i] = vector
        todo = list(missing)
        tokenizer, step = self._tokenizer(), int(self.batch_size)
        self.encoder_.eval()
        with torch.inference_mode():
            for start in range(0, len(todo), step):
                batch = todo[start:start + step]
                rows = encode_texts(tokenizer, batch, self.max_length)
                width = rows.shape[1] // 2
                ids, mask = rows[:, :width], rows[:, width:]
                states = self.encoder_(input_ids=ids, attention_mask=mask).last_hidden_state
                pooled = pool_states(states, mask, self.pooling_).float()
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=1)
                for text, vector in zip(batch, pooled.numpy()):
                    vector = vector.copy()
                    _remember((self.fingerprint_, text), vector)
                    out[missing[text]] = vector
        return out

    def get_feature_names_out(self, input_features=None):
        """``embedding0``, ``embedding1``, ...: one name per embedding dimension."""
        check_is_fitted(self, "encoder_")
        return np.asarray([f"embedding{i}" for i in range(self.embedding_dim_)], dtype=object)

    # -- the pickle-free format (skopt_nn.save) ------------------------------------
    def _encoder_state(self):
        """``(config as JSON text, weights)``: what rebuilds the encoder without the checkpoint."""
        check_is_fitted(self, "encoder_")
        config = self.encoder_.config.to_json_string(use_diff=False)
        return config, {key: value.detach() for key, value in self.encoder_.state_dict().items()}

    def _restore_encoder(self, config, weights):
        """Rebuild ``encoder_`` from ``_encoder_state``'s output (``load``); raises ValueError."""
        transformers = _hf()
        settings = json.loads(config)
        try:
            config_obj = transformers.AutoConfig.for_model(settings.pop("model_type"), **settings)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"its encoder's configuration cannot be read ({exc})") from None
        with _quiet():
            hf = transformers.AutoModel.from_config(config_obj, **_float32())
        try:
            hf.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"the weights do not fit its encoder ({exc})") from None
        for p in hf.parameters():
            p.requires_grad_(False)
        self.encoder_ = hf.eval()

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_tokenizer_cache", None)  # rebuilt from tokenizer_files_ on first use
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        return tags
