"""Tiny Hugging Face checkpoints and generated text tasks, for tests and benchmarks.

Nothing here downloads anything: the checkpoint is a small BERT built from a
``BertConfig`` with a word-level vocabulary written beside it, saved with
``save_pretrained`` like any pretrained model.
"""

import inspect
import os

import numpy as np

__all__ = ["VOCABULARY", "tiny_checkpoint", "review_texts"]

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = ["good", "great", "fine", "lovely", "superb", "happy", "bright", "nice"]
NEGATIVE = ["bad", "awful", "poor", "dull", "sad", "grim", "nasty", "weak"]
TOPICS = {
    "sport": ["ball", "goal", "team", "match", "coach", "race"],
    "food": ["bread", "soup", "cake", "salt", "lunch", "fruit"],
    "tech": ["code", "chip", "disk", "robot", "server", "pixel"],
}
FILLER = ["the", "a", "was", "is", "very", "quite", "and", "it", "this", "that", "day", "story"]
VOCABULARY = _SPECIAL + POSITIVE + NEGATIVE + [w for ws in TOPICS.values() for w in ws] + FILLER


def _tokenizer(vocab_path):
    import transformers

    if "vocab" in inspect.signature(transformers.BertTokenizer.__init__).parameters:  # transformers 5
        return transformers.BertTokenizer(vocab=vocab_path)
    return transformers.BertTokenizerFast(vocab_file=vocab_path)


def tiny_checkpoint(path, *, hidden_size=32, num_layers=2, num_heads=2, seed=0):
    """Write a randomly initialised tiny BERT and its tokenizer to ``path``; return ``path``."""
    import torch
    import transformers

    os.makedirs(path, exist_ok=True)
    vocab_path = os.path.join(path, "vocab.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(VOCABULARY) + "\n")
    config = transformers.BertConfig(
        vocab_size=len(VOCABULARY), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=2 * hidden_size, max_position_embeddings=64,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.BertForSequenceClassification(config)
    from .transformer import _quiet

    with _quiet():
        model.save_pretrained(path)
        _tokenizer(vocab_path).save_pretrained(path)
    return path


def review_texts(n, seed=0, label="mood"):
    """Short generated reviews: a topic's words, mood words and filler, shuffled.

    Each sentence holds 1-3 words of one topic ("sport", "food", "tech"),
    2-3 words of one mood and at most one of the other. ``label`` picks what
    the targets are: ``"mood"`` ("pos"/"neg"), ``"topic"``, or ``"both"``
    ("food/pos", ...: six classes, a pretraining task that uses every word).
    """
    if label not in ("mood", "topic", "both"):
        raise ValueError(f"label must be 'mood', 'topic' or 'both'; got {label!r}.")
    rng = np.random.default_rng(seed)
    names = sorted(TOPICS)
    texts, labels = [], []
    for _ in range(n):
        topic, positive = names[rng.integers(len(names))], bool(rng.integers(2))
        major, minor = (POSITIVE, NEGATIVE) if positive else (NEGATIVE, POSITIVE)
        words = (list(rng.choice(TOPICS[topic], size=rng.integers(1, 4)))
                 + list(rng.choice(major, size=rng.integers(2, 4)))
                 + list(rng.choice(minor, size=rng.integers(0, 2)))
                 + list(rng.choice(FILLER, size=rng.integers(1, 4))))
        rng.shuffle(words)
        texts.append(" ".join(words))
        mood = "pos" if positive else "neg"
        labels.append({"mood": mood, "topic": topic, "both": f"{topic}/{mood}"}[label])
    return np.array(texts, dtype=object), np.array(labels)
