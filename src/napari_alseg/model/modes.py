"""A network's train / eval modes, set for a block of code and restored after.

:func:`eval_mode` is what every prediction without dropout uses (inference, the click
simulator's own prediction, the VAE's gradient step, training's checks, scoring's features);
:func:`mc_dropout_mode` switches on only the dropout modules, for MC dropout (docs/METHODS.md §3.3).
Both restore each module's previous flag, so a net in training stays in training. Kept apart
from :mod:`.inference` so the modules below it (:mod:`.guidance`) can use them without
importing prediction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


@contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Every module in eval mode; each module's previous train/eval flag restored after."""
    with _modes_restored(net):
        net.eval()
        yield net


@contextmanager
def mc_dropout_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Only dropout modules in training mode (BatchNorm/InstanceNorm stay in eval); restored after."""
    with _modes_restored(net):
        net.eval()
        for module in net.modules():
            if isinstance(module, DROPOUT_TYPES):
                module.train()
        yield net


@contextmanager
def _modes_restored(net: nn.Module) -> Iterator[None]:
    previous = [(module, module.training) for module in net.modules()]
    try:
        yield
    finally:
        for module, training in previous:
            module.training = training
