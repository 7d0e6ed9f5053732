"""Fitted teachers shared by the fits that would fit the very same one.

A search fits its student once per candidate and fold; with an unfitted
teacher, each of those fits would fit that teacher again on the fold's rows.
The teacher, though, learns only from what it is given: the rows, the
targets, the sample weights it receives, its own parameters and the random
state the student seeds it with. This module keys a fitted teacher, and its
scores on those rows, by a fingerprint of exactly those inputs, so a fit
whose teacher would see the same inputs takes the fitted one instead. A
teacher used as it is (never fitted here) keeps its scores the same way,
keyed by the rows and by its state (``TeacherCache.given``).

The fingerprint reads every byte of the rows (SHA-1, about 1.5 GB/s on one
core): rows changed in place, reordered or resampled give another key, so a
teacher is never shared across different data and cross-validation stays
leak-free. It lives in the process, so it serves sklearn's own search
classes, the joblib workers of any engine (each worker its own cache) and
a refit alike; it holds at most ``maxsize`` teachers and ``max_bytes`` of
them, least recently used out first.
"""

import hashlib
import io
import pickle
import threading
from collections import OrderedDict

import numpy as np

__all__ = ["TEACHERS", "TeacherCache", "fingerprint", "clear_teacher_cache"]


class _Counter(io.RawIOBase):
    """A write-only stream that counts bytes: a pickle's size without the pickle."""

    def __init__(self):
        self.n = 0

    def writable(self):
        return True

    def write(self, data):
        size = memoryview(data).nbytes
        self.n += size
        return size


def _size(obj):
    try:
        counter = _Counter()
        pickle.dump(obj, counter, protocol=pickle.HIGHEST_PROTOCOL)
        return counter.n
    except Exception:  # unpicklable: count it as nothing, the count bound still holds
        return 0


def _feed_array(h, a):
    a = np.asarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    if a.dtype.hasobject:  # labels as Python strings or objects
        h.update(pickle.dumps(a.tolist(), protocol=pickle.HIGHEST_PROTOCOL))
    else:
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))


def _feed(h, part):
    if part is None:
        h.update(b"<none>")
    elif hasattr(part, "tocsr") and hasattr(part, "nnz"):  # scipy sparse, without importing scipy
        csr = part.tocsr()
        h.update(f"sparse{csr.shape}".encode())
        for a in (csr.data, csr.indices, csr.indptr):
            _feed_array(h, a)
    elif isinstance(part, (np.ndarray, list, tuple)) or hasattr(part, "__array__"):
        _feed_array(h, part)
    else:
        raise TypeError(f"cannot fingerprint {type(part).__name__}")


def fingerprint(*arrays, estimator=None):
    """SHA-1 of the arrays' bytes, shapes and dtypes, and of an estimator's parameters.

    The estimator is fingerprinted by its pickle (its class and every
    parameter, nested estimators included), so it should be unfitted. Raises
    ``TypeError`` or a pickling error for what cannot be fingerprinted; the
    caller then does not share.

    Examples
    --------
    >>> import numpy as np
    >>> from skopt_nn.specs._teacher_cache import fingerprint
    >>> X = np.zeros((3, 2))
    >>> fingerprint(X) == fingerprint(X.copy())
    True
    >>> Y = X.copy(); Y[0, 0] = 1.0
    >>> fingerprint(X) == fingerprint(Y)
    False
    """
    h = hashlib.sha1(usedforsecurity=False)
    for part in arrays:
        _feed(h, part)
    if estimator is not None:
        _feed_object(h, estimator)
    return h.hexdigest()


class _HashWriter:
    """A file-like that feeds a hash: the pickle is never held in memory."""

    def __init__(self, h):
        self.write = h.update


def _feed_object(h, obj):
    try:
        pickler = pickle.Pickler(_HashWriter(h), protocol=pickle.HIGHEST_PROTOCOL)
        # Without the memo, equal values pickle to equal bytes whether or not
        # they are the same object.
        pickler.fast = True
        pickler.dump(obj)
    except (pickle.PicklingError, AttributeError, TypeError):
        # A class defined in a script or notebook reaches a worker process
        # by value (cloudpickle, as joblib sends it), and only cloudpickle
        # pickles it there; the dump above may have fed part of the object.
        # (joblib's process workers depend on cloudpickle; without it the
        # ImportError means no key, and the fit fits its own teacher.)
        import cloudpickle

        h.update(b"<cloudpickle>")
        h.update(cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


class _Entry:
    __slots__ = ("teacher", "outputs", "nbytes", "pins")

    def __init__(self, teacher, nbytes, pins=None):
        self.teacher = teacher
        self.outputs = {}  # task -> the teacher's raw scores on the rows of the key
        self.nbytes = nbytes
        # what a given teacher's key names by identity, kept alive so that no
        # other object can take one of those identities while the key is kept
        self.pins = pins


# How long a thread waits for another thread fitting the same teacher.
_WAIT = 2.0


class TeacherCache:
    """Least-recently-used fitted teachers by fingerprint, safe under threads.

    Two threads asking for the same key at once fit it once: the second
    waits for the first, for up to ``_WAIT`` seconds, then fits its own copy
    (a pool whose threads all wait for a teacher that needs one of them
    would otherwise never finish). A fit that raises caches nothing.

    Parameters
    ----------
    maxsize : int
        Most teachers kept.
    max_bytes : int
        Most bytes kept, teachers (measured by their pickle) and their outputs
        together; a teacher larger than this on its own is used but not kept.
    """

    def __init__(self, maxsize=12, max_bytes=256 * 2**20):
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._entries = OrderedDict()
        self._pending = {}
        self._lock = threading.Lock()
        self.fits = 0
        self.hits = 0

    def __len__(self):
        return len(self._entries)

    @property
    def nbytes(self):
        return sum(entry.nbytes for entry in self._entries.values())

    def clear(self):
        """Forget every teacher and reset the counts."""
        with self._lock:
            self._entries.clear()
            self.fits = self.hits = 0

    def get(self, key, fit):
        """The entry for ``key``, calling ``fit()`` for its teacher if there is none."""
        while True:
            with self._lock:
                entry = self._hit(key)
                if entry is not None:
                    return entry
                pending = self._pending.get(key)
                owner = pending is None
                if owner:
                    pending = self._pending[key] = threading.Event()
            if not owner:
                if pending.wait(_WAIT):
                    continue  # the owner's entry, or our turn if its fit failed
                # The owner is slow, or waits itself for the thread this one
                # holds (a teacher whose own fit runs tasks on the same pool,
                # as a forest inside a Dask worker does): fit a copy here.
                teacher = fit()
                entry = _Entry(teacher, _size(teacher))
                with self._lock:
                    self.fits += 1
                    if key not in self._entries:
                        self._store(key, entry)
                return entry
            try:
                teacher = fit()
                entry = _Entry(teacher, _size(teacher))
                with self._lock:
                    self.fits += 1
                    self._store(key, entry)
                return entry
            finally:
                with self._lock:
                    del self._pending[key]
                pending.set()

    def given(self, key, teacher, pins):
        """The entry of a teacher used as it is (never fitted here), made on first use.

        It holds the teacher's scores only: the teacher is the caller's, so
        its bytes are not counted. ``pins`` are kept with the entry.
        """
        with self._lock:
            entry = self._hit(key)
            if entry is None:
                entry = _Entry(teacher, 0, pins)
                self._store(key, entry)
            return entry

    def _hit(self, key):
        """The entry kept for ``key``, now the most recently used, or None; under the lock."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return entry

    def outputs(self, entry, task, score):
        """The entry's scores for ``task``, computed by ``score()`` the first time."""
        out = entry.outputs.get(task)
        if out is None:
            out = score()
            for a in out if isinstance(out, tuple) else (out,):
                if isinstance(a, np.ndarray):
                    a.flags.writeable = False  # shared by every fit that takes this teacher
            with self._lock:
                entry.outputs[task] = out
                entry.nbytes += sum(a.nbytes for a in (out if isinstance(out, tuple) else (out,))
                                    if isinstance(a, np.ndarray))
                self._evict()
        return out

    def _store(self, key, entry):
        if entry.nbytes > self.max_bytes:
            return
        self._entries[key] = entry
        self._evict()

    def _evict(self):
        while self._entries and (len(self._entries) > self.maxsize or self.nbytes > self.max_bytes):
            self._entries.popitem(last=False)


# The process's teachers: every fit in this process (every candidate and fold
# of any search engine, and the refit) looks here first.
TEACHERS = TeacherCache()


def clear_teacher_cache():
    """Release every fitted teacher kept for reuse in this process.

    Examples
    --------
    >>> from skopt_nn.specs.distillation import clear_teacher_cache
    >>> clear_teacher_cache()
    """
    TEACHERS.clear()
