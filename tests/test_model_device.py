"""Device choice: CUDA when present, CPU otherwise, and a clear error for a missing GPU."""

import pytest
import torch

from napari_alseg.errors import AlsegError
from napari_alseg.model.device import configure_cpu_threads, pick_device


def test_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device(None).type == expected
    assert pick_device("auto").type == expected
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_user_error():
    with pytest.raises(AlsegError, match="CUDA is not available"):
        pick_device("cuda")


def test_unknown_device_is_a_user_error():
    with pytest.raises(AlsegError, match="device"):
        pick_device("toaster")


def test_cpu_threads_are_set(monkeypatch):
    previous = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        threads = configure_cpu_threads()
        assert threads >= 1 and torch.get_num_threads() == threads
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert configure_cpu_threads() == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
