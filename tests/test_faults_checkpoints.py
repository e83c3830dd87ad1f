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


# --------------------------------------------------------------------------- item 10: damaged label version


def _damage(path):
    path.write_bytes(b"\x1f\x8b not really gzip")


@pytest.fixture
def two_labelled_cases(project_folder):
    with Project.open(project_folder) as project:
        submit_slice(project, case="case_001", seed=2)
    _damage(project_folder / "labels" / "case_000" / "v0001.nii.gz")
    return project_folder


def test_a_damaged_label_version_names_its_case_and_version(two_labelled_cases):
    from napari_alseg.errors import DamagedLabelsError

    with Project.open(two_labelled_cases) as project:
        with pytest.raises(DamagedLabelsError) as excinfo:
            project.current_labels("case_000")
        assert project.current_labels("case_001").version == 1  # the other case is untouched
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith("case case_000 label version 1 (labels/case_000/v0001.nii.gz): ")
    assert (excinfo.value.case, excinfo.value.version) == ("case_000", 1)


def test_status_goes_on_past_a_damaged_label_version(two_labelled_cases, capsys):
    assert main(["status", str(two_labelled_cases)]) == 0
    out = capsys.readouterr().out
    assert "cases:        2 (2 with labels" in out
    damaged = [line for line in out.splitlines() if line.startswith("damaged:")]
    assert len(damaged) == 1 and "case case_000 label version 1" in damaged[0], out


def test_export_writes_every_other_case_and_says_which_was_left_out(two_labelled_cases, tmp_path, capsys):
    import json

    from test_faults import cli_error

    line = cli_error(capsys, ["export", two_labelled_cases, tmp_path / "out"])
    # the other case's labels, provenance.json and .csv, and the rounds and scores record (rounds.csv, scores.csv)
    assert "exported 5 files, but not the labels of 1 case(s)" in line and "case case_000 label version 1" in line
    assert (tmp_path / "out" / "rounds.csv").is_file() and (tmp_path / "out" / "scores.csv").is_file()
    assert (tmp_path / "out" / "case_001_seg.nii.gz").is_file()
    assert not (tmp_path / "out" / "case_000_seg.nii.gz").exists()
    cases = {c["name"]: c for c in json.loads((tmp_path / "out" / "provenance.json").read_text())["cases"]}
    assert cases["case_000"]["label_file"] is None and "label version 1" in cases["case_000"]["label_error"]
    assert cases["case_001"]["label_file"] == "case_001_seg.nii.gz" and "label_error" not in cases["case_001"]


# --------------------------------------------------------------------------- item 10: damaged checkpoint


@pytest.fixture
def trained_twice(tmp_path):
    """A 2D stack project with models v0001 and v0002 (closed); the session's train settings."""
    import numpy as np
    import synthetic_cases
    from synthetic_cases import tiny_config

    from napari_alseg.session import Session

    source = synthetic_cases.blob_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(6, 32, 32))
    project = Project.create(tmp_path / "stack", source, annotator="dr-a", seed=1)
    with Session(project, annotator="dr-a", train_config=tiny_config(steps=2)) as session:
        plane = np.zeros((32, 32), np.uint8)
        plane[10:20, 10:20] = 1
        session.submit("case_000", plane, slice_index=0, seconds_active=5)
        assert session.retrain(rate_quality=False).model_version == "v0001"
        session.submit("case_000", plane, slice_index=2, seconds_active=5)
        assert session.retrain(rate_quality=False).model_version == "v0002"
    return tmp_path / "stack"


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _tamper(path):
    """Change one weight and save again: a readable file whose checksum no longer matches."""
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    name = sorted(payload["state_dict"])[0]
    payload["state_dict"][name] = payload["state_dict"][name] + 0.5
    torch.save(payload, path)


def _retrain_recording_the_start(folder, monkeypatch, **options):
    """Retrain the project at ``folder``; the report and the weights training started from."""
    from synthetic_cases import tiny_config

    import napari_alseg.model as model
    from napari_alseg.session import Session

    started = []
    real = model.fine_tune

    def recording(net, *args, **kwargs):
        if not started:
            started.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        return real(net, *args, **kwargs)

    monkeypatch.setattr(model, "fine_tune", recording)
    with Session.open(folder, annotator="dr-a", train_config=tiny_config(steps=2)) as session:
        report = session.retrain(**options)
        prediction = session.predict_labels("case_000", 0)  # the new model loads and predicts
    return report, started[0], prediction


def _same_weights(a, b):
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.usefixtures("model_backend")
def test_retrain_after_a_truncated_checkpoint_starts_from_the_newest_that_loads(trained_twice, monkeypatch):
    from napari_alseg.model import load_checkpoint

    _truncate(trained_twice / "models" / "v0002.pt")
    report, start, prediction = _retrain_recording_the_start(trained_twice, monkeypatch)
    assert report.model_version == "v0003" and not report.cancelled and prediction.shape == (32, 32)
    assert "\n" not in report.message
    assert report.message.startswith("model v0002's checkpoint (models/v0002.pt) does not load (corrupt or "
                                     "truncated); this round started from model v0001"), report.message
    v0001 = load_checkpoint(trained_twice / "models" / "v0001.pt")[0]
    assert _same_weights(start, v0001.state_dict())
    assert (trained_twice / "models" / "v0002.pt").is_file()  # kept: restoring it from a backup stays possible


@pytest.mark.usefixtures("model_backend")
def test_retrain_when_no_checkpoint_loads_starts_from_the_initial_network(trained_twice, monkeypatch):
    from napari_alseg.session import Session

    _tamper(trained_twice / "models" / "v0002.pt")
    _truncate(trained_twice / "models" / "v0001.pt")
    report, start, _prediction = _retrain_recording_the_start(trained_twice, monkeypatch, rate_quality=True)
    assert report.model_version == "v0003"
    assert report.message.startswith("model v0002's checkpoint (models/v0002.pt) does not load (its contents "
                                     "differ from the checksum written with it); no earlier checkpoint "
                                     "loads either, so this round started from the initial network"), report.message
    with Session.open(trained_twice, annotator="dr-a") as session:
        assert _same_weights(start, session.learner.initial_net().state_dict())


@pytest.mark.usefixtures("model_backend")
def test_prediction_with_a_damaged_active_checkpoint_is_one_line_that_retraining_answers(trained_twice, capsys):
    from test_faults import one_line

    from napari_alseg.errors import AlsegError
    from napari_alseg.session import Session

    _truncate(trained_twice / "models" / "v0002.pt")
    with Session.open(trained_twice, annotator="dr-a") as session:
        assert session.learner.model_version == "v0002"
        for ask in (lambda: session.predict_labels("case_000", 0), lambda: session.learner.uncertainty_map("case_000"),
                    session.rescore):
            with pytest.raises(AlsegError) as excinfo:
                ask()
            message = one_line(excinfo)
            assert "v0002.pt: not a readable napari-alseg checkpoint (corrupt or truncated)" in message
            assert "retrain to write a new one (it starts from the newest checkpoint that loads)" in message
    assert main(["retrain", str(trained_twice), "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "model v0003:" in out and "this round started from model v0001" in out
    assert main(["suggest", str(trained_twice)]) == 0  # the new model serves


@pytest.mark.gui
@pytest.mark.usefixtures("model_backend")
def test_the_dock_opens_a_project_whose_model_is_damaged_and_its_retrain_replaces_it(
        trained_twice, make_napari_viewer_proxy, qtbot, monkeypatch):
    from synthetic_cases import tiny_config

    from napari_alseg import _widget

    shown = []
    for kind in ("error", "warning", "info"):
        monkeypatch.setattr(_widget, f"show_{kind}", lambda message, kind=kind: shown.append((kind, message)))
    _truncate(trained_twice / "models" / "v0002.pt")
    dock = _widget.AlsegWidget(make_napari_viewer_proxy())
    qtbot.addWidget(dock)
    controller = dock.controller
    controller.open_project(trained_twice)
    try:
        assert controller.session is not None
        qtbot.waitUntil(lambda: not controller.running_jobs, timeout=60_000)
        controller.session.settings.train_config = tiny_config(steps=2)
        controller.learning.retrain()
        qtbot.waitUntil(lambda: controller.session.learner.model_version == "v0003" and not controller.running_jobs,
                        timeout=120_000)
    finally:
        controller.close_project()
    assert all("\n" not in message for _kind, message in shown), shown
    warnings = [message for kind, message in shown if kind == "warning"]
    assert any("this round started from model v0001" in message for message in warnings), shown
    errors = [message for kind, message in shown if kind == "error"]  # scoring the pool on open
    assert len(errors) == 1 and "v0002.pt: not a readable napari-alseg checkpoint" in errors[0], errors
    assert "retrain to write a new one" in errors[0]
