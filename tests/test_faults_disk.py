"""Issue 23 item 2: a full disk (ENOSPC) or a read-only file system (EROFS) is one line in every
write path (the lock, the database, label files, checkpoints, exports, the CLI), nothing is
half-written, and the project lock is never leaked by a failed write.

The faults are injected (``OSError`` with the real errno, SQLite's own SQLITE_FULL through
``max_page_count``): a test cannot fill the disk it runs on.
"""

import errno
import os

import pytest

from napari_alseg.cli import main
from napari_alseg.errors import AlsegError, StorageError, disk_cause, storage_error
from napari_alseg.store import DB_NAME, Project
from test_faults import _fill_database, assert_work_kept, cli_error, one_line
from test_store import make_source, submit_slice
from test_store_durability import OPEN_ONCE, run_python

ENOSPC = OSError(errno.ENOSPC, "No space left on device")
EROFS = OSError(errno.EROFS, "Read-only file system")


def raising(error):
    def fail(*args, **kwargs):
        raise OSError(error.errno, error.strerror, *(args[:1] if args and isinstance(args[0], (str, os.PathLike))
                                                    else ()))
    return fail


@pytest.fixture
def project_folder(tmp_path):
    with Project.create(tmp_path / "project", make_source(tmp_path / "source", n_cases=2)) as project:
        submit_slice(project)
    return tmp_path / "project"


def test_the_causes_are_named_in_words():
    assert disk_cause(ENOSPC) == "disk full"
    assert disk_cause(EROFS) == "read-only file system"
    assert disk_cause(OSError(errno.EACCES, "Permission denied")) == "permission denied"
    assert disk_cause(OSError(errno.ENOTDIR, "Not a directory")) == "Not a directory"
    message = str(storage_error("/p/x", ENOSPC, "write x"))
    assert message == "/p/x: cannot write x (disk full); nothing was saved; free some space and try again"


# --------------------------------------------------------------------------- the lock


def test_a_full_disk_at_the_lock_still_lets_status_run(project_folder, monkeypatch, capsys):
    monkeypatch.setattr("napari_alseg.store.lock._write_at_start", raising(ENOSPC))
    assert main(["status", str(project_folder)]) == 0
    captured = capsys.readouterr()
    assert "cases:" in captured.out and "Traceback" not in captured.err
    monkeypatch.undo()
    with Project.open(project_folder) as project:  # nothing leaked: the next open is not "already open"
        assert project.current_labels("case_000").version == 1


def test_a_lock_held_without_its_pid_still_keeps_a_second_process_out(project_folder, monkeypatch):
    monkeypatch.setattr("napari_alseg.store.lock._write_at_start", raising(ENOSPC))
    with Project.open(project_folder):
        assert "project is already open in another process" in run_python(OPEN_ONCE, project_folder)
    assert run_python(OPEN_ONCE, project_folder) == "opened"


def test_an_unexpected_failure_after_locking_releases_the_lock(project_folder, monkeypatch):
    def interrupted(fd, path):
        raise KeyboardInterrupt

    monkeypatch.setattr("napari_alseg.store.lock._write_holder", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Project.open(project_folder)
    monkeypatch.undo()
    Project.open(project_folder).close()


def test_a_lock_file_that_cannot_be_created_is_one_line(tmp_path, monkeypatch, capsys):
    from napari_alseg.store import lock

    source = make_source(tmp_path / "source", n_cases=2)
    real_open = os.open

    def open_full(path, flags, *args):
        if str(path).endswith("project.lock"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(lock.os, "open", open_full)
    line = cli_error(capsys, ["create", tmp_path / "project", "--from", source])
    assert "project.lock: cannot create the project lock (disk full); nothing was changed" in line
    assert not (tmp_path / "project").exists()
    monkeypatch.undo()
    assert main(["create", str(tmp_path / "project"), "--from", str(source)]) == 0  # after freeing space


def test_a_full_disk_during_create_leaks_no_lock_and_a_retry_works(tmp_path, monkeypatch, capsys):
    source = make_source(tmp_path / "source", n_cases=2)
    (tmp_path / "project").mkdir()  # the user's folder: kept, emptied of what create wrote
    monkeypatch.setattr("napari_alseg.store.lock._write_at_start", raising(ENOSPC))
    monkeypatch.setattr(os, "fsync", raising(ENOSPC))
    line = cli_error(capsys, ["create", tmp_path / "project", "--from", source])
    assert "cannot write the project database (disk full); nothing was created" in line
    assert not (tmp_path / "project" / DB_NAME).exists()
    monkeypatch.undo()
    assert main(["create", str(tmp_path / "project"), "--from", str(source)]) == 0
    assert "already open" not in capsys.readouterr().err


# --------------------------------------------------------------------------- writes of an open project


@pytest.mark.parametrize("error, cause", [(ENOSPC, "disk full"), (EROFS, "read-only file system")])
def test_a_failed_label_write_is_one_line_and_records_nothing(project_folder, monkeypatch, error, cause):
    with Project.open(project_folder) as project:
        with monkeypatch.context() as patched:
            patched.setattr("napari_alseg.store.labels.save_volume", raising(error))
            with pytest.raises(StorageError) as excinfo:
                submit_slice(project, slice_index=2, seed=4)
        message = one_line(excinfo)
        assert f"v0002.nii.gz: cannot write the label file ({cause}); nothing was saved" in message
        assert len(project.events()) == 1
    assert_work_kept(project_folder)


@pytest.mark.parametrize("error, cause", [(ENOSPC, "disk full"), (EROFS, "read-only file system")])
def test_export_on_a_full_or_read_only_disk_is_one_line(project_folder, tmp_path, monkeypatch, capsys,
                                                        error, cause):
    monkeypatch.setattr("napari_alseg.store.labels.save_volume", raising(error))
    line = cli_error(capsys, ["export", project_folder, tmp_path / "out"])
    assert f"case_000_seg.nii.gz: cannot write the label file ({cause})" in line
    monkeypatch.undo()
    assert main(["export", str(project_folder), str(tmp_path / "out")]) == 0  # no lock was leaked


def test_an_export_folder_that_cannot_be_made_is_one_line(project_folder, tmp_path, monkeypatch, capsys):
    from pathlib import Path

    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.name == "out":
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    line = cli_error(capsys, ["export", project_folder, tmp_path / "out"])
    assert "out: cannot create the export folder (read-only file system)" in line


def test_a_checkpoint_whose_record_cannot_be_written_is_not_left_behind(project_folder):
    with Project.open(project_folder) as project:
        project.models_dir.mkdir()
        first = project.models_dir / "v0001.pt"
        first.write_bytes(b"recorded")
        project.record_checkpoint("v0001", first)
        second = project.models_dir / "v0002.pt"
        second.write_bytes(b"saved, then the disk filled up" * 2000)
        _fill_database(project)
        with pytest.raises(StorageError) as excinfo:
            project.record_checkpoint("v0002", second, metrics={"note": 1.0, "x" * 9000: 2.0})
        assert "disk full while recording a checkpoint" in one_line(excinfo)
        assert not second.exists() and first.read_bytes() == b"recorded"
        assert [c.model_version for c in project.checkpoints()] == ["v0001"]


def test_a_failed_record_never_removes_a_checkpoint_it_does_not_own(project_folder, tmp_path):
    elsewhere = tmp_path / "mine.pt"
    elsewhere.write_bytes(b"the user's file" * 2000)
    with Project.open(project_folder) as project:
        _fill_database(project)
        with pytest.raises(StorageError):
            project.record_checkpoint("v0001", elsewhere, metrics={"x" * 9000: 1.0})
    assert elsewhere.is_file()


def test_a_disk_error_no_layer_put_in_words_is_still_one_line(project_folder, monkeypatch, capsys):
    def status(args):
        raise OSError(errno.EROFS, "Read-only file system", str(project_folder / "somewhere"))

    monkeypatch.setattr("napari_alseg.cli.projects.run_status", status)
    line = cli_error(capsys, ["status", project_folder])
    assert line == f"alseg: error: {project_folder / 'somewhere'}: read-only file system"


def test_a_read_only_database_says_read_only(project_folder):
    import sqlite3

    from napari_alseg.store.sqlite import database_error

    error = sqlite3.OperationalError("attempt to write a readonly database")
    error.sqlite_errorcode = 8
    message = str(database_error(project_folder / DB_NAME, error, "saving"))
    assert "cannot write the project database while saving (read-only" in message


def test_a_database_that_cannot_be_written_on_open_still_opens_for_reading(project_folder, monkeypatch, capsys,
                                                                           tmp_path):
    """SQLite cannot make its -shm / -wal on a full disk: the project opens read-only instead."""
    from napari_alseg.store import database, sqlite

    real_connect = sqlite.connect

    def connect_on_a_full_disk(path, *, wal=True, read_only=False):
        if not read_only:
            raise sqlite.database_error(path, sqlite3_full(), "opening the project")
        return real_connect(path, wal=wal, read_only=read_only)

    monkeypatch.setattr(database, "connect", connect_on_a_full_disk)
    assert main(["status", str(project_folder)]) == 0
    assert "access:       read-only (it could not be written on open: disk full)" in capsys.readouterr().out
    assert main(["export", str(project_folder), str(tmp_path / "out")]) == 0
    line = cli_error(capsys, ["retrain", project_folder, "--steps", "1"])
    assert "read-only (it could not be written on open: disk full); retraining is not possible" in line
    monkeypatch.undo()
    with Project.open(project_folder) as project:  # space freed: writable again, nothing leaked
        assert project.read_only is None
        submit_slice(project, slice_index=2, seed=3)


def sqlite3_full():
    import sqlite3

    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = 13
    return error
