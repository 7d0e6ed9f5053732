"""Inputs sklearn users bring: sparse X and multilabel targets, next to MLPClassifier.

Three measurements, each side by side in this run:

* **sparse fit time**: ``NNClassifier`` and sklearn's ``MLPClassifier`` fit
  the same CSR matrix (``--rows`` x ``--features``, density ``--density``,
  a text-like bag of words), same network (one hidden layer of 100 ReLU
  units), Adam at 1e-3, batches of 200 rows, ``--epochs`` epochs each (no
  early stop); printed as the ratio of the fit times. Also timed: the same
  network fed each batch densified (a first module that calls
  ``to_dense()``), the alternative to the sparse first layer.
* **peak memory of a large sparse fit**: a 100 000 x 50 000 CSR matrix of
  density 2e-4 (8 MB as CSR, 20 GB as dense float32) fits one epoch in a
  fresh process; printed: the growth of the peak resident memory over the
  resident memory just before ``fit``, and that growth over the CSR size.
* **multilabel**: ``make_multilabel_classification(600, 20, n_classes=5)``,
  a stratification-free 2/3 - 1/3 split, ``StandardScaler`` then each
  classifier at its defaults; printed: the test subset accuracy of both.

Run: ``python benchmarks/bench_inputs.py [--quick]``
"""

import argparse
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.datasets import make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from skopt_nn import MLP, NNClassifier, TorchModule


def bag_of_words(rows, features, density, seed=0):
    """A CSR term-count matrix whose two classes differ in a few hundred words."""
    rng = np.random.default_rng(seed)
    nnz = int(rows * features * density)
    row = rng.integers(0, rows, nnz)
    y = rng.integers(0, 2, rows)
    # Half the words of class-1 rows come from the first 500 columns.
    topical = (y[row] == 1) & (rng.random(nnz) < 0.5)
    col = np.where(topical, rng.integers(0, 500, nnz), rng.integers(0, features, nnz))
    X = sp.csr_matrix((np.ones(nnz, dtype=np.float32), (row, col)), shape=(rows, features))
    X.sum_duplicates()
    return X, y


class DensifiedMLP(nn.Module):
    """The default MLP fed each batch densified: the alternative to a sparse first layer."""

    accepts_sparse = True

    def __init__(self, n_features_in, n_outputs):
        super().__init__()
        self.body = MLP().build(n_features_in, n_outputs)

    def forward(self, x):
        return self.body(x.to_dense() if x.is_sparse else x)


def _timed(make, X, y, repeats):
    with warnings.catch_warnings():  # imports and first-call set-up stay out of the timing
        warnings.simplefilter("ignore", ConvergenceWarning)
        make().set_params(**{"max_epochs" if hasattr(make(), "max_epochs") else "max_iter": 1}).fit(
            X[:400], y[:400])
    best = np.inf
    for _ in range(repeats):
        model = make()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        best = min(best, time.perf_counter() - start)
    return best, model


def sparse_fit_time(rows, features, density, epochs, repeats):
    X, y = bag_of_words(rows, features, density)
    common = dict(max_epochs=epochs, n_iter_no_change=None, batch_size=200, random_state=0, n_threads=1)
    ours, clf = _timed(lambda: NNClassifier(**common), X, y, repeats)
    dense_batches, _ = _timed(lambda: NNClassifier(TorchModule(DensifiedMLP), **common), X, y, repeats)
    mlp, ref = _timed(lambda: MLPClassifier(max_iter=epochs, n_iter_no_change=epochs + 1, tol=0.0,
                                            batch_size=200, random_state=0), X, y, repeats)
    print(f"[sparse] {rows:,} x {features:,} CSR, density {density:g}, {epochs} epochs, best of {repeats}")
    print(f"  NNClassifier fit / MLPClassifier fit: {ours / mlp:.2f}  "
          f"(train accuracy {clf.score(X, y):.3f} vs {ref.score(X, y):.3f})")
    print(f"  sparse first layer / batches densified: {ours / dense_batches:.2f}")
    return {"vs_mlp": ours / mlp, "vs_dense_batches": ours / dense_batches}


_LARGE_FIT = """
import numpy as np, scipy.sparse as sp
from skopt_nn import NNClassifier

def memory(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

rng = np.random.default_rng(0)
n, d = 100_000, 50_000
nnz = int(n * d * 2e-4)
X = sp.csr_matrix((rng.random(nnz, dtype=np.float32), (rng.integers(0, n, nnz), rng.integers(0, d, nnz))),
                  shape=(n, d))
y = np.arange(n) % 2
size = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
with open("/proc/self/clear_refs", "w") as f:  # restart the peak at the current size
    f.write("5")
before = memory("VmRSS:")
NNClassifier(max_epochs=1, batch_size={batch_size}, random_state=0).fit(X, y)
print(size, memory("VmHWM:") - before)
"""


def large_sparse_memory(batch_size):
    script = textwrap.dedent(_LARGE_FIT).replace("{batch_size}", str(batch_size))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    size, growth = (int(v) for v in out.stdout.split()[-2:])
    dense = 100_000 * 50_000 * 4
    print(f"[sparse memory] 100,000 x 50,000 CSR (density 2e-4), one epoch, batch {batch_size}: "
          f"CSR {size / 1e6:.1f} MB (dense {dense / 1e9:.0f} GB); peak growth {growth / 1e6:.0f} MB "
          f"= {growth / size:.1f} x the CSR size")
    return {"csr_mb": size / 1e6, "growth_mb": growth / 1e6, "growth_over_csr": growth / size}


def multilabel_accuracy():
    X, Y = make_multilabel_classification(600, 20, n_classes=5, random_state=0)
    X_train, X_test, Y_train, Y_test = train_test_split(X, Y, test_size=1 / 3, random_state=0)
    ours = make_pipeline(StandardScaler(), NNClassifier(random_state=0)).fit(X_train, Y_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = make_pipeline(StandardScaler(), MLPClassifier(random_state=0)).fit(X_train, Y_train)
    a, b = ours.score(X_test, Y_test), ref.score(X_test, Y_test)
    print(f"[multilabel] 600 x 20, 5 labels: test subset accuracy NNClassifier {a:.3f}, MLPClassifier {b:.3f}")
    return {"NNClassifier": a, "MLPClassifier": b}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # MLPClassifier's BLAS is pinned alike below
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        if args.quick:
            sparse = sparse_fit_time(5_000, 20_000, 1e-3, epochs=2, repeats=1)
        else:
            sparse = sparse_fit_time(20_000, 50_000, 1e-3, epochs=3, repeats=2)
        multilabel = multilabel_accuracy()
    memory = large_sparse_memory(1024 if args.quick else 128)
    return {"sparse": sparse, "memory": memory, "multilabel": multilabel}


if __name__ == "__main__":
    main()
