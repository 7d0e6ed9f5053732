"""Fit and predict time of NNClassifier against its anchors, side by side.

The same network (two hidden layers of 256 ReLU units), optimizer (SGD,
lr 0.05, momentum 0.9), batch size (128) and number of epochs (5) are
trained on the same synthetic data by:

* a hand-written PyTorch loop (the reference, ratio 1.00),
* plain skorch ``NeuralNetClassifier``,
* sklearn's ``MLPClassifier``,
* ``skopt_nn.NNClassifier``.

Each contender runs ``--repeats`` times in this one process, interleaved, and
the median is kept. Only ratios to the hand loop are printed: absolute
times depend on the machine.

Run: ``python benchmarks/bench_core.py [--rows 50000] [--features 50]``
"""

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from torch import nn

from skopt_nn import MLP, NNClassifier

HIDDEN, LR, MOMENTUM, BATCH, EPOCHS = (256, 256), 0.05, 0.9, 128, 5


def make_net(n_features, n_classes):
    return nn.Sequential(
        nn.Linear(n_features, HIDDEN[0]), nn.ReLU(),
        nn.Linear(HIDDEN[0], HIDDEN[1]), nn.ReLU(),
        nn.Linear(HIDDEN[1], n_classes),
    )


def hand_loop(X, y):
    """The loop a PyTorch user writes by hand for in-memory data."""
    torch.manual_seed(0)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    net = make_net(X.shape[1], int(y.max()) + 1)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = nn.CrossEntropyLoss()
    net.train()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad()
            loss = loss_fn(net(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return net


def hand_predict(net, X):
    net.eval()
    with torch.inference_mode():
        return net(torch.from_numpy(X)).argmax(1).numpy()


def skorch_fit(X, y):
    from skorch import NeuralNetClassifier

    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = make_net(X.shape[1], int(y.max()) + 1)

        def forward(self, x):
            return self.body(x)

    net = NeuralNetClassifier(
        Net, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.SGD, lr=LR,
        optimizer__momentum=MOMENTUM, batch_size=BATCH, max_epochs=EPOCHS,
        train_split=None, iterator_train__shuffle=True, verbose=0,
    )
    return net.fit(X, y)


def mlp_fit(X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier(
            HIDDEN, solver="sgd", learning_rate_init=LR, momentum=MOMENTUM,
            nesterovs_momentum=False, batch_size=BATCH, max_iter=EPOCHS,
            n_iter_no_change=EPOCHS + 1, tol=0, random_state=0,
        ).fit(X, y)


def ours_fit(X, y):
    return NNClassifier(
        MLP(HIDDEN), optimizer="sgd", lr=LR, momentum=MOMENTUM, batch_size=BATCH,
        max_epochs=EPOCHS, n_iter_no_change=EPOCHS + 1, random_state=0,
    ).fit(X, y)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-mlp", action="store_true", help="leave sklearn's MLP out (slow at large sizes)")
    args = parser.parse_args(argv)

    X, y = make_classification(
        args.rows, args.features, n_informative=20, n_classes=4, random_state=0
    )
    X = X.astype(np.float32)
    fits = {"hand loop": hand_loop, "skorch": skorch_fit, "NNClassifier": ours_fit}
    if not args.skip_mlp:
        fits["sklearn MLP"] = mlp_fit
    fit_t = {k: [] for k in fits}
    pred_t = {"hand loop": [], "NNClassifier": []}
    for _ in range(args.repeats):
        for name, fn in fits.items():
            t, model = timed(fn, X, y)
            fit_t[name].append(t)
            if name == "hand loop":
                pred_t[name].append(timed(hand_predict, model, X)[0])
            elif name == "NNClassifier":
                pred_t[name].append(timed(model.predict, X)[0])
    ref = statistics.median(fit_t["hand loop"])
    pref = statistics.median(pred_t["hand loop"])
    print(f"fit: {args.rows} x {args.features}, MLP {HIDDEN}, SGD lr {LR}, batch {BATCH}, {EPOCHS} epochs, "
          f"torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print(f"{'contender':<14} {'fit / hand loop':>16} {'predict / hand':>16}")
    for name in fits:
        ratio = statistics.median(fit_t[name]) / ref
        p = f"{statistics.median(pred_t[name]) / pref:16.2f}" if name in pred_t else f"{'-':>16}"
        print(f"{name:<14} {ratio:16.2f} {p}")
    return {
        "fit": {name: statistics.median(fit_t[name]) / ref for name in fits},
        "predict": statistics.median(pred_t["NNClassifier"]) / pref,
    }


if __name__ == "__main__":
    main()
