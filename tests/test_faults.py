"""Every fault a user or a disk can cause: one line (AlsegError / `alseg: error:`), nothing lost.

One test per fault of issue 15: damaged headers and affines, damaged databases and
checkpoints, a deleted lock file, a full disk (faked by SQLite's own SQLITE_FULL through
``max_page_count``, or by injecting ``OSError(ENOSPC)``), and a platform without ``fcntl``.
"""

import errno
import gzip
import os
import sqlite3
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_alseg.cli import main
from napari_alseg.errors import AlsegError, DamagedProjectError, StorageError
from napari_alseg.model.checkpoints import load_checkpoint, save_checkpoint
from napari_alseg.model.networks import ModelSpec
from napari_alseg.nifti import load_volume
from napari_alseg.store import DB_NAME, Project
from test_store import SHAPE, make_source, submit_slice, synthetic_labels
from test_store_durability import OPEN_ONCE, run_python


def one_line(excinfo) -> str:
    """The error's message, asserted to be one line (what the user sees, not a traceback)."""
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message, message
    assert isinstance(excinfo.value, AlsegError)
    return message


def cli_error(capsys, argv) -> str:
    """Run the CLI; assert exit 2 and a single `alseg: error:` line on stderr."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alseg: error: "), err
    return lines[0]


@pytest.fixture
def project_folder(tmp_path):
    with Project.create(tmp_path / "project", make_source(tmp_path / "source", n_cases=2)) as project:
        submit_slice(project)  # one submitted label version that must survive every fault
    return tmp_path / "project"


def assert_work_kept(folder):
    """The label version submitted in the fixture is still there, intact."""
    with Project.open(folder) as project:
        snapshot = project.current_labels("case_000")
        assert snapshot.version == 1
        np.testing.assert_array_equal(snapshot.data[1], synthetic_labels(0, SHAPE[1:]))


# --------------------------------------------------------------------------- headers and affines


def _huge_header_file(path, shape=(4000, 4000, 4000)):
    """A small valid .nii whose header then claims ``shape`` (the data are 8 voxels)."""
    raw = path.with_suffix("").with_suffix(".nii") if str(path).endswith(".gz") else path
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), str(raw))
    data = bytearray(raw.read_bytes())
    data[40:56] = np.array([3, *shape, 1, 1, 1, 1], "<i2").tobytes()  # dim[8]
    if str(path).endswith(".gz"):
        raw.unlink()
        path.write_bytes(gzip.compress(bytes(data)))
    else:
        path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_a_header_claiming_4000_cubed_voxels_is_refused_before_reading(tmp_path, name):
    with pytest.raises(AlsegError) as excinfo:
        load_volume(_huge_header_file(tmp_path / name))
    message = one_line(excinfo)
    assert f"{name}: header declares 4000x4000x4000 voxels of int16" in message


def test_alseg_create_refuses_a_huge_header_in_one_line(tmp_path, capsys):
    source = make_source(tmp_path / "source", n_cases=2)
    _huge_header_file(source / "case_001" / "case_001_t1c.nii.gz")
    line = cli_error(capsys, ["create", tmp_path / "project", "--from", source])
    assert "case_001: case_001_t1c.nii.gz: header declares 4000x4000x4000" in line
    assert not (tmp_path / "project").exists()


def test_a_declared_size_that_memory_cannot_hold_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.nii"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), np.eye(4)), str(path))
    monkeypatch.setattr("napari_alseg.nifti._available_memory", lambda: 1000)
    with pytest.raises(AlsegError) as excinfo:
        load_volume(path)
    assert "needs about 62.5 KiB of memory, only 1000 B is available" in one_line(excinfo)


def test_an_affine_with_a_zero_length_axis_is_one_line(tmp_path):
    image = nib.Nifti1Image(np.ones((3, 3, 3), np.float32), None)
    image.header.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=2)  # what a broken writer leaves
    path = tmp_path / "flat.nii.gz"
    nib.save(image, str(path))
    with pytest.raises(AlsegError) as excinfo:
        load_volume(path)
    assert "flat.nii.gz: affine has a zero-length voxel axis (j)" in one_line(excinfo)


def test_a_sheared_affine_is_refused_not_silently_straightened(tmp_path):
    affine = np.eye(4)
    affine[0, 1] = 0.3  # axis j leans towards x: a shear, not a rotation
    path = tmp_path / "sheared.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3), np.float32), affine), str(path))
    with pytest.raises(AlsegError) as excinfo:
        load_volume(path)
    assert "sheared affine (voxel axes i and j meet at 73.30°, not 90°)" in one_line(excinfo)
    rotated = np.eye(4)
    rotated[:2, :2] = [[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]]  # oblique is fine
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3), np.float32), rotated), str(path))
    assert load_volume(path).shape == (3, 3, 3)


def test_values_beyond_float32_are_not_called_nan(tmp_path):
    array = np.ones((3, 3, 3), np.float64)
    array[1, 1, 1] = 1e39
    path = tmp_path / "huge_values.nii.gz"
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    with pytest.raises(AlsegError) as excinfo:
        load_volume(path)
    message = one_line(excinfo)
    assert "values up to 1e+39 exceed float32's range" in message and "NaN" not in message


def test_permission_denied_says_so(tmp_path, monkeypatch):
    path = tmp_path / "locked.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3), np.float32), np.eye(4)), str(path))

    def denied(file, *args, **kwargs):  # root reads everything, so the OS cannot show this here
        raise PermissionError(errno.EACCES, "Permission denied", str(file))

    monkeypatch.setattr("napari_alseg.nifti.open", denied, raising=False)
    with pytest.raises(AlsegError) as excinfo:
        load_volume(path)
    assert f"{path}: permission denied" in one_line(excinfo)


def test_a_channel_that_is_a_folder_never_drops_its_case_silently(tmp_path, capsys):
    source = make_source(tmp_path / "source", n_cases=3, channels=("t1",))
    channel = source / "case_001" / "case_001_t1.nii.gz"
    channel.unlink()
    channel.mkdir()
    line = cli_error(capsys, ["create", tmp_path / "project", "--from", source])
    assert "case_001: case_001_t1.nii.gz is a folder, not a NIfTI file" in line
    assert "--skip-bad-cases" in line and not (tmp_path / "project").exists()
    assert main(["create", str(tmp_path / "project"), "--from", str(source), "--skip-bad-cases"]) == 0
    out = capsys.readouterr().out
    assert "2 cases" in out and "skipped case case_001: case_001_t1.nii.gz is a folder" in out
    assert main(["status", str(tmp_path / "project")]) == 0
    assert "skipped:      1 cases left out at creation: case_001" in capsys.readouterr().out


# --------------------------------------------------------------------------- damaged projects


def _corrupt_pages(folder):
    """Overwrite database pages 2.. with garbage, as a failing disk would."""
    path = folder / DB_NAME
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    rng = np.random.default_rng(0)
    data[page:4 * page] = rng.integers(0, 256, 3 * page, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def test_a_malformed_database_is_refused_on_open_and_by_every_command(project_folder, tmp_path, capsys):
    _corrupt_pages(project_folder)
    damaged = (project_folder / DB_NAME).read_bytes()
    with pytest.raises(DamagedProjectError) as excinfo:
        Project.open(project_folder)
    message = one_line(excinfo)
    assert f"{DB_NAME}: damaged project database" in message and "nothing was changed" in message
    for command in (["status", project_folder], ["export", project_folder, tmp_path / "out"]):
        assert "damaged project database" in cli_error(capsys, command)
    assert not (tmp_path / "out").exists()
    assert main(["status", str(project_folder), "--check"]) == 2
    captured = capsys.readouterr()
    assert captured.out.count("problem: project.sqlite:") >= 1
    assert len(captured.err.strip().splitlines()) == 1
    assert (project_folder / DB_NAME).read_bytes() == damaged  # nothing written: salvage stays possible
    assert (project_folder / "labels" / "case_000" / "v0001.nii.gz").is_file()


def test_text_corruption_in_a_record_is_damage_not_a_unicode_traceback(project_folder):
    conn = sqlite3.connect(project_folder / DB_NAME)
    conn.execute("UPDATE cases SET affine = CAST(X'5B5BFFFE' AS TEXT) WHERE name = 'case_001'")
    conn.commit()
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"  # SQLite sees no damage
    conn.close()
    with pytest.raises(DamagedProjectError) as excinfo:
        Project.open(project_folder)
    assert "damaged project database (Could not decode to UTF-8 column 'affine'" in one_line(excinfo)


def test_status_check_finds_a_changed_label_file(project_folder, capsys):
    with Project.open(project_folder) as project:
        case = project.case("case_000")
    from napari_alseg.nifti import save_volume

    save_volume(project_folder / "labels" / "case_000" / "v0001.nii.gz", np.ones(SHAPE, np.uint8),
                case.source_affine, is_label=True)
    assert main(["status", str(project_folder)]) == 0  # issue 23 item 10: status goes on, says which
    assert ("damaged:      case case_000 label version 1 (labels/case_000/v0001.nii.gz): contents differ from "
            "the checksum recorded at submit") in capsys.readouterr().out
    assert main(["status", str(project_folder), "--check"]) == 2
    captured = capsys.readouterr()
    assert "problem:      case case_000 label version 1 (labels/case_000/v0001.nii.gz): contents" in captured.out
    assert captured.err.strip() == (f"alseg: error: {project_folder}: the full check found 1 problem(s) "
                                    "(listed above); restore the damaged files from a backup")


def test_a_sound_project_passes_the_full_check(project_folder, capsys):
    assert main(["status", str(project_folder), "--check"]) == 0
    out = capsys.readouterr().out
    assert "check:        ok" in out and "channels:     t2, t1c" in out
    assert "classes:      0 background, 1 tumour, 2 edema" in out


def test_a_checkpoint_with_64_flipped_bytes_is_refused(tmp_path):
    spec = ModelSpec(3, 1, 3, (4, 8, 8, 8, 16, 4))
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "models" / "v0001.pt", spec.build(), spec, {"dice": 0.5})
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedProjectError) as excinfo:
        load_checkpoint(path)
    assert f"{path}: checkpoint contents differ from the checksum written with it" in one_line(excinfo)


def test_a_foreign_pickle_is_refused_without_advising_weights_only_false(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"format": "napari-alseg-checkpoint", "spec": ModelSpec}, path)  # a class: not weights
    with pytest.raises(AlsegError) as excinfo:
        load_checkpoint(path)
    message = one_line(excinfo)
    assert "holds objects other than tensors" in message and "weights_only" not in message


def test_temp_checkpoint_debris_is_removed_on_open(project_folder):
    models = project_folder / "models"
    models.mkdir()
    (models / ".v0002.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")
    (models / "notes.txt").write_text("not ours, left alone")
    with Project.open(project_folder):
        assert sorted(p.name for p in models.iterdir()) == ["notes.txt"]


def test_an_unrecorded_checkpoint_of_a_killed_retrain_is_removed_on_open(project_folder):
    models = project_folder / "models"
    with Project.open(project_folder) as project:
        models.mkdir()
        (models / "v0001.pt").write_bytes(b"recorded")
        project.record_checkpoint("v0001", models / "v0001.pt")
        (models / "v0002.pt").write_bytes(b"saved, then killed before it was recorded")
        (models / "imported.pt").write_bytes(b"not a version name: left alone")
    with Project.open(project_folder) as project:
        assert sorted(p.name for p in models.iterdir()) == ["imported.pt", "v0001.pt"]
        assert [c.model_version for c in project.checkpoints()] == ["v0001"]


def test_deleting_the_lock_file_does_not_let_a_second_writer_in(project_folder):
    with Project.open(project_folder):
        (project_folder / "project.lock").unlink()
        message = run_python(OPEN_ONCE, project_folder)
        assert "project is already open in another process" in message
        assert "project.lock was deleted" in message
    assert run_python(OPEN_ONCE, project_folder) == "opened"


# --------------------------------------------------------------------------- disk full


def _fill_database(project):
    """From now on this connection's next new page fails with SQLite's own SQLITE_FULL."""
    conn = project._db.connection()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def test_disk_full_while_marking_a_class_range(project_folder):
    from napari_alseg.session import Session

    with Session(Project.open(project_folder), annotator="x" * 20_000) as session:  # a row that needs pages
        _fill_database(session._project)
        with pytest.raises(StorageError) as excinfo:
            session.mark_class_range("case_000", 1, 0, 2)
        assert f"{DB_NAME}: disk full while saving; nothing was saved" in one_line(excinfo)
        assert session.catalog.weak_annotations("case_000") == {}
    assert_work_kept(project_folder)


def test_disk_full_while_rejecting_a_pseudo_label(project_folder):
    with Project.open(project_folder) as project:
        _fill_database(project)
        prediction = synthetic_labels(3, SHAPE)
        with pytest.raises(StorageError) as excinfo:
            project.reject_pseudo("case_001", annotator="y" * 20_000, prediction=prediction)
        assert "disk full while saving" in one_line(excinfo)
        assert len(project.events()) == 1
        assert not (project_folder / "labels" / "case_001").exists() or not any(
            (project_folder / "labels" / "case_001").rglob("*.nii.gz"))
    assert_work_kept(project_folder)


class _FailingCommit:
    """The project's connection, except that COMMIT fails as on a full disk."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql, *args):
        if sql.strip().upper() == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_disk_full_at_commit_saves_nothing_and_the_next_submit_works(project_folder, monkeypatch):
    with Project.open(project_folder) as project:
        real = project._db.connection()
        with monkeypatch.context() as patched:
            patched.setattr(project._db, "connection", lambda: _FailingCommit(real))
            with pytest.raises(StorageError) as excinfo:
                submit_slice(project, slice_index=2, seed=7)
        assert "disk full while saving; nothing was saved" in one_line(excinfo)
        assert not real.in_transaction
        assert project.current_labels("case_000").version == 1
        assert sorted(p.name for p in (project_folder / "labels" / "case_000").iterdir()) == [
            "v0001.json", "v0001.nii.gz"]
        submit_slice(project, slice_index=2, seed=7)
        assert project.current_labels("case_000").version == 2


def test_disk_full_while_creating_a_project_leaves_nothing(tmp_path, monkeypatch, capsys):
    from napari_alseg.store import creation

    source = make_source(tmp_path / "source", n_cases=2)
    real_migrate = creation.migrate

    def migrate_on_a_full_disk(conn, path, *args, **options):
        conn.execute("PRAGMA max_page_count = 1")
        return real_migrate(conn, path, *args, **options)

    monkeypatch.setattr(creation, "migrate", migrate_on_a_full_disk)
    line = cli_error(capsys, ["create", tmp_path / "project", "--from", source])
    assert f"{tmp_path / 'project' / DB_NAME}: disk full while creating the project" in line
    assert not (tmp_path / "project").exists()


def test_enospc_on_fsync_while_creating_a_project_leaves_nothing(tmp_path, monkeypatch):
    source = make_source(tmp_path / "source", n_cases=2)
    (tmp_path / "project").mkdir()

    def fsync_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync_full)
    with pytest.raises(StorageError) as excinfo:
        Project.create(tmp_path / "project", source)
    assert "cannot write the project database (disk full); nothing was created" in one_line(excinfo)
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "project").iterdir()) in ([], ["project.lock"])
    Project.create(tmp_path / "project", source).close()


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file "
                 "data/0: file write failed"),
])
def test_disk_full_while_saving_a_checkpoint_keeps_the_last_good_one(tmp_path, monkeypatch, failure):
    spec = ModelSpec(3, 1, 3, (4, 8, 8, 8, 16, 4))
    torch.manual_seed(0)
    good = save_checkpoint(tmp_path / "models" / "v0001.pt", spec.build(), spec, {"dice": 0.5})
    before = good.read_bytes()
    real_save = torch.save

    def save_half(payload, file):
        with open(file, "wb") as handle:
            handle.write(b"PK half a checkpoint")
        raise failure

    monkeypatch.setattr(torch, "save", save_half)
    with pytest.raises(StorageError) as excinfo:
        save_checkpoint(good, spec.build(), spec, {"dice": 0.9})
    message = one_line(excinfo)
    assert "v0001.pt: cannot write the checkpoint (" in message and "previous model is kept" in message
    assert "disk" in message
    monkeypatch.setattr(torch, "save", real_save)
    assert good.read_bytes() == before and [p.name for p in good.parent.iterdir()] == ["v0001.pt"]
    assert load_checkpoint(good)[2] == {"dice": 0.5}


# --------------------------------------------------------------------------- portability

NO_FCNTL = textwrap.dedent("""
    import sys
    sys.modules["fcntl"] = None  # as on Windows: `import fcntl` raises ImportError
    import napari_alseg.store
    import napari_alseg._widget
    from napari_alseg.errors import AlsegError
    from napari_alseg.store import Project
    try:
        Project.open(sys.argv[1])
    except AlsegError as exc:  # no msvcrt either on this machine: a clear refusal, not a crash
        print("refused:", exc)
""")


def test_the_widget_and_store_import_without_fcntl(project_folder):
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    result = subprocess.run([sys.executable, "-c", NO_FCNTL, str(project_folder)], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "refused: this platform offers no file locking" in result.stdout
    assert "Traceback" not in result.stderr


def test_disk_full_while_exporting_is_one_line(project_folder, tmp_path, monkeypatch):
    def open_full(file, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with Project.open(project_folder) as project:
        monkeypatch.setattr("napari_alseg.store.export.open", open_full, raising=False)
        with pytest.raises(StorageError) as excinfo:
            project.export(tmp_path / "out")
        assert "provenance.csv: cannot write the export (disk full)" in one_line(excinfo)
        assert not list((tmp_path / "out").glob(".*tmp*"))
    assert_work_kept(project_folder)


class _FakeMsvcrt:
    """Windows' msvcrt.locking semantics (byte-range, non-blocking), for the lock's Windows path."""

    LK_UNLCK, LK_NBLCK = 0, 2

    def __init__(self):
        self.held = {}

    def locking(self, fd, mode, nbytes):
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino, os.lseek(fd, 0, os.SEEK_CUR), nbytes)
        if mode == self.LK_NBLCK:
            if key in self.held:
                raise OSError(errno.EACCES, "Permission denied")
            self.held[key] = fd
        elif mode == self.LK_UNLCK:
            self.held.pop(key, None)


def test_the_lock_works_with_msvcrt_where_fcntl_is_missing(project_folder, monkeypatch):
    fake = _FakeMsvcrt()
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    with Project.open(project_folder):
        assert len(fake.held) == 1
        with pytest.raises(AlsegError) as excinfo:
            Project.open(project_folder)
        assert "project is already open in this process (PID" in one_line(excinfo)
    assert fake.held == {}
    with Project.open(project_folder) as project:
        assert project.current_labels("case_000").version == 1


@pytest.mark.parametrize("unlockable", [DB_NAME, "project.lock"])
def test_a_file_system_without_locks_is_explained_not_called_already_open(project_folder, monkeypatch,
                                                                          unlockable):
    import fcntl

    real_flock = fcntl.flock

    def flock(fd, operation):  # NFS refuses flock on some descriptors with ENOLCK / EBADF
        if os.readlink(f"/proc/self/fd/{fd}").endswith(unlockable) and operation & fcntl.LOCK_EX:
            raise OSError(errno.ENOLCK, "No locks available")
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    if unlockable == DB_NAME:  # project.lock still keeps a second process out
        with Project.open(project_folder) as project:
            assert project.current_labels("case_000").version == 1
            assert "already open" in run_python(OPEN_ONCE, project_folder)
    else:
        with pytest.raises(AlsegError) as excinfo:
            Project.open(project_folder)
        assert "project.lock: cannot lock the project (No locks available)" in one_line(excinfo)
