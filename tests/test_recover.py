"""Issue 23 item 1, the recovery half: ``alseg recover`` lists what open kept aside in
``recovered/`` and, with ``--restore``, records it again from the record saved beside each label
version, so acknowledged work lost with ``project.sqlite-wal`` comes back.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_alseg.cli import main
from napari_alseg.errors import AlsegError, StorageError
from napari_alseg.store import DB_NAME, Project
from test_faults import _FailingCommit, cli_error, one_line
from test_faults_store import _submit_and_lose_the_wal
from test_store import SHAPE, make_source, submit_slice, synthetic_labels

RECOVERED = "recovered"


@pytest.fixture
def project_folder(tmp_path):
    Project.create(tmp_path / "project", make_source(tmp_path / "source", n_cases=2)).close()
    return tmp_path / "project"


def _arrays(folder, names):
    from napari_alseg.nifti import load_volume

    return {name: load_volume(folder / name, as_label=True).data for name in names}


def test_each_label_version_has_its_record_beside_it(project_folder):
    with Project.open(project_folder) as project:
        submit_slice(project, slice_index=2, seed=1, class_id=1)
    record = json.loads((project_folder / "labels" / "case_000" / "v0001.json").read_text())
    assert record["case"] == "case_000" and record["version"] == 1 and len(record["sha256"]) == 64
    assert record["event"]["kind"] == "manual" and record["event"]["slice_index"] == 2
    assert record["event"]["class_id"] == 1 and record["event"]["annotator"] == "ann"
    with Project.open(project_folder):  # a recorded version's record is not swept on open
        pass
    assert (project_folder / "labels" / "case_000" / "v0001.json").is_file()
    assert not (project_folder / RECOVERED).exists()


def test_a_failed_commit_leaves_no_record_behind(project_folder, monkeypatch):
    with Project.open(project_folder) as project:
        real = project._db.connection()
        monkeypatch.setattr(project._db, "connection", lambda: _FailingCommit(real))
        with pytest.raises(StorageError):
            submit_slice(project)
        monkeypatch.undo()
    assert sorted(p.name for p in (project_folder / "labels" / "case_000").iterdir()) == []


def test_the_lost_wal_is_recovered_end_to_end(project_folder, capsys):
    kept = _submit_and_lose_the_wal(project_folder)
    before = _arrays(project_folder, kept)
    Project.open(project_folder).close()  # keeps them aside in recovered/
    assert main(["recover", str(project_folder)]) == 0
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if "can be restored" in line]
    assert len(listed) == 3 and all("manual by ann" in line for line in listed), out

    assert main(["recover", str(project_folder), "--restore"]) == 0
    out = capsys.readouterr().out
    assert out.count("identical to the file") == 3 and "restored 3 label version(s)" in out, out
    with Project.open(project_folder) as project:
        snapshot = project.current_labels("case_000")
        assert snapshot.version == 3
        np.testing.assert_array_equal(snapshot.data, before["labels/case_000/v0003.nii.gz"])
        events = project.events("case_000")
        assert [(e.kind, e.annotator, e.slice_index, e.seconds_active) for e in events] == [
            ("manual", "ann", s, 12.5) for s in range(3)]
        assert project.recovered() == []
    assert main(["status", str(project_folder), "--check"]) == 0
    assert "check:        ok" in capsys.readouterr().out


def test_restoring_onto_newer_work_keeps_both(project_folder, capsys):
    kept = _submit_and_lose_the_wal(project_folder)
    with Project.open(project_folder) as project:  # the user went on working before restoring
        submit_slice(project, slice_index=3, seed=9)
    assert main(["recover", str(project_folder), "--restore"]) == 0
    assert capsys.readouterr().out.count("merged onto the case's newer labels") == 3
    with Project.open(project_folder) as project:
        data = project.current_labels("case_000").data
        assert project.current_labels("case_000").version == 4
        np.testing.assert_array_equal(data[3], synthetic_labels(9, SHAPE[1:]))
        for seed in range(3):
            np.testing.assert_array_equal(data[seed], synthetic_labels(seed, SHAPE[1:]))
    assert len(kept) == 3


UNDO_THEN_DIE = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from napari_alseg.store import Project
    from test_store import submit_slice
    project = Project.open(sys.argv[1])
    submit_slice(project, slice_index=0, seed=0)
    submit_slice(project, slice_index=1, seed=1)
    project.undo_submit("case_000", annotator="ann")
    print("acknowledged", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_an_undo_is_replayed_too(project_folder, capsys):
    run = subprocess.run([sys.executable, "-c", UNDO_THEN_DIE, str(project_folder), os.path.dirname(__file__)],
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "acknowledged", run.stderr
    (project_folder / f"{DB_NAME}-wal").unlink()
    (project_folder / f"{DB_NAME}-shm").unlink(missing_ok=True)
    assert main(["recover", str(project_folder), "--restore"]) == 0  # the open inside quarantines first
    assert "restored 3 label version(s)" in capsys.readouterr().out
    with Project.open(project_folder) as project:
        assert [e.kind for e in project.events("case_000")] == ["manual", "manual", "undo"]
        data = project.current_labels("case_000").data
        np.testing.assert_array_equal(data[0], synthetic_labels(0, SHAPE[1:]))
        assert not data[1].any()


def test_a_file_without_its_record_is_listed_and_left(project_folder, capsys):
    _submit_and_lose_the_wal(project_folder)
    Project.open(project_folder).close()
    (project_folder / RECOVERED / "labels" / "case_000" / "v0002.json").unlink()  # as an older version saved it
    assert main(["recover", str(project_folder), "--restore"]) == 0
    out = capsys.readouterr().out
    assert "restored 2 label version(s); 1 file(s) stay in recovered/" in out, out  # v1 and v3: own regions
    assert "v0002.nii.gz: case case_000, label version 2; not restorable: no record" in out
    assert (project_folder / RECOVERED / "labels" / "case_000" / "v0002.nii.gz").is_file()


def test_a_damaged_recovered_file_is_one_line_and_stays(project_folder, capsys):
    _submit_and_lose_the_wal(project_folder)
    Project.open(project_folder).close()
    first = project_folder / RECOVERED / "labels" / "case_000" / "v0001.nii.gz"
    from napari_alseg.nifti import save_volume

    with Project.open(project_folder) as project:
        affine = project.case("case_000").source_affine
    save_volume(first, np.ones(SHAPE, np.uint8), affine, is_label=True)
    line = cli_error(capsys, ["recover", project_folder, "--restore"])
    assert "v0001.nii.gz: contents differ from the checksum saved with it; not restored" in line
    assert first.is_file()
    with Project.open(project_folder) as project:
        assert project.current_labels("case_000") is None and len(project.recovered()) == 3


def test_recover_with_nothing_kept(project_folder, capsys):
    assert main(["recover", str(project_folder)]) == 0
    assert "nothing kept aside" in capsys.readouterr().out


def test_a_second_loss_of_the_same_version_keeps_both_pairs(project_folder):
    _submit_and_lose_the_wal(project_folder)
    Project.open(project_folder).close()
    _submit_and_lose_the_wal(project_folder)  # the same versions again, lost again
    Project.open(project_folder).close()
    folder = project_folder / RECOVERED / "labels" / "case_000"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([f"v000{v}{s}" for v in (1, 2, 3) for s in
                            (".nii.gz", ".json", "~2.nii.gz", "~2.json")]), names
    with Project.open(project_folder) as project:
        assert sum(item.restorable for item in project.recovered()) == 6


def test_a_read_only_project_refuses_restoring(project_folder, monkeypatch):
    _submit_and_lose_the_wal(project_folder)
    Project.open(project_folder).close()
    monkeypatch.setattr("napari_alseg.store.project._unwritable", lambda folder: "no write permission on x")
    with Project.open(project_folder) as project:
        assert len(project.recovered()) == 3
        with pytest.raises(AlsegError) as excinfo:
            project.restore_recovered()
        assert "open read-only" in one_line(excinfo)


def test_an_undo_after_an_unrestorable_version_is_not_replayed(project_folder, capsys):
    run = subprocess.run([sys.executable, "-c", UNDO_THEN_DIE, str(project_folder), os.path.dirname(__file__)],
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "acknowledged", run.stderr
    (project_folder / f"{DB_NAME}-wal").unlink()
    (project_folder / f"{DB_NAME}-shm").unlink(missing_ok=True)
    Project.open(project_folder).close()
    (project_folder / RECOVERED / "labels" / "case_000" / "v0002.json").unlink()
    assert main(["recover", str(project_folder), "--restore"]) == 0
    out = capsys.readouterr().out
    assert "restored 1 label version(s); 2 file(s) stay" in out and "would take back the wrong submit" in out, out
    with Project.open(project_folder) as project:
        assert [e.kind for e in project.events("case_000")] == ["manual"]
