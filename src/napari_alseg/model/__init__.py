"""Segmentation model and fine-tuning engine (pure core; imports torch and MONAI).

Import from here rather than from the modules: the other core modules must not
import this package at module level, so ``alseg --help`` stays fast.
"""

from .checkpoints import load_checkpoint, load_model_file, save_checkpoint, save_model_file
from .device import pick_device
from .inference import McResult, mc_dropout, mc_dropout_full_passes, predict_proba
from .modes import eval_mode, mc_dropout_mode
from .losses import batch_dice_ce_loss, partial_label_ce, renormalise_prediction
from .networks import ModelSpec, SegmentationNet, with_guidance
from .config import TrainConfig
from .training import TrainingAborted, TrainingCancelled, TrainingItem, TrainProgress, TrainResult, fine_tune

__all__ = [
    "batch_dice_ce_loss",
    "eval_mode",
    "McResult",
    "ModelSpec",
    "SegmentationNet",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "TrainingAborted",
    "TrainingCancelled",
    "TrainingItem",
    "fine_tune",
    "load_checkpoint",
    "load_model_file",
    "mc_dropout",
    "mc_dropout_full_passes",
    "mc_dropout_mode",
    "partial_label_ce",
    "pick_device",
    "predict_proba",
    "renormalise_prediction",
    "save_checkpoint",
    "save_model_file",
    "with_guidance",
]
