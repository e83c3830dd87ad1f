"""One round of pool scoring, computed once and shared by every strategy (DESIGN).

:func:`score_pool` takes one :class:`ScoreRequest` and predicts each region once: a case
with the 3D net (granularity ``CASE``) or a slice with the 2D net (``SLICE``, ``ROI``). It
runs MC dropout once (the head-only sampler of :mod:`napari_alseg.model.inference`) and
derives every term the requested ``needs`` call for (METHODS B, D, E), the encoder
features (B), the quality rating (A), the VAE latents and gradient steps (C), and a
bounding box per item to zoom to. Strategies (:mod:`napari_alseg.strategies`) only rank
the result, a :class:`~napari_alseg.pool.PoolScores`.

Partially labelled regions are scored on METHODS E's prediction: labelled voxels take
their label, unlabelled ones are renormalised over the classes still possible there
(``C_n``), so delineated classes stop looking uncertain. Validation regions are never
candidates; with labels they yield honest (features, Dice) examples for the quality
predictor (:attr:`PoolScores.quality_examples`).

Cancel: ``should_stop()`` is checked before each case or slice and before each VAE
stage; when it answers True, :class:`ScoringCancelled` is raised. No partial pool is
returned: it would rank items by whichever happened to be scored first.

One module per concern: :mod:`.request` (inputs, checks), :mod:`.items` (which items),
:mod:`.predict` (one region's prediction), :mod:`.terms` (the named numbers),
:mod:`.boxes` (zoom boxes), :mod:`.vae_latents` (METHODS C), :mod:`.bootstrap`
(ensembles), :mod:`.run` (the round), :mod:`.distributed` (per-case tasks on Dask, for
``alseg score``). torch is imported only inside the functions that
run a model, so importing this package stays cheap.
"""

from ..pool import PRIMARY_TERMS, PoolScores
from .bootstrap import train_bootstrap_nets
from .boxes import BBOX_MARGIN, BBOX_SLAB_VOXELS
from .request import DEFAULT_VAE_STEPS, ScoreRequest, ScoringCancelled
from .run import fit_quality_model, rated_prediction, score_pool
from .terms import ROI_DILATION, region_terms, roi_terms

__all__ = [
    "BBOX_MARGIN", "BBOX_SLAB_VOXELS", "DEFAULT_VAE_STEPS", "PRIMARY_TERMS", "ROI_DILATION", "PoolScores",
    "ScoreRequest", "ScoringCancelled", "fit_quality_model", "rated_prediction", "region_terms", "roi_terms",
    "score_pool", "train_bootstrap_nets",
]
