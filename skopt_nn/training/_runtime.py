"""Where and how a fit runs: device, torch threads, torch's global RNG."""

import contextlib
import os
import threading

import torch
from sklearn.utils._param_validation import InvalidParameterError

__all__ = ["resolve_device", "seeded", "torch_threads", "auto_threads", "GLOBAL_RNG"]


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


@contextlib.contextmanager
def seeded(seed, device):
    """Seed torch inside the block without touching the caller's global RNG."""
    devices = []
    if device.startswith("cuda"):
        devices = [torch.device(device).index or 0]
    fork = torch.random.fork_rng(devices=devices)
    with GLOBAL_RNG:
        fork.__enter__()
        torch.manual_seed(seed)
    try:
        yield
    finally:
        with GLOBAL_RNG:
            fork.__exit__(None, None, None)


def auto_threads():
    """Torch threads for one fit, so parallel workers share the cores.

    joblib's loky workers, Dask's nannies and Ray tasks announce the threads
    each worker may use through ``OMP_NUM_THREADS``; a Dask worker without it
    gets the cores divided among its own threads. Elsewhere torch's current
    setting is kept.
    """
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return torch.get_num_threads()
    return max(1, (os.cpu_count() or 1) // max(1, worker.state.nthreads))


@contextlib.contextmanager
def torch_threads(n):
    """Use ``n`` torch threads inside the block, then restore the setting."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
