"""Where and how a fit runs: device, torch threads, torch's global RNG."""

import contextlib
import math
import os
import sys
import threading
import time
import weakref

import torch
from torch import nn
from sklearn.utils._param_validation import InvalidParameterError

__all__ = [
    "resolve_device", "seeded", "manual_seed", "torch_threads", "auto_threads", "threads_for", "row_cost", "predict_rows",
    "free_cores", "worker_share", "PARALLEL_GRAIN", "GLOBAL_RNG",
]


def resolve_device(device):
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidParameterError(
            f"The 'device' parameter must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {device!r} instead."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available on this machine.")
    return str(dev)


# torch has one global generator per process. Fits running at once in
# threads of one process (joblib's threading backend, Dask workers) take turns
# on it: seeding, weight initialisation and restoring each hold this lock.
GLOBAL_RNG = threading.RLock()


_CPU_LOW_PRECISION = {}


def cpu_low_precision(precision):
    """Whether this CPU has instructions for ``precision`` (None when it cannot tell).

    Read once from /proc/cpuinfo (Linux): bfloat16 needs AVX512-BF16 or AMX,
    float16 AVX512-FP16 or AMX-FP16. Without them autocast emulates the type
    and a fit is slower than in float32.
    """
    if precision not in _CPU_LOW_PRECISION:
        try:
            with open("/proc/cpuinfo") as f:
                flags = set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), ()))
        except OSError:
            flags = None
        wanted = {"bfloat16": {"avx512_bf16", "amx_bf16"}, "float16": {"avx512_fp16", "amx_fp16"}}[precision]
        _CPU_LOW_PRECISION[precision] = None if not flags else bool(flags & wanted)
    return _CPU_LOW_PRECISION[precision]


def manual_seed(seed, device):
    """``torch.manual_seed`` for a fit on ``device``.

    On the CPU only the CPU generator is seeded: ``torch.manual_seed`` also
    queues a lazy seeding of every accelerator back end (recording a stack
    trace for each, about a millisecond per call) and would reseed a CUDA
    generator that ``seeded`` does not restore. The CPU stream is the same.
    """
    if device == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


@contextlib.contextmanager
def seeded(seed, device):
    """Seed torch inside the block without touching the caller's global RNG."""
    devices = []
    if device.startswith("cuda"):
        devices = [torch.device(device).index or 0]
    fork = torch.random.fork_rng(devices=devices)
    with GLOBAL_RNG:
        fork.__enter__()
        manual_seed(seed, device)
    try:
        yield
    finally:
        with GLOBAL_RNG:
            fork.__exit__(None, None, None)


# -- thread policy for ``n_threads=None`` -----------------------------------
#
# A torch op split over k intra-op threads ends when its slowest thread ends.
# When a core is taken by another process, the thread that lands there waits
# for its time slice and every op waits with it, so threads pay only for
# large ops on cores nobody else wants. The policy therefore gives a fit one
# thread per PARALLEL_GRAIN multiply-adds of one step's batch, and never more
# threads than cores that are free (or than a parallel worker's share).

# Multiply-adds per training step (batch rows x multiply-adds of one row's
# forward pass) each thread needs before a further thread pays. Measured with
# benchmarks/bench_threads.py --crossover on a quiet 2-core machine: a second
# thread starts to beat one at about 2 x PARALLEL_GRAIN (see
# docs/performance.md, "Threads").
PARALLEL_GRAIN = 1_500_000


def threads_for(work, free_cores, share=None):
    """Torch threads for ``work`` multiply-adds per step: a pure decision.

    Parameters
    ----------
    work : float
        Multiply-adds of one step (rows per step x forward multiply-adds per row).
    free_cores : int
        Cores not taken by other running processes (at least 1 is assumed).
    share : int or None
        The threads a parallel worker may use (joblib, Dask, Ray); when
        given, it replaces ``free_cores``: the workers already divide the
        machine between them.

    Returns
    -------
    n_threads : int
        ``min(cores, work // PARALLEL_GRAIN)``, at least 1.
    """
    cores = share if share is not None else free_cores
    by_work = int(work // PARALLEL_GRAIN)
    return max(1, min(int(cores), by_work))


def worker_share():
    """Threads each parallel worker may use, or None outside such a worker.

    joblib's loky workers, Dask's nannies and Ray tasks announce the threads
    each worker may use through ``OMP_NUM_THREADS``; a Dask worker without it
    gets the cores divided among its own threads.
    """
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if "distributed" not in sys.modules:  # no Dask worker without it
        return None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    return max(1, (os.cpu_count() or 1) // max(1, worker.state.nthreads))


def usable_cores():
    """Cores this process may run on: affinity, cgroup quota, torch's setting."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:  # cgroup v2 quota (containers, CI runners)
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    # torch's own setting: its default is the physical cores, and a user's
    # torch.set_num_threads(k) is a ceiling too.
    return max(1, min(cores, torch.get_num_threads()))


def _runnable_now():
    """Runnable tasks on the machine right now (Linux), or None."""
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def _own_running_threads():
    """Threads of this process that are running or runnable (Linux)."""
    n = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    # the state follows the parenthesised command name
                    n += f.read().rpartition(")")[2].split()[0] == "R"
            except OSError:
                continue
    except OSError:
        return 1
    return max(1, n)


def busy_cores(samples=3, pause=0.0005):
    """Cores other processes keep busy, from the run queue (cheap, instant).

    The fewest runnable tasks among a few reads of ``/proc/loadavg``, a
    fraction of a millisecond apart, so that short-lived tasks do not count
    and a CPU-bound neighbour, always runnable, does; this process's own
    runnable threads (torch's pool spinning after its last op) are not
    counted. Without ``/proc`` the one-minute load average is used.
    """
    counts = []
    for i in range(samples):
        if i:
            time.sleep(pause)
        n = _runnable_now()
        if n is None:
            try:
                return max(0, int(round(os.getloadavg()[0])))
            except (AttributeError, OSError):
                return 0
        counts.append(n)
        if n <= 1:  # only this thread: nothing to subtract
            return 0
    return max(0, min(counts) - _own_running_threads())


def free_cores():
    """Usable cores minus those other processes keep busy, at least 1."""
    cores = usable_cores()
    if cores == 1:
        return 1
    return max(1, cores - busy_cores())


# How long auto_threads keeps a reading of the free cores: taking one costs
# about a millisecond (three reads of the run queue half a millisecond
# apart), which is half of predicting 600 rows of a small network, and a
# search asks again for every fold's scoring.
FREE_CORES_TTL = 1.0
_reading = (-math.inf, 1)  # (time.monotonic() when read, free cores)


def _recent_free_cores():
    """``free_cores()``, read again only when the last reading is ``FREE_CORES_TTL`` seconds old."""
    global _reading
    at, cores = _reading
    now = time.monotonic()
    if now - at >= FREE_CORES_TTL:
        cores = free_cores()
        _reading = (now, cores)  # one assignment: a thread sees the old reading or the new one
    return cores


# Forward multiply-adds of one row, per module (weakly held: a module that
# goes away takes its entry with it).
_ROW_COST = weakref.WeakKeyDictionary()
_COUNTED = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)


def _counted(layer):
    """Layers whose multiply-adds ``row_cost`` counts: linear and convolution, int8 too."""
    if isinstance(layer, _COUNTED):
        return True
    kind = type(layer)
    return kind.__module__.startswith("torch.ao.nn.quantized") and kind.__name__ in (
        "Linear", "Conv1d", "Conv2d", "Conv3d", "LinearReLU", "ConvReLU2d")


def row_cost(module, n_features, device="cpu"):
    """Multiply-adds of one row's forward pass through ``module``.

    Linear and convolution layers count their true multiply-adds (a
    convolution's weights once per output position), read from one forward
    pass of a single zero row with hooks; other layers with parameters count
    one per parameter. Any failure falls back to the parameter count.
    """
    estimate = getattr(module, "multiply_adds_per_row", None)
    if estimate is not None:  # a network whose rows are not features (token ids) says it
        return estimate()
    return _profile(module, n_features, device)[0]


def predict_rows(module, n_features, device="cpu"):
    """Rows per batch for inference: the widest activation of a batch in about 2 MiB.

    Batches whose activations spill out of the core's cache are slower per
    row, in float32 and int8 alike: on a 2-core EPYC, MLP((512, 512))
    predicted 100 000 rows about 10 % faster in 1024-row batches than in
    4096-row ones, and a CNN on 8x8 images 1.5x faster in 256-row ones.
    Small networks keep 4096 rows, where per-batch overhead would dominate.
    """
    if getattr(module, "multiply_adds_per_row", None) is not None:
        return 4096
    widest = _profile(module, n_features, device)[1]
    return int(min(4096, max(256, _PREDICT_ELEMENTS // max(1, widest))))


_PREDICT_ELEMENTS = 2**19  # float32 elements of the widest activation of a batch: 2 MiB


def _profile(module, n_features, device):
    """``(multiply-adds, widest activation)`` of one row, from one hooked forward pass (cached)."""
    key = (n_features, str(device))
    cached = _ROW_COST.get(module)
    if cached is not None and cached[0] == key:
        return cached[1]
    total = [0]
    widest = [n_features]
    counted = set()

    def hook(layer, inputs, output):
        counted.add(id(layer))
        # int8 layers keep their weight behind a method
        weight = layer.weight() if callable(layer.weight) else layer.weight
        if isinstance(output, torch.Tensor):
            widest[0] = max(widest[0], output[0].numel())
        if hasattr(layer, "out_channels"):  # a convolution
            positions = output[0].numel() // layer.out_channels  # output[0]: the one row
            total[0] += weight.numel() * max(1, positions)
        else:
            total[0] += weight.numel()

    handles = [m.register_forward_hook(hook) for m in module.modules() if _counted(m)]
    was_training = module.training
    try:
        module.eval()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            module(torch.zeros(1, n_features, device=device))
        for m in module.modules():
            if id(m) not in counted and not _counted(m):
                total[0] += sum(p.numel() for p in m.parameters(recurse=False))
        profile = (max(1, total[0]), widest[0])
    except Exception:  # a module that cannot run on one zero row
        profile = (max(1, sum(p.numel() for p in module.parameters())), n_features)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    _ROW_COST[module] = (key, profile)
    return profile


def auto_threads(work=None):
    """Torch threads for ``n_threads=None``.

    Inside a parallel worker: its share, fewer for small ``work``. Elsewhere:
    one thread per ``PARALLEL_GRAIN`` of ``work``, at most the cores that
    are free now. ``work=None`` (unknown) asks for all of them.
    """
    share = worker_share()
    if work is None:
        work = math.inf
    if share is None and work < 2 * PARALLEL_GRAIN:
        return 1  # one thread whatever the load: no need to look
    return threads_for(work, _recent_free_cores() if share is None else 1, share)


class _Threads:
    """What ``torch_threads`` yields: the count in force, changeable in the block."""

    def __init__(self, n):
        self.n = n

    def set(self, n):
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        self.n = n
        return n


@contextlib.contextmanager
def torch_threads(n=None):
    """Use ``n`` torch threads inside the block, then restore the setting.

    ``n=None`` keeps the current count until the block calls ``.set(k)`` on
    what it is given.
    """
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield _Threads(before if n is None else n)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
