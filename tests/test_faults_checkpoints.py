"""Issue 23 items 13b and 10: checkpoint files that change outside the product are reported, and a
damaged checkpoint or label version blocks only what needs it, in one line.
"""

import logging

import pytest

from napari_alseg.cli import main
from napari_alseg.store import Project
from test_store import make_source, submit_slice


@pytest.fixture
def project_folder(tmp_path):
    with Project.create(tmp_path / "project", make_source(tmp_path / "source", n_cases=2)) as project:
        submit_slice(project)
    return tmp_path / "project"


def _record(project, version, content=b"a checkpoint"):
    project.models_dir.mkdir(exist_ok=True)
    path = project.models_dir / f"{version}.pt"
    path.write_bytes(content)
    project.record_checkpoint(version, path)
    return path


# --------------------------------------------------------------------------- item 13b


def test_an_unrecorded_checkpoint_removed_on_open_is_said_in_one_line(project_folder, caplog):
    with Project.open(project_folder) as project:
        _record(project, "v0001")
        (project.models_dir / "v0002.pt").write_bytes(b"saved, then killed before it was recorded")
    with caplog.at_level(logging.WARNING), Project.open(project_folder):
        pass
    lines = [r.getMessage() for r in caplog.records if "v0002.pt" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert "removed 1 checkpoint file(s)" in lines[0] and "does not record" in lines[0]
    assert not (project_folder / "models" / "v0002.pt").exists()


def test_a_recorded_checkpoint_removed_outside_is_reported(project_folder, caplog, capsys):
    with Project.open(project_folder) as project:
        _record(project, "v0001")
        second = _record(project, "v0002")
    second.unlink()  # removed by hand, its record kept
    with caplog.at_level(logging.WARNING), Project.open(project_folder) as project:
        assert [c.model_version for c in project.missing_checkpoints()] == ["v0002"]
    lines = [r.getMessage() for r in caplog.records if "missing" in r.getMessage()]
    assert len(lines) == 1 and "v0002" in lines[0] and "v0001" not in lines[0], lines
    assert main(["status", str(project_folder)]) == 0
    out = capsys.readouterr().out
    assert "missing:      checkpoint of model v0002" in out and "restore it from a backup, or retrain" in out
    assert main(["status", str(project_folder), "--check"]) == 2
    assert "model v0002: checkpoint" in capsys.readouterr().out


def test_a_sound_project_reports_no_missing_checkpoint(project_folder, caplog, capsys):
    with Project.open(project_folder) as project:
        _record(project, "v0001")
    with caplog.at_level(logging.WARNING), Project.open(project_folder):
        pass
    assert not [r for r in caplog.records if "checkpoint" in r.getMessage()]
    assert main(["status", str(project_folder)]) == 0
    assert "missing:" not in capsys.readouterr().out
