"""Predict time of dense, masked and physically shrunk networks, side by side.

One network (sklearn's digits, standardised; two hidden layers of 256 ReLU
units by default) is trained three ways with the same seed and epochs:

* dense (the reference, ratio 1.00),
* ``global_l1`` pruned to 90% on the gradual schedule: after ``fit`` the
  zeros are permanent but the tensors keep their dense shapes,
* ``ln_structured`` at 50%: pruned neurons are removed, the layers shrink.

A fourth contender is the 90%-sparse network with its
``torch.nn.utils.prune`` masks still installed, as it runs during training
(every forward multiplies each weight by its mask first).

``predict`` runs on the digits rows repeated to ``--rows`` rows, ``--repeats``
times per contender, interleaved in this one process; the median is kept and
only ratios to the dense network are printed, with parameter counts, pickle
sizes and test accuracy.

Run: ``python benchmarks/bench_pruning.py [--rows 200000] [--width 256] [--threads 1]``
"""

import argparse
import copy
import pickle
import statistics
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn.utils import prune

from skopt_nn import MLP, NNClassifier, Pruning


def with_live_masks(clf):
    """A copy whose pruned layers carry their masks as training does."""
    masked = copy.deepcopy(clf)
    for layer in masked.module_.modules():
        if isinstance(layer, nn.Linear) and bool((layer.weight == 0).any()):
            prune.custom_from_mask(layer, "weight", layer.weight.detach() != 0)
    return masked


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps the ratios steady)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

    def fit(pruning):
        return NNClassifier(
            MLP((args.width, args.width)), lr=1e-3, max_epochs=args.epochs, random_state=0, pruning=pruning
        ).fit(X_train, y_train)

    models = {
        "dense": fit(None),
        "global_l1 90%, zeros": fit(Pruning("global_l1", amount=0.9, schedule="gradual")),
        "ln_structured 50%, shrunk": fit(Pruning("ln_structured", amount=0.5, schedule="gradual")),
    }
    models["global_l1 90%, live masks"] = with_live_masks(models["global_l1 90%, zeros"])

    X_big = np.resize(X_test, (args.rows, X_test.shape[1])).astype(np.float32)
    times = {name: [] for name in models}
    for model in models.values():  # warm-up
        model.predict(X_big[:1000])
    for _ in range(args.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.predict(X_big)
            times[name].append(time.perf_counter() - start)

    ref = statistics.median(times["dense"])
    ref_pickle = len(pickle.dumps(models["dense"]))
    print(
        f"predict on {args.rows} rows, MLP ({args.width}, {args.width}) on digits, "
        f"{args.epochs} epochs, {args.threads} torch thread(s), median of {args.repeats}"
    )
    print(f"{'network':28s} {'predict time':>12s} {'params':>8s} {'pickle':>8s} {'sparsity':>9s} {'accuracy':>9s}")
    for name, model in models.items():
        sparsity = getattr(model, "sparsity_", 0.0)
        print(
            f"{name:28s} {statistics.median(times[name]) / ref:11.2f}x "
            f"{model.n_params_ / models['dense'].n_params_:7.2f}x "
            f"{len(pickle.dumps(model)) / ref_pickle:7.2f}x "
            f"{sparsity:9.3f} {model.score(X_test, y_test):9.4f}"
        )
    print("(ratios to the dense network; masks and zeros do not skip any multiplication)")
    return {name: statistics.median(times[name]) / ref for name in models}


if __name__ == "__main__":
    main()
