"""
Fine-tune a pretrained transformer with LoRA, searched like any hyperparameter
==============================================================================

:class:`~skopt_nn.Transformer` turns a Hugging Face checkpoint into a network
spec: the estimator then takes raw text as ``X``, the checkpoint's tokenizer
reads it, and a classification head sized from the labels sits on the
pretrained body. :class:`~skopt_nn.LoRA` trains low-rank adapters instead of
the pretrained weights; ``freeze`` keeps the bottom layers as they are. All
of it is reached with the usual ``module__...`` names, so ``GridSearchCV``
tunes the LoRA rank, the learning rate and the number of frozen layers.

To run offline, this example builds its own tiny checkpoint: a two-layer
BERT with a vocabulary of about fifty words, first trained on one text task
("pretraining"), saved with ``save_pretrained``, then fine-tuned on another.
With a real model, ``Transformer("bert-base-uncased")`` (already in the local
Hugging Face cache) or a directory of your own takes its place.
"""

# %%
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import transformers
from sklearn.model_selection import GridSearchCV

from skopt_nn import LoRA, NNClassifier, Transformer

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing below downloads anything
transformers.utils.logging.disable_progress_bar()
rng = np.random.default_rng(0)
topics = {"sport": "ball goal team match coach race", "food": "bread soup cake salt lunch fruit",
          "tech": "code chip disk robot server pixel"}
moods = {"pos": "good great fine lovely superb happy", "neg": "bad awful poor dull sad grim"}
filler = "the a was is very quite and it this that day story".split()


def reviews(n, label):
    """Short reviews: words of one topic, of one mood and filler; labelled by topic, mood or both."""
    texts, labels = [], []
    for _ in range(n):
        topic, mood = rng.choice(sorted(topics)), rng.choice(sorted(moods))
        words = [*rng.choice(topics[topic].split(), 2), *rng.choice(moods[mood].split(), 2),
                 *rng.choice(filler, 3)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append({"topic": topic, "mood": mood, "both": f"{topic}/{mood}"}[label])
    return np.array(texts, dtype=object), np.array(labels)


# %%
# A tiny BERT and its tokenizer, written like any pretrained checkpoint.
workdir = tempfile.mkdtemp()
vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(
    {w for text in [*topics.values(), *moods.values()] for w in text.split()} | set(filler))
with open(os.path.join(workdir, "vocab.txt"), "w") as f:
    f.write("\n".join(vocab))
if "vocab" in transformers.BertTokenizer.__init__.__code__.co_varnames:  # transformers 5
    tokenizer = transformers.BertTokenizer(vocab=os.path.join(workdir, "vocab.txt"))
else:
    tokenizer = transformers.BertTokenizerFast(vocab_file=os.path.join(workdir, "vocab.txt"))
config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=128, max_position_embeddings=32)
random_bert = os.path.join(workdir, "random-bert")
transformers.BertForSequenceClassification(config).save_pretrained(random_bert)
tokenizer.save_pretrained(random_bert)

# %%
# "Pretraining": the tiny BERT learns to tell topic and mood together (six
# classes), and is saved as the checkpoint the rest of the example starts from.
pretrainer = NNClassifier(Transformer(random_bert, max_length=16), lr=1e-3, max_epochs=6,
                          batch_size=32, lr_schedule="constant", early_stopping=False, random_state=0)
pretrainer.fit(*reviews(600, "both"))
checkpoint = os.path.join(workdir, "pretrained-bert")
pretrainer.module_.model.save_pretrained(checkpoint)
pretrainer.module_.tokenizer.save_pretrained(checkpoint)

# %%
# The new task: the mood of a review. The search crosses the LoRA rank,
# the learning rate and the frozen layers; every fit reads the checkpoint.
# A checkpoint this small learns best at a constant rate on every row; a
# real one takes the fine-tuning recipe the estimator's "auto" defaults
# give a Transformer (warm-up and decay, the best epoch on a held-out split).
X, y = reviews(300, "mood")
X_test, y_test = reviews(500, "mood")
clf = NNClassifier(Transformer(checkpoint, max_length=16, lora=LoRA(r=4)), max_epochs=4,
                   batch_size=32, lr_schedule="constant", early_stopping=False, random_state=0)
search = GridSearchCV(clf, {"module__lora__r": [2, 8], "lr": [3e-3, 1e-2],
                            "module__freeze": [0, 1]}, cv=2)
search.fit(X, y)
best = search.best_estimator_
print("best:", search.best_params_)
print(f"trainable weights: {best.n_trainable_params_:,} of {best.n_params_:,} "
      f"({100 * best.n_trainable_params_ / best.n_params_:.1f} %)")
print(f"held-out accuracy: {best.score(X_test, y_test):.3f}")
print(best.predict(["what a lovely superb match", "the soup was awful and grim"]))

# %%
# After ``fit`` the adapters are merged into the weights: the fitted model is
# an ordinary ``transformers`` model, and it pickles or saves (``skopt_nn.save``)
# with its tokenizer, so it predicts after the checkpoint directory is gone.
print(type(best.module_.model).__name__)

# %%
# Mean cross-validated accuracy of each candidate.
results = search.cv_results_
labels = [f"r={p['module__lora__r']}, lr={p['lr']:g}, freeze={p['module__freeze']}"
          for p in results["params"]]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.barh(labels, results["mean_test_score"])
ax.set_xlabel("mean CV accuracy")
ax.set_xlim(0.4, 1.0)
fig.tight_layout()
plt.show()
