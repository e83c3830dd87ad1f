"""`alseg suggest` ranks the stored scores while the model and labels are those they came
from, and says when and why it scored the pool again (issue 22 item 11)."""

import pytest

import synthetic_cases
from napari_alseg.cli import main
from napari_alseg.session import Session
from napari_alseg.session.stored_scores import SCORING_STATE_SETTING, stale_reason
from napari_alseg.store import Project


@pytest.fixture
def trained_project(tmp_path):
    source = synthetic_cases.blob_source(tmp_path / "source", granularity="case", n_cases=4, shape=(6, 24, 24))
    Project.create(tmp_path / "project", source, annotator="dr").close()
    with Session.open(tmp_path / "project", annotator="dr", train_config=synthetic_cases.tiny_config()) as session:
        session.use_strategy("mc-dropout-top")
        held_out = {case for case, _ in session.catalog.validation_items()}
        case = next(c.name for c in session.catalog.cases if c.name not in held_out)
        session.submit(case, session.catalog.ground_truth(case), seconds_active=5)
        session.retrain()
    return tmp_path / "project"


def model_scorings(monkeypatch):
    import napari_alseg.scoring as scoring

    calls = []
    real = scoring.score_pool

    def counted(request, **options):
        if request.net is not None:
            calls.append(request.model_version)
        return real(request, **options)

    monkeypatch.setattr(scoring, "score_pool", counted)
    return calls


def ranked(out):
    return [line.split("  score")[0] for line in out.splitlines() if "  score " in line]


def test_suggest_reuses_stored_scores_until_the_labels_or_model_change(trained_project, capsys, monkeypatch):
    scorings = model_scorings(monkeypatch)
    assert main(["suggest", str(trained_project), "-k", "3"]) == 0
    first = capsys.readouterr().out
    assert "scores: re-scored the pool for model v0001" in first and "no scores stored" in first
    assert scorings == ["v0001"]

    assert main(["suggest", str(trained_project), "-k", "3"]) == 0
    second = capsys.readouterr().out
    assert "scores: stored ones of model v0001" in second and scorings == ["v0001"]  # no second scoring
    assert ranked(second) == ranked(first) and len(ranked(first)) >= 2

    with Session.open(trained_project, annotator="dr") as session:
        top = ranked(first)[0].split(". ")[1]
        session.submit(top, session.catalog.ground_truth(top), seconds_active=5)
    assert main(["suggest", str(trained_project), "-k", "3"]) == 0
    third = capsys.readouterr().out
    assert "re-scored" in third and "labels changed since (1 annotation event since" in third
    assert scorings == ["v0001", "v0001"] and top not in " ".join(ranked(third))


def test_an_engine_ranking_by_features_scores_again_and_says_why(trained_project, capsys, monkeypatch):
    scorings = model_scorings(monkeypatch)
    assert main(["suggest", str(trained_project), "-k", "2"]) == 0
    for _ in range(2):  # the features behind it are not kept with the scores: every call scores
        assert main(["suggest", str(trained_project), "-k", "2", "--strategy", "representative"]) == 0
    out = capsys.readouterr().out.split("engine: ")
    assert "representative ranks by numbers the last scoring (for mc-dropout-top) did not compute" in out[2]
    assert "representative needs more than scores" in out[3] and len(scorings) == 3


def test_a_read_only_project_scores_in_memory_and_says_so_each_time(trained_project, capsys, monkeypatch, caplog):
    import errno
    import os

    from napari_alseg.store import lock

    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith("project.lock") and flags & (os.O_RDWR | os.O_WRONLY | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(lock.os, "open", read_only)
    for _ in range(2):  # nothing is kept, so nothing is reused; no write is tried
        assert main(["suggest", str(trained_project), "-k", "2"]) == 0
        assert "re-scored the pool for model v0001" in capsys.readouterr().out
    assert not [r for r in caplog.records if SCORING_STATE_SETTING in r.getMessage()]  # no "not kept" warning


def test_stale_reason_names_what_changed():
    state = {"model_version": "v0002", "strategy": "entropy", "granularity": "case", "needs": ["model"],
             "last_event": 7, "events": 7, "last_weak": 0, "cases": 4}
    assert stale_reason(dict(state), state) == ""
    assert "no scores stored" in stale_reason(None, state)
    assert "v0001 was scored, v0002 is current" in stale_reason({**state, "model_version": "v0001"}, state)
    assert "2 annotation events" in stale_reason({**state, "last_event": 5, "events": 5}, state)
    assert "slice range" in stale_reason({**state, "last_weak": 3}, {**state, "last_weak": 4})
    wider = {**state, "strategy": "coreset", "needs": ["features", "model"]}
    assert "coreset ranks by numbers" in stale_reason(state, wider)
    assert stale_reason(wider, state) == ""  # the scores computed for coreset serve entropy
