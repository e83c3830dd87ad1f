"""Model checkpoints: weights + the spec to rebuild the net + the round's metrics.

Written atomically (temp file in the same folder, fsync, ``os.replace``) so a crash
mid-save leaves the previous checkpoint intact: the last good model is never lost.
Loaded with ``weights_only=True``: a checkpoint cannot run code; the spec and the
metrics travel as JSON text. A SHA-256 of the spec, the metrics and every tensor is stored
inside and verified on load, so flipped bytes are refused instead of predicting differently
(torch's zip container does not check its CRCs).

An *exported model* (:func:`save_model_file`) is the same container under its own format
name with one more hashed JSON field, ``about``: what the model was trained on (class and
channel names, the training plan), so another project can check it fits before using it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..errors import AlsegError, DamagedProjectError, StorageError
from .networks import ModelSpec, SegmentationNet

CHECKPOINT_FORMAT = "napari-alseg-checkpoint"
CHECKPOINT_VERSION = 1
MODEL_FILE_FORMAT = "napari-alseg-model"
_WRONG_FORMAT: dict[tuple[str, object], str] = {  # (format wanted, format found): what to say
    (MODEL_FILE_FORMAT, CHECKPOINT_FORMAT): "a project checkpoint, not an exported model; write one with "
                                            "`alseg model export PROJECT OUT`",
    (CHECKPOINT_FORMAT, MODEL_FILE_FORMAT): "an exported model, not a project checkpoint; start a project "
                                            "from it with `alseg create ... --init-model FILE`",
}
# what a project's unloadable checkpoint can be answered with: a retrain starts from the newest
# checkpoint that loads (Learner.start_net), so a new one is written without this file
CHECKPOINT_REMEDY = ("retrain to write a new one (it starts from the newest checkpoint that loads), "
                     "or restore the file from a backup")


class CheckpointError(AlsegError):
    """A checkpoint or model file that cannot be used; ``reason``: why, in a few words, without
    the file's name or the remedy (``corrupt or truncated``)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class DamagedCheckpointError(CheckpointError, DamagedProjectError):
    """A checkpoint or model file whose bytes are damaged or fail their checksum."""


def save_checkpoint(
    path: str | os.PathLike, net: SegmentationNet, spec: ModelSpec, metrics: dict[str, Any] | None = None
) -> Path:
    """Write ``net``'s weights, ``spec`` (as JSON) and JSON-like ``metrics`` to ``path``."""
    try:
        return _save(path, _payload(CHECKPOINT_FORMAT, net, spec, metrics))
    except (OSError, RuntimeError) as error:
        raise StorageError(f"{path}: cannot write the checkpoint ({_write_failure(error)}); "
                           "nothing was saved and the previous model is kept") from None


def save_model_file(path: str | os.PathLike, net: SegmentationNet, spec: ModelSpec,
                    metrics: dict[str, Any], about: dict[str, Any]) -> Path:
    """Write an exported model: a checkpoint plus ``about`` (JSON-like), all under the checksum."""
    payload = _payload(MODEL_FILE_FORMAT, net, spec, metrics)
    payload["about"] = json.dumps(about, default=_plain_number)
    try:
        return _save(path, payload)
    except (OSError, RuntimeError) as error:
        raise StorageError(f"{path}: cannot write the model file ({_write_failure(error)}); "
                           "nothing was written") from None


def _payload(file_format: str, net: SegmentationNet, spec: ModelSpec,
             metrics: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "format": file_format,
        "version": CHECKPOINT_VERSION,
        "spec": spec.to_json(),
        "metrics": json.dumps(metrics or {}, default=_plain_number),
        "state_dict": {name: tensor.detach().cpu() for name, tensor in net.state_dict().items()},
    }


def _save(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Checksum ``payload`` and write it atomically (temp file, fsync, rename)."""
    path = Path(path)
    payload["sha256"] = payload_sha256(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        torch.save(payload, temp)
    return path


def payload_sha256(payload: dict[str, Any]) -> str:
    """SHA-256 over format, version, spec, metrics, ``about`` (model files only) and every
    tensor (name, dtype, shape, bytes)."""
    digest = hashlib.sha256()
    for key in ("format", "version", "spec", "metrics"):
        digest.update(f"{key}={payload.get(key)!s}\n".encode())
    if "about" in payload:
        digest.update(f"about={payload['about']!s}\n".encode())
    for name in sorted(payload["state_dict"]):
        tensor = payload["state_dict"][name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _write_failure(error: BaseException) -> str:
    """A short reason: disk full, permission, or the first line of torch's message."""
    if isinstance(error, OSError):
        if error.errno == errno.ENOSPC:
            return "disk full"
        return error.strerror or str(error)
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "write" in text.lower():
        return "the file could not be written; is the disk full?"
    return text[:160]


def load_checkpoint(path: str | os.PathLike) -> tuple[SegmentationNet, ModelSpec, dict[str, Any]]:
    """Rebuild the net (on the CPU, in eval mode) from a checkpoint written by :func:`save_checkpoint`."""
    net, spec, metrics, _payload = _load(path, CHECKPOINT_FORMAT, "checkpoint", CHECKPOINT_REMEDY)
    return net, spec, metrics


def load_model_file(path: str | os.PathLike) -> tuple[SegmentationNet, ModelSpec, dict[str, Any], dict[str, Any]]:
    """``(net, spec, metrics, about)`` of a file written by :func:`save_model_file`, checksum verified.

    A project checkpoint given instead is refused with how to export one.
    """
    path = Path(path)
    net, spec, metrics, payload = _load(path, MODEL_FILE_FORMAT, "model file", "export it again from its project")
    if payload.get("sha256") is None:
        raise AlsegError(f"{path}: the model file carries no checksum; export it again from its project")
    try:
        about = json.loads(payload["about"])
        if not isinstance(about, dict):
            raise TypeError("not a JSON object")
    except (KeyError, TypeError, ValueError) as error:
        raise AlsegError(f"{path.name}: the model file does not say what it was trained on ({error})") from None
    return net, spec, metrics, about


def _load(path: str | os.PathLike, file_format: str, noun: str,
          remedy: str) -> tuple[SegmentationNet, ModelSpec, dict[str, Any], dict[str, Any]]:
    """Read, check (format, version, checksum) and rebuild; every failure is one line naming the
    file, a :class:`CheckpointError` carrying its reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {noun} not found", "the file is missing")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied; make the {noun} readable", "permission denied") from None
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to load the {noun}", "not enough memory") from None
    except Exception as error:  # noqa: BLE001 - damaged bytes surface as any of a dozen types
        # torch's own text advises weights_only=False, which would let a file run code: never say that
        kind = "holds objects other than tensors" if "weights_only" in str(error) else "corrupt or truncated"
        raise DamagedCheckpointError(f"{path}: not a readable napari-alseg {noun} ({kind}); {remedy}", kind) from None
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != file_format:
        reason = _WRONG_FORMAT.get((file_format, found), f"not a napari-alseg {noun}")
        raise CheckpointError(f"{path.name}: {reason}", reason.split(";")[0])
    if payload.get("version") != CHECKPOINT_VERSION:
        reason = f"{noun} version {payload.get('version')} is not supported"
        raise CheckpointError(f"{path.name}: {reason}", reason)
    stored = payload.get("sha256")
    if stored is not None:  # written before checksums: nothing to verify against
        try:
            actual = payload_sha256(payload)
        except (KeyError, TypeError, AttributeError, RuntimeError):
            actual = None
        if actual != stored:
            raise DamagedCheckpointError(f"{path}: {noun} contents differ from the checksum written "
                                         f"with it; the file is damaged or was altered. {remedy.capitalize()}",
                                         "its contents differ from the checksum written with it")
    try:
        spec = ModelSpec.from_json(payload["spec"])
        metrics = json.loads(payload["metrics"])
        net = spec.build()
        net.load_state_dict(payload["state_dict"])
    except AlsegError as error:
        raise CheckpointError(f"{path.name}: {error}", str(error)) from None
    except (RuntimeError, KeyError, TypeError, ValueError) as error:
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise CheckpointError(f"{path.name}: {noun} contents do not match its model spec: {reason}",
                              f"its contents do not match its model spec: {reason}") from None
    return net.eval(), spec, metrics, payload


def _plain_number(value: Any) -> Any:
    """numpy/torch scalars in metrics -> Python numbers, so metrics stay JSON."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"metric value {value!r} is not JSON-serialisable")
