"""How cost grows, what parallel search gains, and peak memory.

Three measurements, each side by side in this one run:

* ``growth``: NNClassifier.fit and the hand-written loop (see
  ``bench_core.py``) at 10k, 100k and 1M rows; fit time per row relative to
  the smallest size shows whether cost grows linearly (1.00 = linear).
* ``search``: GridSearchCV over 36 fits (12 candidates x 3 folds) of a small
  MLP on sklearn's digits with ``n_jobs=1`` and ``n_jobs=2``; the speed-up
  is the ratio of the two wall times.
* ``memory``: peak resident memory of fitting 1 000 000 x 100 float32 rows,
  measured in a fresh subprocess, minus the memory before ``fit`` (imports
  and X already made), next to the size of X.

Run: ``python benchmarks/bench_scale.py [--only growth|search|memory] [--max-rows 1000000]``
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def growth(max_rows, features=50, epochs=1):
    sys.path.insert(0, HERE)
    import bench_core

    from skopt_nn import MLP, NNClassifier

    sizes = [s for s in (10_000, 100_000, 1_000_000) if s <= max_rows]
    rows = []
    rng = np.random.RandomState(0)
    for n in [2_000] + sizes:  # the first size only warms torch up
        X = rng.normal(size=(n, features)).astype(np.float32)
        y = (X[:, :4].sum(1) > 0).astype(np.int64) + (X[:, 4] > 0)
        bench_core.EPOCHS = epochs
        t0 = time.perf_counter()
        bench_core.hand_loop(X, y)
        hand = time.perf_counter() - t0
        t0 = time.perf_counter()
        NNClassifier(MLP((256, 256)), optimizer="sgd", lr=0.05, batch_size=128, max_epochs=epochs,
                     random_state=0).fit(X, y)
        ours = time.perf_counter() - t0
        if n in sizes:
            rows.append((n, hand, ours))
    base_hand, base_ours = rows[0][1] / rows[0][0], rows[0][2] / rows[0][0]
    print(f"\n[growth] MLP (256, 256), {features} features, {epochs} epoch(s); time per row relative to {sizes[0]} rows")
    print(f"{'rows':>10} {'hand loop':>10} {'NNClassifier':>13} {'ours / hand':>12}")
    for n, hand, ours in rows:
        print(f"{n:>10} {hand / n / base_hand:10.2f} {ours / n / base_ours:13.2f} {ours / hand:12.2f}")
    return rows


def search(n_jobs=2):
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV

    from skopt_nn import MLP, NNClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    grid = {"lr": [1e-3, 3e-3, 1e-2], "module__hidden_layer_sizes": [(32,), (64,)], "batch_size": [32, 64]}
    est = NNClassifier(MLP(), max_epochs=20, n_iter_no_change=21, random_state=0)
    times = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The first parallel run pays for starting the worker processes
        # (importing torch and skopt_nn, ~2-3 s each); joblib keeps them for
        # the next searches, which the second run measures.
        for label, jobs in (("serial", 1), ("cold", n_jobs), ("warm", n_jobs)):
            t0 = time.perf_counter()
            GridSearchCV(est, grid, cv=3, n_jobs=jobs, refit=False).fit(X, y)
            times[label] = time.perf_counter() - t0
    print(f"\n[search] GridSearchCV, 36 fits of a small MLP on digits, {os.cpu_count()} cores, "
          f"{times['serial'] / 36:.2f} s per fit")
    print(f"speed-up n_jobs={n_jobs} over n_jobs=1: {times['serial'] / times['warm']:.2f}x with the workers "
          f"started, {times['serial'] / times['cold']:.2f}x including their start")
    return times


_MEMORY_CHILD = r"""
import json, sys
import numpy as np
from skopt_nn import MLP, NNClassifier
n, d = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
X = rng.standard_normal((n, d), dtype=np.float32)
y = (X[:, 0] > 0).astype(np.int64)
def status_mb(field):
    # VmHWM (peak RSS) belongs to this process image; ru_maxrss would carry
    # the parent's peak over the fork.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
before = status_mb("VmRSS")
NNClassifier(MLP((64,)), optimizer="sgd", lr=0.05, batch_size=1024, max_epochs=1, random_state=0).fit(X, y)
peak = status_mb("VmHWM")
print(json.dumps({"before": before, "peak": peak, "x_mb": X.nbytes / 2**20}))
"""


def memory(rows=1_000_000, features=100):
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(rows), str(features)],
                         capture_output=True, text=True, check=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    extra = m["peak"] - m["before"]
    print(f"\n[memory] fit of {rows} x {features} float32 rows (X = {m['x_mb']:.0f} MB)")
    print(f"peak RSS during fit minus RSS before fit: {extra:.0f} MB (target <= 300 MB beyond X)")
    return m


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["growth", "search", "memory"])
    parser.add_argument("--max-rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if args.only in (None, "growth"):
        growth(args.max_rows)
    if args.only in (None, "search"):
        search()
    if args.only in (None, "memory"):
        memory()


if __name__ == "__main__":
    main()
