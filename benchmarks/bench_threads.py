"""Speed on a busy machine: the thread policy, small-fit overhead, cold searches.

Everything is measured side by side in this one run:

* ``busy``: a small fit (digits, ``StandardScaler``, ``MLP((128,))``, 30
  epochs) and a large one (50 000 x 50, MLP 256-256, SGD, batch 128, 5
  epochs) on a quiet machine and next to one CPU-bound competitor process
  that this script starts and stops itself. Each fit runs with its default
  thread setting and with fixed thread counts, for ``NNClassifier``, a plain
  PyTorch loop and sklearn's ``MLPClassifier`` (whose fixed counts are BLAS
  threads, set with threadpoolctl);
* ``overhead``: a small fit (4 000 x 40, MLP (100, 100), batch 100, 20
  epochs, one thread each) against the same work in a hand-written loop;
* ``search``: the 36-fit ``GridSearchCV`` (8 000 x 40, cv=3, 10 epochs) with
  ``n_jobs=1`` and ``n_jobs=2``, each in a fresh process (cold: the workers
  start and import inside the measured time);
* ``--crossover`` (not part of the default run): the multiply-adds per step
  at which two torch threads start to beat one, on a quiet machine; this is
  what ``skopt_nn.training._runtime.PARALLEL_GRAIN`` is set from.

Only ratios are printed. Run: ``python benchmarks/bench_threads.py
[--quick] [--only busy|overhead|search] [--crossover]``.
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))


# -- a CPU-bound neighbour ---------------------------------------------------
@contextlib.contextmanager
def competitor(n=1):
    """``n`` CPU-bound processes running for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5)  # let them get going
        yield procs
    finally:
        for proc in procs:  # stopped by their own handles (pid), nothing else
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def torch_threads(k):
    before = torch.get_num_threads()
    if k is not None:
        torch.set_num_threads(k)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- contenders ---------------------------------------------------------------
def torch_loop(X, y, hidden, *, epochs, batch, optimizer, lr, momentum=0.9, threads=None):
    """The loop a PyTorch user writes by hand; ``threads=None``: torch's default."""
    with torch_threads(threads):
        torch.manual_seed(0)
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        layers, width = [], X.shape[1]
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        net = nn.Sequential(*layers, nn.Linear(width, int(y.max()) + 1))
        if optimizer == "sgd":
            opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
        else:
            opt = torch.optim.Adam(net.parameters(), lr=lr)
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(epochs):
            perm = torch.randperm(len(Xt))
            for i in range(0, len(Xt), batch):
                idx = perm[i : i + batch]
                opt.zero_grad()
                loss = loss_fn(net(Xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                loss.item()  # what a loop that logs its loss pays
    return net


def ours(X, y, hidden, *, epochs, batch, optimizer, lr, momentum=0.9, threads=None):
    from skopt_nn import MLP, NNClassifier

    return NNClassifier(MLP(hidden), optimizer=optimizer, lr=lr, momentum=momentum, batch_size=batch,
                        max_epochs=epochs, n_iter_no_change=epochs + 1, n_threads=threads,
                        random_state=0).fit(X, y)


def sklearn_mlp(X, y, hidden, *, epochs, batch, optimizer, lr, momentum=0.9, threads=None):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    limit = threadpool_limits(threads) if threads is not None else contextlib.nullcontext()
    with limit, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier(hidden, solver=optimizer, learning_rate_init=lr, momentum=momentum,
                             nesterovs_momentum=False, batch_size=batch, max_iter=epochs,
                             n_iter_no_change=epochs + 1, tol=0, random_state=0).fit(X, y)


CONTENDERS = {"NNClassifier": ours, "PyTorch loop": torch_loop, "sklearn MLP": sklearn_mlp}


def small_data():
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y.astype(np.int64)


def large_data(rows=50_000):
    from sklearn.datasets import make_classification

    X, y = make_classification(rows, 50, n_informative=20, n_classes=4, random_state=0)
    return X.astype(np.float32), y.astype(np.int64)


def fixed_counts():
    cores = torch.get_num_threads()
    return sorted({1, min(2, cores), max(1, cores // 2), cores})


def busy(quick=False, repeats=3):
    """Default against fixed thread counts, quiet and next to one competitor."""
    Xs, ys = small_data()
    Xl, yl = large_data(10_000 if quick else 50_000)
    small = dict(hidden=(128,), epochs=30, batch=128, optimizer="adam", lr=1e-3)
    large = dict(hidden=(256, 256), epochs=5, batch=128, optimizer="sgd", lr=0.05)
    counts = fixed_counts()
    times = {}  # (contender, size, load, threads) -> median seconds

    def measure(load, n_repeats_large):
        for _ in range(repeats):  # the small fits, interleaved
            for name, fn in CONTENDERS.items():
                for k in (None, 1):
                    times.setdefault((name, "small", load, k), []).append(
                        timed(lambda: fn(Xs, ys, threads=k, **small)))
        for _ in range(n_repeats_large):
            for name, fn in CONTENDERS.items():
                for k in [None] + counts:
                    times.setdefault((name, "large", load, k), []).append(
                        timed(lambda: fn(Xl, yl, threads=k, **large)))

    for fn in CONTENDERS.values():  # warm every contender up once
        fn(Xs[:300], ys[:300], threads=None, **{**small, "epochs": 1})
    n_large = 1 if quick else repeats
    measure("quiet", n_large)
    with competitor(1):
        measure("busy", n_large)
    med = {k: statistics.median(v) for k, v in times.items()}

    out = {}
    print(f"\n[threads] {os.cpu_count()} cores, torch {torch.__version__}, fixed thread counts {counts}; "
          f"small: digits MLP (128,) 30 epochs, median of {repeats}; large: {len(Xl)} x 50, MLP 256-256, "
          f"5 epochs, median of {n_large}; 'busy': next to one CPU-bound process")
    head = (f"{'contender':<14} {'small busy: default/1 thr':>26} {'small: busy/quiet':>18} "
            f"{'large quiet: default/best':>26} {'large busy: default/best':>25}")
    print(head)
    for name in CONTENDERS:
        r = {
            "small_busy_vs_1": med[(name, "small", "busy", None)] / med[(name, "small", "busy", 1)],
            "small_busy_vs_quiet": med[(name, "small", "busy", None)] / med[(name, "small", "quiet", None)],
            "large_quiet_vs_best": med[(name, "large", "quiet", None)]
            / min(med[(name, "large", "quiet", k)] for k in counts),
            "large_busy_vs_best": med[(name, "large", "busy", None)]
            / min(med[(name, "large", "busy", k)] for k in counts),
        }
        out[name] = r
        print(f"{name:<14} {r['small_busy_vs_1']:26.2f} {r['small_busy_vs_quiet']:18.2f} "
              f"{r['large_quiet_vs_best']:26.2f} {r['large_busy_vs_best']:25.2f}")
    from skopt_nn import MLP, NNClassifier

    chosen = {}
    for load in ("quiet", "busy"):
        with competitor(1) if load == "busy" else contextlib.nullcontext():
            chosen[load] = [NNClassifier(MLP(h), max_epochs=1, batch_size=128, random_state=0).fit(X, y).n_threads_
                            for X, y, h in ((Xs, ys, (128,)), (Xl[:2000], yl[:2000], (256, 256)))]
    print(f"NNClassifier threads chosen (small, large): quiet {chosen['quiet']}, busy {chosen['busy']}")
    best = {load: min(counts, key=lambda k: med[("NNClassifier", "large", load, k)]) for load in ("quiet", "busy")}
    print(f"fastest fixed count for the large fit: quiet {best['quiet']}, busy {best['busy']}")
    out["chosen"], out["best"] = chosen, best
    return out


def overhead(repeats=7):
    """NNClassifier against a hand loop on small data, one thread each."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(4000, 40)).astype(np.float32)
    y = ((X[:, :4].sum(1) > 0).astype(np.int64) + (X[:, 4] > 0)).astype(np.int64)
    cfg = dict(hidden=(100, 100), epochs=20, batch=100, optimizer="adam", lr=1e-3, threads=1)
    ours(X, y, **cfg), torch_loop(X, y, **cfg)
    hand_t, ours_t = [], []
    for _ in range(repeats):
        hand_t.append(timed(lambda: torch_loop(X, y, **cfg)))
        ours_t.append(timed(lambda: ours(X, y, **cfg)))
    ratio = statistics.median(ours_t) / statistics.median(hand_t)
    print(f"\n[overhead] 4000 x 40, MLP (100, 100), Adam, batch 100, 20 epochs, one thread, median of {repeats}: "
          f"NNClassifier / hand loop {ratio:.2f} (fastest runs: {min(ours_t) / min(hand_t):.2f})")
    return ratio


_SEARCH_CHILD = r"""
import json, sys, time, warnings
import numpy as np
from sklearn.model_selection import GridSearchCV
from skopt_nn import MLP, NNClassifier
rng = np.random.RandomState(0)
X = rng.normal(size=(8000, 40)).astype(np.float32)
y = (X[:, :4].sum(1) > 0).astype(np.int64) + (X[:, 4] > 0)
grid = {"lr": [1e-3, 3e-3, 1e-2], "module__hidden_layer_sizes": [(32,), (64,)], "batch_size": [32, 64]}
est = NNClassifier(MLP(), max_epochs=10, n_iter_no_change=11, random_state=0)
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    s = GridSearchCV(est, grid, cv=3, n_jobs=int(sys.argv[1]), refit=False).fit(X, y)
print(json.dumps({"wall": time.perf_counter() - t0, "fit": float(s.cv_results_["mean_fit_time"].mean())}))
"""


def search():
    """The cold 36-fit search, n_jobs=1 and n_jobs=2, each in a fresh process."""
    res = {}
    for jobs in (1, 2):
        out = subprocess.run([sys.executable, "-c", _SEARCH_CHILD, str(jobs)], capture_output=True,
                             text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        res[jobs] = json.loads(out.stdout.strip().splitlines()[-1])
    speedup = res[1]["wall"] / res[2]["wall"]
    print(f"\n[cold search] GridSearchCV, 36 fits, 8000 x 40, cv=3, 10 epochs, fresh process each: "
          f"n_jobs=2 speed-up {speedup:.2f}x (mean fit {res[1]['fit']:.2f} s serial, {res[2]['fit']:.2f} s "
          f"in a worker)")
    return speedup


def crossover(batch=128, features=50, steps=80):
    """Multiply-adds per step at which 2 torch threads first beat 1 (quiet machine)."""
    print(f"\n[crossover] MLP (w, w), batch {batch}, {features} features; time per step, 1 / 2 threads")
    found, previous = None, None
    for width in (16, 32, 48, 64, 96, 128, 160, 192, 256, 384):
        macs = batch * (features * width + width * width + width * 4)
        ratios = []
        for _ in range(5):
            t = {}
            for k in (1, 2):
                with torch_threads(k):
                    torch.manual_seed(0)
                    net = nn.Sequential(nn.Linear(features, width), nn.ReLU(), nn.Linear(width, width),
                                        nn.ReLU(), nn.Linear(width, 4))
                    opt = torch.optim.Adam(net.parameters(), 1e-3)
                    X, y = torch.randn(batch, features), torch.randint(0, 4, (batch,))
                    for i in range(steps + 10):
                        if i == 10:
                            t0 = time.perf_counter()
                        opt.zero_grad()
                        loss = nn.functional.cross_entropy(net(X), y)
                        loss.backward()
                        opt.step()
                        loss.item()
                    t[k] = (time.perf_counter() - t0) / steps
            ratios.append(t[1] / t[2])
        speedup = statistics.median(ratios)
        if found is None and previous is not None and speedup > 1.0 and previous[1] > 1.0:
            found = previous[0]  # the first of two widths in a row where 2 threads win
        previous = (macs, speedup)
        print(f"width {width:4d}  {macs / 1e6:7.2f} M multiply-adds per step  2 threads: {speedup:.2f}x")
    print(f"crossover: about {found / 1e6:.1f} M multiply-adds per step" if found else "no crossover found")
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["busy", "overhead", "search"])
    parser.add_argument("--crossover", action="store_true")
    args = parser.parse_args(argv)
    if args.crossover:
        return {"crossover": crossover()}
    out = {}
    if args.only in (None, "busy"):
        out["busy"] = busy(quick=args.quick, repeats=1 if args.quick else 3)
    if args.only in (None, "overhead"):
        out["overhead"] = overhead(3 if args.quick else 7)
    if args.only in (None, "search"):
        out["search"] = search()
    return out


if __name__ == "__main__":
    main()
