"""The cohort benchmark's names: workflows, how an item was finished, its files and their columns."""

TRACE, CORRECT, CLICK, REVIEW = "trace", "correct", "clicks", "review"
WORKFLOWS = (TRACE, CORRECT, CLICK, REVIEW)
TRACED, CORRECTED_HOW, CLICKED, ACCEPTED = "traced", "corrected", "clicked", "accepted"
NO_ENGINE = "-"  # the trace workflow's rows: no model, no engine
FINISH = 0  # the round number of the items finished with the last model
ITEMS_CSV = "cohort_items.csv"
ROUNDS_CSV = "cohort_rounds.csv"
SETTINGS_JSON = "cohort_settings.json"
ITEM_COLUMNS = ("seed", "engine", "workflow", "round", "case", "slice", "how", "seconds", "clicks",
                "outline_mm", "changed_mm", "seconds_changed", "prefill_dice", "final_dice", "accept_error")
ROUND_COLUMNS = ("seed", "engine", "round", "labelled_items", "dice_test", "wall_seconds")
TEXT_COLUMNS = ("case",)  # names from files: neutralised against formulas (text_cells); the rest are ours
