"""One round of pool scoring, computed once and shared by every strategy (docs/DESIGN.md §5.5).

:func:`score_pool` takes one :class:`ScoreRequest` and predicts each region once: a case
with the 3D net (granularity ``CASE``) or a slice with the 2D net (``SLICE``, ``ROI``). It
runs MC dropout once (the head-only sampler of :mod:`napari_alseg.model.inference`) and
derives every term the requested ``needs`` call for: uncertainty terms, the encoder features,
the quality rating, the VAE latents and gradient steps (docs/METHODS.md §3, §4.1, §6.1, §5),
and a bounding box per item to zoom to. Strategies (:mod:`napari_alseg.strategies`) only rank
the result, a :class:`~napari_alseg.pool.PoolScores`.

Partially labelled regions are scored on the partial-label posterior (docs/METHODS.md §3.8):
labelled voxels take their label, unlabelled ones are renormalised over the classes still
possible there (``C_n``), so delineated classes stop looking uncertain. Validation regions
are never candidates; with labels they yield honest (features, Dice) examples for the quality
predictor (:attr:`PoolScores.quality_examples`).

Cancel: the run's :class:`~napari_alseg.run_control.RunControl` is asked before each case or
slice and before each VAE stage; a stop raises :class:`~napari_alseg.errors.Cancelled`
(:data:`SCORING_CANCELLED`). No partial pool is returned: it would rank items by whichever
happened to be scored first.

One module per concern: :mod:`.request` (inputs, checks), :mod:`.items` (which items),
:mod:`.predict` (one region's prediction), :mod:`.terms` (the named numbers),
:mod:`.boxes` (zoom boxes), :mod:`.vae_latents` (docs/METHODS.md §5), :mod:`.bootstrap`
(ensembles), :mod:`.run` (the round), :mod:`.distributed` (per-case tasks on Dask, for
``alseg score``). torch is imported only inside the functions that
run a model, so importing this package stays cheap.
"""

from ..pool import PRIMARY_TERMS, PoolScores
from .bootstrap import train_bootstrap_nets
from .boxes import BBOX_MARGIN, BBOX_SLAB_VOXELS
from .request import DEFAULT_VAE_STEPS, SCORING_CANCELLED, ScoreRequest
from .run import fit_quality_model, rated_prediction, score_pool
from .terms import ROI_DILATION, region_terms, roi_terms

__all__ = [
    "BBOX_MARGIN", "BBOX_SLAB_VOXELS", "DEFAULT_VAE_STEPS", "PRIMARY_TERMS", "ROI_DILATION", "PoolScores",
    "SCORING_CANCELLED", "ScoreRequest", "fit_quality_model", "rated_prediction", "region_terms", "roi_terms",
    "score_pool", "train_bootstrap_nets",
]
