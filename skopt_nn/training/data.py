"""Fast in-memory batching: batches are slices of tensors, never per-row calls.

skorch's default ``DataLoader`` path calls ``__getitem__`` once per row and
collates the rows back into a batch, which is most of its overhead over a
hand-written loop on small networks. Here the data set is a pair of tensors
and a batch is one ``index_select`` (shuffled) or one slice (in order).

Sparse ``X`` stays a scipy CSR matrix on the CPU (``SparseRows``); each batch
becomes a torch sparse COO tensor that a linear first layer multiplies
directly. Densifying each batch instead was measured slower: for 50 000
features a dense batch of 128 rows is 25 MB that the first layer multiplies
in full, forward and backward (see docs/estimators.md, "Sparse input").
"""

import warnings

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["TensorData", "BatchIterator", "SparseRows", "as_float_tensor", "as_text_column", "sparse_batch"]


def sparse_batch(csr):
    """A scipy CSR matrix in canonical form as a float32 torch sparse COO tensor.

    The indices of a canonical CSR matrix (sorted, no duplicates) are already
    in coalesced COO order, so the tensor is marked coalesced without a sort.
    """
    coo = csr.tocoo()
    indices = np.empty((2, coo.nnz), dtype=np.int64)
    indices[0] = coo.row
    indices[1] = coo.col
    return torch.sparse_coo_tensor(
        torch.from_numpy(indices),
        torch.from_numpy(np.asarray(coo.data, dtype=np.float32)),
        coo.shape,
        is_coalesced=True,
        check_invariants=False,
    )


class SparseRows:
    """Rows of a scipy sparse matrix, kept sparse on the CPU, given out as torch batches.

    It answers the few tensor operations the data path uses on ``X``
    (``len``, ``shape``, ``device``, a slice, ``index_select`` on rows, ``to``)
    with torch sparse COO batches, so the whole matrix is never densified.
    """

    def __init__(self, X):
        csr = sp.csr_matrix(X, dtype=np.float32)  # a copy only if not CSR float32 already
        if not csr.has_canonical_format:
            csr = csr.copy()
            csr.sum_duplicates()
        self.csr = csr

    def __len__(self):
        return self.csr.shape[0]

    @property
    def shape(self):
        return torch.Size(self.csr.shape)

    @property
    def device(self):
        return torch.device("cpu")

    def dim(self):
        return 2

    def __getitem__(self, index):
        if not isinstance(index, slice):
            raise TypeError("SparseRows are indexed by a slice or index_select(0, index).")
        return sparse_batch(self.csr[index])

    def index_select(self, dim, index):
        rows = index.cpu().numpy() if torch.is_tensor(index) else np.asarray(index)
        return sparse_batch(self.csr[rows])

    def to(self, device, non_blocking=False):
        # The rows stay on the CPU; the iterator moves each batch.
        return self


def as_float_tensor(X):
    """Return a float32 tensor sharing memory with ``X`` where possible.

    float32 C-contiguous arrays, read-only memmaps included, are wrapped
    without a copy; anything else is converted once. A scipy sparse matrix
    or array becomes ``SparseRows``: it stays sparse.
    """
    if sp.issparse(X):
        return SparseRows(X)
    arr = np.asarray(X)
    if arr.dtype != np.float32 or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not arr.flags.writeable:
        # torch warns about read-only arrays because it cannot mark the
        # tensor read-only; the data are only ever read here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(arr)
    return torch.from_numpy(arr)


def as_text_column(X, owner="estimator"):
    """Raw text as a one-column object array (a one-column ``DataFrame`` is kept).

    Takes a list, tuple, 1-D array or ``Series`` of strings, or a one-column
    2-D array or ``DataFrame``; sklearn's ``validate_data`` then checks it
    like any other ``X`` (rows, feature names) with ``n_features_in_ == 1``.
    Anything that is not text is refused here, with the type found.
    """
    if sp.issparse(X):
        raise TypeError(f"{owner} takes raw text as X, not a sparse matrix.")
    if hasattr(X, "columns") and hasattr(X, "iloc"):  # a DataFrame: keep its column name
        if X.shape[1] != 1:
            raise ValueError(f"{owner} takes one text column; got a DataFrame with {X.shape[1]} columns.")
        values = X.iloc[:, 0].to_numpy(dtype=object)
        column = X
    else:
        arr = np.asarray(X, dtype=object)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(
                f"{owner} takes raw text as X: a 1-D sequence of strings or one column; got an "
                f"array of shape {arr.shape}."
            )
        values = arr
        column = arr.reshape(-1, 1)
    bad = next((v for v in values if not isinstance(v, str)), None)
    if bad is not None:
        raise ValueError(f"{owner} takes raw text as X, one string per sample; found {type(bad).__name__}.")
    return column


def _take(t, index):
    if t is None:
        return None
    if isinstance(t, tuple):
        return tuple(_take(part, index) for part in t)
    if isinstance(index, slice):
        return t[index]
    return t.index_select(0, index)


def _pin(t):
    if t is None:
        return None
    if isinstance(t, tuple):
        return tuple(_pin(part) for part in t)
    return t.pin_memory()


def _to(t, device, non_blocking=False):
    if t is None:
        return None
    if isinstance(t, tuple):
        return tuple(_to(part, device, non_blocking) for part in t)
    return t.to(device, non_blocking=non_blocking)


class TensorData(torch.utils.data.Dataset):
    """Rows of ``X`` with their targets ``y``: a tensor, a tuple of tensors or None.

    ``rows`` (optional) selects rows of ``X`` and ``y`` without copying them:
    a training/validation split is two index vectors over the same data.
    """

    def __init__(self, X, y=None, rows=None):
        self.X = X
        self.y = y
        self.rows = rows

    def __len__(self):
        return len(self.X) if self.rows is None else len(self.rows)

    def __getitem__(self, index):
        # Used only by code that insists on per-row access; batches never go here.
        return self.take(torch.as_tensor([index]))

    def take(self, index):
        """``(X, y)`` of the rows at positions ``index`` (a slice or an index tensor)."""
        if self.rows is not None:
            index = self.rows[index]
        return _take(self.X, index), _take(self.y, index)

    def subset(self, index):
        """Rows selected by a slice or positions, as a ``TensorData`` sharing the data."""
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        index = torch.as_tensor(index, dtype=torch.long)
        rows = index if self.rows is None else self.rows[index]
        return TensorData(self.X, self.y, rows)

    def to(self, device, non_blocking=False):
        return TensorData(
            _to(self.X, device, non_blocking),
            _to(self.y, device, non_blocking),
            _to(self.rows, device, non_blocking),
        )


class BatchIterator:
    """Iterate over a ``TensorData`` in batches of tensor slices.

    Parameters
    ----------
    dataset : TensorData
    batch_size : int
    shuffle : bool, default=False
        Draw a new permutation every epoch from ``generator``.
    generator : torch.Generator, default=None
        Source of the permutations, seeded from the estimator's
        ``random_state`` so that fits are reproducible.
    device : str or torch.device, default=None
        Move each batch there (used when the data stay on the CPU while the
        model is on a GPU).
    """

    def __init__(self, dataset, batch_size, shuffle=False, generator=None, device=None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.device = device

    def __len__(self):
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        data, n, bs = self.dataset, len(self.dataset), self.batch_size
        on_cpu = data.X.device.type == "cpu"
        order = None
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(data.X.device)
        for start in range(0, n, bs):
            index = slice(start, start + bs) if order is None else order[start : start + bs]
            xb, yb = data.take(index)
            if self.device is not None and on_cpu:
                # Gathered rows are new memory: pin them so the copy to the
                # device overlaps with the work already queued there.
                xb, yb = _pin(xb), _pin(yb)
                xb, yb = _to(xb, self.device, True), _to(yb, self.device, True)
            yield xb, yb
