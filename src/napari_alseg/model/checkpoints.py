"""Model checkpoints: weights + the spec to rebuild the net + the round's metrics.

Written atomically (temp file in the same folder, fsync, ``os.replace``) so a crash
mid-save leaves the previous checkpoint intact: the last good model is never lost.
Loaded with ``weights_only=True``: a checkpoint cannot run code; the spec and the
metrics travel as JSON text.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..errors import AlsegError
from .networks import ModelSpec, SegmentationNet

CHECKPOINT_FORMAT = "napari-alseg-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(
    path: str | os.PathLike, net: SegmentationNet, spec: ModelSpec, metrics: dict[str, Any] | None = None
) -> Path:
    """Write ``net``'s weights, ``spec`` (as JSON) and JSON-like ``metrics`` to ``path``."""
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "spec": spec.to_json(),
        "metrics": json.dumps(metrics or {}, default=_plain_number),
        "state_dict": {name: tensor.detach().cpu() for name, tensor in net.state_dict().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        torch.save(payload, temp)
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[SegmentationNet, ModelSpec, dict[str, Any]]:
    """Rebuild the net (on the CPU, in eval mode) from a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise AlsegError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise AlsegError(f"{path.name}: not a readable checkpoint (corrupt or truncated): {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise AlsegError(f"{path.name}: not a napari-alseg checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise AlsegError(f"{path.name}: checkpoint version {payload.get('version')} is not supported")
    try:
        spec = ModelSpec.from_json(payload["spec"])
        metrics = json.loads(payload["metrics"])
        net = spec.build()
        net.load_state_dict(payload["state_dict"])
    except AlsegError as error:
        raise AlsegError(f"{path.name}: {error}") from error
    except (RuntimeError, KeyError, TypeError, ValueError) as error:
        raise AlsegError(f"{path.name}: checkpoint contents do not match its model spec: {error}") from error
    return net.eval(), spec, metrics


def _plain_number(value: Any) -> Any:
    """numpy/torch scalars in metrics -> Python numbers, so metrics stay JSON."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"metric value {value!r} is not JSON-serialisable")
