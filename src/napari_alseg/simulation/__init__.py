"""Simulation benchmark: every query engine against random, with an oracle that never tires.

A simulated annotator answers each query from the dataset's ground truth through the
same :class:`~napari_alseg.session.Session` verbs the widget uses (docs/DESIGN.md
§3.8): per round ``rescore`` (once a model exists) → ``suggest(k)`` → ``submit``
the true labels of each suggested item → ``retrain``. Every round appends one row to
``rounds.csv`` (flushed and fsynced, so a killed run loses at most the round in
progress) and a restarted run skips the rows already there, reopening the projects
under ``out_dir/projects/`` where they were left.

The test split is each project's own validation split: drawn from the seed alone, so
every strategy run with the same seed is measured on the same held-out items
(:func:`simulate` checks this). No strategy looks at it: dice-per-effort's ``D_c`` is
measured on the labels given (:meth:`Learner.label_metrics <napari_alseg.session.learner.Learner.label_metrics>`), and quality ratings learn
only from labelled validation items (the oracle labels none) and from corrections.
A ``full-data`` reference trains on every pool item with an active-learning run's schedule
(``rounds`` chunks of one round's budget), and on until its test Dice is flat (each chunk's
Dice in ``reference.csv``); the report calls a reference that did not converge, or that
scores below an active-learning round of its seed, a defect.
:func:`write_report` turns the CSV into ``dice_vs_effort.png`` and the papers' table
(docs/METHODS.md §10.5): boundary effort to reach 90 / 95 % of the full-data Dice.

One module per concern: :mod:`.loop` (the run loop), :mod:`.oracle` (the simulated
annotator), :mod:`.measure` (one round's row), :mod:`.files` (names, ``rounds.csv``,
settings) and :mod:`.report` (curves, tables, plots).
"""

from .files import (ABSOLUTE_TARGETS, ANNOTATOR, BASE_COLUMNS, CONVERGENCE_TOLERANCE, FULL_DATA, PLOT_PNG,
                    REFERENCE_COLUMNS, REFERENCE_CSV, RELATIVE_TARGETS, ROUNDS_CSV, SECONDS_PER_PX, SETTINGS_JSON, TABLE_CSV, TABLE_MD, TAIL_COLUMNS, TEST_FRACTION, Progress)
from .loop import simulate
from .report import (CURVE_COLUMNS, EQUAL_EFFORT_PCT, TABLE_COLUMNS, Curve, Reached, baseline_strategy,
                     dice_at_effort, effort_table, effort_to_reach, full_data_dice, mean_curves, plot_curves,
                     read_rounds, reference_defects, write_report)

__all__ = [
    "ABSOLUTE_TARGETS", "ANNOTATOR", "BASE_COLUMNS", "CONVERGENCE_TOLERANCE", "CURVE_COLUMNS", "EQUAL_EFFORT_PCT",
    "FULL_DATA", "PLOT_PNG", "REFERENCE_COLUMNS", "REFERENCE_CSV", "RELATIVE_TARGETS", "ROUNDS_CSV", "SECONDS_PER_PX",
    "SETTINGS_JSON", "TABLE_COLUMNS", "TABLE_CSV", "TABLE_MD", "TAIL_COLUMNS", "TEST_FRACTION", "Curve", "Progress",
    "Reached", "baseline_strategy", "dice_at_effort", "effort_table", "effort_to_reach", "full_data_dice",
    "mean_curves", "plot_curves", "read_rounds", "reference_defects", "simulate", "write_report",
]
