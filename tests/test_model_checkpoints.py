"""Checkpoints round-trip and fail with a clear message when missing or damaged."""

import numpy as np
import pytest
import torch

from napari_alseg.errors import AlsegError
from napari_alseg.model.checkpoints import load_checkpoint, save_checkpoint
from napari_alseg.model.networks import ModelSpec


def test_checkpoint_round_trip(tmp_path):
    spec = ModelSpec(3, 3, 4, (4, 8, 8, 8, 16, 4), dropout=0.3)
    torch.manual_seed(1)
    net = spec.build()
    metrics = {"round": 2, "dice": np.float32(0.75), "warnings": []}
    path = save_checkpoint(tmp_path / "models" / "round-002.pt", net, spec, metrics)
    loaded, loaded_spec, loaded_metrics = load_checkpoint(path)
    assert loaded_spec == spec and not loaded.training
    assert loaded_metrics == {"round": 2, "dice": pytest.approx(0.75), "warnings": []}
    for name, tensor in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    assert [p.name for p in path.parent.iterdir()] == ["round-002.pt"]


def test_missing_and_corrupt_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(AlsegError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(AlsegError, match="garbage.pt"):
        load_checkpoint(garbage)
    spec = ModelSpec(2, 1, 2, (4, 8, 8, 8, 16, 4))
    good = save_checkpoint(tmp_path / "good.pt", spec.build(), spec)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(AlsegError, match="truncated.pt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(AlsegError, match="not a napari-alseg checkpoint"):
        load_checkpoint(foreign)
