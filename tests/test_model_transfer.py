"""Models in and out of projects: export → import gives the same predictions; a model that does
not fit, or a tampered file, is refused in one line with nothing written."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_alseg.cli import main
from napari_alseg.errors import AlsegError
from napari_alseg.model import save_checkpoint
from napari_alseg.session.model_transfer import INITIAL_MODEL_SETTING, create_from_model, read_model_file
from napari_alseg.session import Session
from napari_alseg.store import DB_NAME, Project
from test_store import CLASSES, make_source

ALSEG = shutil.which("alseg") or str(Path(sys.executable).with_name("alseg"))


def give_model(session, seed=0, **metrics):
    """A seeded, untrained network recorded as the project's model (training is not the point here)."""
    torch.manual_seed(seed)
    net = session.learner.model_spec().build()
    version = f"v{len(session.catalog.checkpoints()) + 1:04d}"
    path = save_checkpoint(session._project.models_dir / f"{version}.pt", net, net.spec, metrics)
    session._project.record_checkpoint(version, path, metrics=metrics)
    return net


@pytest.fixture
def source(tmp_path):
    return make_source(tmp_path / "source", n_cases=3)


@pytest.fixture
def model_file(tmp_path, source):
    with Session(Project.create(tmp_path / "trained", source), annotator="a") as session:
        session.planning.set_plan(seconds=42.0, batch_size=3)
        give_model(session, val_dice=0.61)
        (tmp_path / "exported").mkdir()
        return session.export_model(tmp_path / "exported"), session.learner.predict_probabilities("case_001")


def one_line(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_export_then_create_from_it_predicts_the_same(tmp_path, source, model_file):
    path, expected = model_file
    assert path.parent.name == "exported" and path.name == "synthetic-v0001.pt"
    exported = read_model_file(path)
    assert exported.info.class_names == ("background", "tumour", "edema")
    assert exported.info.channel_names == ("t2", "t1c") and exported.metrics == {"val_dice": 0.61}
    with Session(create_from_model(tmp_path / "new", source, init_model=path), annotator="b") as session:
        assert session.learner.model_version == "v0001" and session.learner.current_net() is not None
        np.testing.assert_array_equal(session.learner.predict_probabilities("case_001"), expected)
        plan = session.planning.training_plan()
        assert plan.features == exported.spec.features and plan.seconds == 42.0 and plan.batch_size == 3
        assert plan.zoom == exported.training_plan().zoom
        assert session.catalog.metrics() == {}  # the other project's Dice says nothing about these cases
        record = json.loads(session._project.setting(INITIAL_MODEL_SETTING))
        assert record["model_version"] == "v0001" and record["metrics"] == {"val_dice": 0.61}
        assert record["sha256"] == exported.sha256


def test_the_first_retrain_warm_starts_from_the_imported_model(tmp_path, source, model_file, monkeypatch):
    from napari_alseg.model import TrainConfig

    started_from = []
    real_fine_tune = __import__("napari_alseg.model", fromlist=["fine_tune"]).fine_tune

    def spy(net, *args, **kwargs):
        started_from.append({name: tensor.clone() for name, tensor in net.state_dict().items()})
        return real_fine_tune(net, *args, **kwargs)

    monkeypatch.setattr("napari_alseg.model.fine_tune", spy)
    config = TrainConfig(steps=1, batch_size=1, patch_size=(4, 6, 5), augment=False)
    with Session(create_from_model(tmp_path / "new", source, init_model=model_file[0]), annotator="b",
                 train_config=config) as session:
        case = next(c.name for c in session.catalog.cases if (c.name, None) not in session.catalog.validation_items())
        session.submit(case, session.catalog.ground_truth(case), seconds_active=1.0)
        report = session.retrain()
        assert report.model_version == "v0002"
    imported = read_model_file(model_file[0]).net.state_dict()
    assert all(torch.equal(started_from[0][name], tensor) for name, tensor in imported.items())


@pytest.mark.parametrize("change, expected", [
    ({"channels": ("t2",)}, "the model has 2 channels, these cases 1: the model's channels are t2, t1c; "
                            "these cases' are t2"),
    ({"channels": ("flair", "t1c")}, "channels differ: the model's channels are t2, t1c; these cases' are flair, t1c"),
    ({"channels": ("t1c", "t2")}, "channels differ (the same names in another order)"),
    ({"classes": {**CLASSES, "3": {"name": "core"}}}, "the model has 3 classes, these cases 4"),
    ({"classes": {**CLASSES, "2": {"name": "necrosis"}}}, "classes differ: the model's classes are background, "
                                                          "tumour, edema; these cases' are background, tumour, "
                                                          "necrosis"),
    ({"granularity": "slice"}, "a 3D model (case granularity), but these cases make a slice-granularity project"),
])
def test_a_model_that_does_not_fit_is_one_line_and_nothing_is_written(tmp_path, model_file, change, expected):
    other = make_source(tmp_path / "other", n_cases=3, **change)
    with pytest.raises(AlsegError) as excinfo:
        create_from_model(tmp_path / "new", other, init_model=model_file[0])
    assert expected in one_line(excinfo)
    assert not (tmp_path / "new").exists()


def test_names_without_meaning_are_not_compared(tmp_path, model_file):
    generic = {"0": {"name": "background"}, "1": {"name": "class_1"}, "2": {"name": "class_2"}}
    other = make_source(tmp_path / "other", n_cases=3, classes=generic)
    with create_from_model(tmp_path / "new", other, init_model=model_file[0]) as project:
        assert project.class_names == ("background", "class_1", "class_2") and len(project.checkpoints()) == 1


def test_a_tampered_model_file_is_refused(tmp_path, source, model_file):
    path = model_file[0]
    payload = torch.load(path, weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = payload["state_dict"][name] + 0.01  # altered weights, old checksum
    altered = tmp_path / "altered.pt"
    torch.save(payload, altered)
    with pytest.raises(AlsegError) as excinfo:
        create_from_model(tmp_path / "new", source, init_model=altered)
    assert "model file contents differ from the checksum written with it" in one_line(excinfo)
    payload = torch.load(path, weights_only=True)
    payload["about"] = payload["about"].replace('"tumour"', '"tumor"')  # a relabelled description
    torch.save(payload, altered)
    with pytest.raises(AlsegError, match="differ from the checksum"):
        read_model_file(altered)
    flipped = bytearray(path.read_bytes())
    middle = len(flipped) // 2
    flipped[middle:middle + 64] = bytes(b ^ 0xFF for b in flipped[middle:middle + 64])
    altered.write_bytes(bytes(flipped))
    with pytest.raises(AlsegError) as excinfo:
        read_model_file(altered)
    assert str(altered) in one_line(excinfo)
    assert not (tmp_path / "new").exists()


def test_a_checkpoint_and_a_model_file_given_for_each_other_say_what_to_do(tmp_path, source, model_file):
    from napari_alseg.model import load_checkpoint

    checkpoint = tmp_path / "trained" / "models" / "v0001.pt"
    with pytest.raises(AlsegError, match="a project checkpoint, not an exported model; write one with "
                                         "`alseg model export PROJECT OUT`"):
        read_model_file(checkpoint)
    with pytest.raises(AlsegError, match="an exported model, not a project checkpoint"):
        load_checkpoint(model_file[0])
    with pytest.raises(AlsegError, match="no model yet; retrain once before exporting"):
        with Session(Project.create(tmp_path / "untrained", source), annotator="a") as session:
            session.export_model(tmp_path / "out.pt")


def test_cli_model_export_and_create_with_init_model(tmp_path, source, model_file, capsys):
    trained = tmp_path / "trained"
    assert main(["model", "export", str(trained), str(tmp_path / "cli.pt")]) == 0
    assert "exported model v0001" in capsys.readouterr().out
    assert main(["create", str(tmp_path / "new"), "--from", str(source), "--init-model", str(tmp_path / "cli.pt")]) == 0
    out = capsys.readouterr().out
    assert "initial model: v0001 is v0001 of synthetic" in out
    assert main(["status", str(tmp_path / "new")]) == 0
    assert "initial model: v0001 is v0001 of synthetic" in capsys.readouterr().out
    assert (tmp_path / "new" / DB_NAME).is_file()


def test_cli_mismatch_is_one_line_exit_2(tmp_path, model_file):
    other = make_source(tmp_path / "other", n_cases=3, channels=("t2",))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([ALSEG, "create", str(tmp_path / "new"), "--from", str(other),
                             "--init-model", str(model_file[0])], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("alseg: error: synthetic-v0001.pt: the model has 2 channels")
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "new").exists()


def test_a_failed_install_removes_what_creation_wrote(tmp_path, source, model_file, monkeypatch):
    from napari_alseg.errors import StorageError

    def full_disk(*_args, **_kwargs):
        raise StorageError("models/v0001.pt: cannot write the checkpoint (disk full)")

    monkeypatch.setattr("napari_alseg.model.save_checkpoint", full_disk)
    existing = tmp_path / "chosen"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(StorageError):
        create_from_model(existing, source, init_model=model_file[0])
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]


def test_a_2d_model_round_trips_too(tmp_path):
    stack = make_source(tmp_path / "stack", n_cases=1, granularity="slice")
    with Session(Project.create(tmp_path / "trained", stack), annotator="a") as session:
        give_model(session, seed=3)
        path = session.export_model(tmp_path / "stack.pt")
        expected = session.learner.predict_probabilities("case_000", 2)
    with Session(create_from_model(tmp_path / "new", stack, init_model=path), annotator="b") as session:
        assert session.view.spatial_dims == 2 and len(session.planning.training_plan().patch_size) == 2
        np.testing.assert_array_equal(session.learner.predict_probabilities("case_000", 2), expected)
