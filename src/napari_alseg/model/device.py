"""Choosing where the model runs: CUDA when present, else the CPU; one code path for both."""

from __future__ import annotations

import os

import torch

from ..errors import AlsegError


def pick_device(requested: str | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA if available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"``.

    Asking for CUDA where there is none is a user mistake, not a silent fallback: a
    round the user expects to take seconds on the GPU could take many minutes on CPU.
    On the CPU the torch thread count is set by :func:`configure_cpu_threads`.
    """
    choice = (requested or "auto").strip().lower()
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(choice)
    except RuntimeError as error:
        raise AlsegError(f"unknown device {requested!r}: use 'cpu', 'cuda' or 'cuda:N'") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AlsegError(
                f"device {requested!r} requested but CUDA is not available here: use 'cpu' or leave it unset"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise AlsegError(f"device {requested!r} requested but only {count} CUDA device(s) exist")
    elif device.type != "cpu":
        raise AlsegError(f"unsupported device {requested!r}: use 'cpu', 'cuda' or 'cuda:N'")
    else:
        configure_cpu_threads()
    return device


def configure_cpu_threads() -> int:
    """Set torch's intra-op threads to the physical cores we may use, minus one for the UI.

    Hyper-threads add little to convolutions but steal time from the napari event
    loop; with two cores or fewer every core is used, the UI copes with the rest.
    An explicit ``OMP_NUM_THREADS`` (shared servers, batch jobs, tests) wins.
    Returns the thread count in use.
    """
    requested = os.environ.get("OMP_NUM_THREADS", "").strip()
    if requested.isdigit() and int(requested) > 0:
        torch.set_num_threads(int(requested))
        return int(requested)
    threads = usable_physical_cores()
    if threads > 2:
        threads -= 1
    torch.set_num_threads(threads)
    return threads


def usable_physical_cores() -> int:
    """Physical cores, capped by the CPUs this process may run on (containers, taskset)."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or allowed
    except ImportError:
        physical = allowed
    return max(1, min(allowed, physical))


def cuda_rng_devices(device: torch.device) -> list[int]:
    """The CUDA device indices whose RNG ``torch.random.fork_rng`` must fork for ``device``."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]
