"""Issue 23 item 11: a read-only project (a read-only mount, an archive, no write permission)
opens for status, export and viewing with one note, and refuses every write in one line.

Three ways to make a project read-only: EROFS injected at ``project.lock`` (any user), a real
read-only bind mount in a private mount namespace (root, where ``unshare`` is allowed), and
``chmod`` (non-root users only: root ignores permissions).
"""

import errno
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_alseg.cli import main
from napari_alseg.errors import AlsegError, StorageError
from napari_alseg.store import DB_NAME, Project
from test_faults import one_line
from test_store import SHAPE, make_source, submit_slice, synthetic_labels

NOTE = "opened read-only"


@pytest.fixture
def project_folder(tmp_path):
    with Project.create(tmp_path / "project", make_source(tmp_path / "source", n_cases=2)) as project:
        submit_slice(project)
    return tmp_path / "project"


@pytest.fixture
def read_only_lock(monkeypatch):
    """``project.lock`` cannot be opened for writing, as on a read-only file system."""
    from napari_alseg.store import lock

    real_open = os.open

    def open_on_a_read_only_disk(path, flags, *args):
        if str(path).endswith("project.lock") and flags & (os.O_RDWR | os.O_WRONLY | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(lock.os, "open", open_on_a_read_only_disk)


def test_a_read_only_project_opens_for_reading_and_refuses_writes(project_folder, read_only_lock, caplog,
                                                                   tmp_path):
    debris = project_folder / "labels" / "case_000" / ".v0009.nii.gz.x.tmp.nii.gz"
    debris.write_bytes(b"temp")
    with caplog.at_level(logging.WARNING), Project.open(project_folder) as project:
        assert project.read_only == "read-only file system"
        np.testing.assert_array_equal(project.current_labels("case_000").data[1], synthetic_labels(0, SHAPE[1:]))
        written = project.export(tmp_path / "out")
        assert (tmp_path / "out" / "case_000_seg.nii.gz") in written
        for write in (lambda: submit_slice(project, slice_index=2, seed=3),
                      lambda: project.save_draft("case_000", np.zeros(SHAPE, np.uint8)),
                      lambda: project.update_class(1, name="renamed"),
                      lambda: project.require_writable("retraining")):
            with pytest.raises(StorageError) as excinfo:
                write()
            message = one_line(excinfo)
            assert "the project is open read-only (read-only file system)" in message
            assert "nothing was saved" in message
        project.store_setting("query_strategy", "margins")  # a preference: held for this opening only
        assert project.setting("query_strategy") == "margins"
        assert len(project.events()) == 1
    notes = [r.getMessage() for r in caplog.records if NOTE in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0] and "read-only file system" in notes[0]
    assert debris.is_file()  # nothing swept: nothing may be written
    with Project.open(project_folder) as project:  # the lock was not leaked; the setting was not kept
        assert project.setting("query_strategy") != "margins"


def test_status_and_export_of_a_read_only_project(project_folder, read_only_lock, tmp_path, capsys):
    assert main(["status", str(project_folder), "--check"]) == 0
    out = capsys.readouterr().out
    assert "access:       read-only (read-only file system)" in out and "check:        ok" in out
    assert main(["export", str(project_folder), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "case_000_seg.nii.gz").is_file()


def test_retrain_of_a_read_only_project_is_refused_before_training(project_folder, read_only_lock, capsys):
    from test_faults import cli_error

    line = cli_error(capsys, ["retrain", project_folder, "--steps", "1"])
    assert "read-only (read-only file system); retraining is not possible" in line
    assert not (project_folder / "models").exists()


def test_a_database_without_write_permission_opens_read_only(project_folder, monkeypatch):
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if str(path).endswith(DB_NAME) and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    with Project.open(project_folder) as project:
        assert project.read_only == f"no write permission on {DB_NAME}"
        with pytest.raises(StorageError) as excinfo:
            submit_slice(project, slice_index=2, seed=3)
        assert "open read-only (no write permission on project.sqlite)" in one_line(excinfo)


def test_a_read_only_project_is_still_one_process_at_a_time(project_folder, read_only_lock):
    with Project.open(project_folder):
        with pytest.raises(AlsegError) as excinfo:
            Project.open(project_folder)
        assert "already open" in one_line(excinfo)


def test_an_older_schema_that_cannot_be_upgraded_read_only_is_one_line(project_folder, read_only_lock):
    import sqlite3

    from napari_alseg.store.schema import SCHEMA_VERSION

    conn = sqlite3.connect(project_folder / DB_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    conn.close()
    with pytest.raises(StorageError) as excinfo:
        Project.open(project_folder)
    assert "cannot be upgraded; open it once where it can be written" in one_line(excinfo)


# --------------------------------------------------------------------------- real read-only file systems

IN_READ_ONLY_MOUNT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])
    from napari_alseg.cli import main
    from napari_alseg.errors import AlsegError
    from napari_alseg.store import Project
    from test_store import submit_slice
    print("status", main(["status", sys.argv[1], "--check"]), flush=True)
    print("export", main(["export", sys.argv[1], sys.argv[2]]), flush=True)
    with Project.open(sys.argv[1]) as project:
        try:
            submit_slice(project, slice_index=2, seed=3)
        except AlsegError as exc:
            print("refused", exc, flush=True)
""")


def _mount_namespaces_work(tmp_path):
    if shutil.which("unshare") is None or os.name != "posix" or os.geteuid() != 0:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    result = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {probe} {probe} && "
                             f"mount -o remount,bind,ro {probe} {probe}"], capture_output=True, timeout=30)
    return result.returncode == 0


def test_a_project_on_a_read_only_mount(project_folder, tmp_path):
    if not _mount_namespaces_work(tmp_path):
        pytest.skip("needs root and mount namespaces (unshare -m) for a real read-only mount")
    folder = str(project_folder)
    command = (f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} {folder} && "
               f'exec "$0" -c "$1" {folder} {tmp_path / "out"} {os.path.dirname(__file__)}')
    result = subprocess.run(["unshare", "-m", "sh", "-c", command, sys.executable, IN_READ_ONLY_MOUNT],
                            capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    assert "status 0" in result.stdout and "export 0" in result.stdout, result.stdout + result.stderr
    assert "access:       read-only (read-only file system)" in result.stdout
    assert "refused" in result.stdout and "open read-only (read-only file system)" in result.stdout
    assert (tmp_path / "out" / "case_000_seg.nii.gz").is_file()
    assert not (project_folder / f"{DB_NAME}-shm").exists()  # nothing was written into the project


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_a_project_without_write_permission(project_folder, tmp_path, capsys):
    modes = {path: path.stat().st_mode for path in [project_folder, *project_folder.rglob("*")]}
    try:
        for path in modes:
            path.chmod(0o555 if path.is_dir() else 0o444)
        assert main(["status", str(project_folder)]) == 0
        assert "access:       read-only (" in capsys.readouterr().out
        assert main(["export", str(project_folder), str(tmp_path / "out")]) == 0
        with Project.open(project_folder) as project:
            with pytest.raises(StorageError) as excinfo:
                submit_slice(project, slice_index=2, seed=3)
            assert "open read-only" in one_line(excinfo)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_suggestions_of_a_read_only_project_are_served_not_recorded(project_folder, read_only_lock, capsys):
    from napari_alseg.store.records import ScoredItem

    assert main(["suggest", str(project_folder), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "engine: random" in out and "  1. case_" in out, out
    with Project.open(project_folder) as project:
        assert project.record_round("random", [ScoredItem("case_001", None, None, 0.5, {})]) == 0
        assert project.store_scores("v0001", [ScoredItem("case_001", None, None, 0.5, {})]) == 1
        assert project.rounds() == [] and project.latest_scores("v0001") == []


@pytest.mark.gui
def test_the_dock_opens_a_read_only_project_for_viewing(make_napari_viewer_proxy, qtbot, project_folder,
                                                        read_only_lock, monkeypatch):
    from napari_alseg import _widget

    shown = []
    for kind in ("error", "warning", "info"):
        monkeypatch.setattr(_widget, f"show_{kind}", lambda message, kind=kind: shown.append((kind, message)))
    dock = _widget.AlsegWidget(make_napari_viewer_proxy())
    qtbot.addWidget(dock)
    dock.controller.open_project(project_folder)
    try:
        assert dock.controller.session is not None
        assert dock.controller.session.catalog.read_only == "read-only file system"
        qtbot.waitUntil(lambda: bool(dock.controller.suggestions), timeout=20_000)
        assert not [message for kind, message in shown if kind == "error"], shown
    finally:
        dock.controller.close_project()
    errors = [message for kind, message in shown if kind == "error"]
    assert all("\n" not in message for message in errors), errors
