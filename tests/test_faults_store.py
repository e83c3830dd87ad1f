"""Faults of issue 23 in the project store, reader and CLI: one line each, nothing lost or deleted.

A lost WAL (acknowledged label files kept aside, never deleted), a racing create (a second
process), unreadable JSON in a valid database (a crafted record), a 0-byte database, the
napari reader on a FIFO, and ``alseg status | head``.
"""

import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from napari_alseg.cli import main
from napari_alseg.errors import AlsegError, DamagedProjectError
from napari_alseg.store import DB_NAME, Project
from test_faults import cli_error, one_line
from test_store import make_source, submit_slice

RECOVERED = "recovered"


@pytest.fixture
def project_folder(tmp_path):
    Project.create(tmp_path / "project", make_source(tmp_path / "source", n_cases=2)).close()
    return tmp_path / "project"


# --------------------------------------------------------------------------- lost WAL (item 1)

# Submits 3 slices (each acknowledged) and dies by SIGKILL before any checkpoint of the WAL.
SUBMIT_THEN_DIE = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from napari_alseg.store import Project
    from test_store import submit_slice
    project = Project.open(sys.argv[1])
    for seed in range(3):
        submit_slice(project, slice_index=seed, seed=seed)
    print("acknowledged", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def _submit_and_lose_the_wal(folder):
    tests_dir = os.path.dirname(__file__)
    run = subprocess.run([sys.executable, "-c", SUBMIT_THEN_DIE, str(folder), tests_dir],
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "acknowledged", run.stderr
    assert (folder / f"{DB_NAME}-wal").is_file()  # the 3 commits live only there
    (folder / f"{DB_NAME}-wal").unlink()  # a backup that left out *-wal
    (folder / f"{DB_NAME}-shm").unlink(missing_ok=True)
    return [f"labels/case_000/v{v:04d}.nii.gz" for v in (1, 2, 3)]


def test_a_lost_wal_never_deletes_acknowledged_label_files(project_folder, caplog, capsys):
    kept = _submit_and_lose_the_wal(project_folder)
    contents = {name: (project_folder / name).read_bytes() for name in kept}
    with caplog.at_level(logging.WARNING), Project.open(project_folder) as project:
        assert project.current_labels("case_000") is None  # SQLite cannot know them
    lines = [r.getMessage() for r in caplog.records if RECOVERED in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert "3 label file(s)" in lines[0] and f"{RECOVERED}/" in lines[0] and "restore" in lines[0]
    for name in kept:  # kept, byte for byte, in the quarantine folder
        assert (project_folder / RECOVERED / name).read_bytes() == contents[name]
    with Project.open(project_folder):  # a second open keeps them too
        pass
    for name in kept:
        assert (project_folder / RECOVERED / name).is_file()
    message = cli_error(capsys, ["status", project_folder, "--check"])
    assert "3 problem(s)" in message


def test_status_check_lists_the_kept_files(project_folder, capsys):
    kept = _submit_and_lose_the_wal(project_folder)
    Project.open(project_folder).close()
    assert main(["status", str(project_folder), "--check"]) == 2
    captured = capsys.readouterr()
    for name in kept:
        assert any(name in line and RECOVERED in line for line in captured.out.splitlines()
                   if line.startswith("problem:")), captured.out
    assert len(captured.err.strip().splitlines()) == 1


def test_close_checkpoints_the_wal(project_folder):
    with Project.open(project_folder) as project:
        submit_slice(project)
        assert (project_folder / f"{DB_NAME}-wal").stat().st_size > 0
    wal = project_folder / f"{DB_NAME}-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    (project_folder / f"{DB_NAME}-wal").unlink(missing_ok=True)  # project.sqlite alone is complete
    with Project.open(project_folder) as project:
        assert project.current_labels("case_000").version == 1


# --------------------------------------------------------------------------- racing create (item 3)


def _racing_create(folder, source, barrier, results):
    """One of two creators; both claim the folder at the same moment (the barrier)."""
    try:
        Project.create(folder, source, before_writing=lambda plan: barrier.wait(timeout=60)).close()
        results.put("created")
    except AlsegError as exc:
        results.put(f"error: {exc}")
    except BaseException as exc:  # noqa: BLE001 -- reported to the parent, asserted below
        results.put(f"crash: {type(exc).__name__}: {exc}")


@pytest.mark.parametrize("attempt", range(3))
def test_a_racing_create_never_removes_the_winners_folder(tmp_path, attempt):
    source = make_source(tmp_path / "source", n_cases=2)
    folder = tmp_path / "new" / "project"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    creators = [context.Process(target=_racing_create, args=(folder, source, barrier, results))
                for _ in range(2)]
    for creator in creators:
        creator.start()
    outcomes = sorted(results.get(timeout=120) for _ in creators)
    for creator in creators:
        creator.join(timeout=60)
    assert outcomes[0] == "created", outcomes
    assert outcomes[1].startswith("error: ") and "\n" not in outcomes[1], outcomes
    with Project.open(folder) as project:  # the winner's project survives whole
        assert [case.name for case in project.cases] == ["case_000", "case_001"]


def test_a_failed_create_removes_only_the_folder_it_made(tmp_path):
    source = make_source(tmp_path / "source", n_cases=2)
    folder = tmp_path / "fresh"

    def refuse(plan):
        raise AlsegError("refused")

    with pytest.raises(AlsegError, match="refused"):
        Project.create(folder, source, before_writing=refuse)
    assert not folder.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    real_init = Project.__init__

    def broken_init(self, *args):
        raise AlsegError("broken")

    Project.__init__ = broken_init
    try:
        with pytest.raises(AlsegError, match="broken"):
            Project.create(existing, source)
    finally:
        Project.__init__ = real_init
    assert (existing / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- unreadable JSON (item 4)


def _spoil(folder, sql):
    import sqlite3

    conn = sqlite3.connect(folder / DB_NAME)
    with conn:
        conn.execute(sql)
    conn.close()


@pytest.fixture
def spoiled_project(project_folder):
    """A sound database holding one unreadable checkpoint metrics and one bad quality features."""
    import numpy as np

    from napari_alseg.domain import QueryItem

    checkpoint = project_folder / "models" / "v0001.pt"
    with Project.open(project_folder) as project:  # open sweeps unrecorded checkpoints: write after
        checkpoint.parent.mkdir(exist_ok=True)
        checkpoint.write_bytes(b"not a checkpoint: --check lists it as well")
        project.record_checkpoint("v0001", checkpoint, metrics={"dice": 0.5})
        project.store_quality_examples([(QueryItem("case_000", 1, None), np.zeros(3), 0.4)],
                                       model_version="v0001")
    _spoil(project_folder, "UPDATE checkpoints SET metrics = '{oops'")
    _spoil(project_folder, "UPDATE quality_examples SET features = '[1, 2'")
    return project_folder


def test_unreadable_checkpoint_metrics_is_a_damaged_record_line(spoiled_project):
    with Project.open(spoiled_project) as project:
        with pytest.raises(DamagedProjectError) as excinfo:
            project.checkpoints()
    message = one_line(excinfo)
    assert "damaged record" in message and "table checkpoints" in message and "row 1" in message


def test_unreadable_quality_features_is_a_damaged_record_line(spoiled_project):
    with Project.open(spoiled_project) as project:
        with pytest.raises(DamagedProjectError) as excinfo:
            project.quality_examples()
    message = one_line(excinfo)
    assert "damaged record" in message and "table quality_examples" in message and "row 1" in message


def test_status_check_runs_to_the_end_and_lists_damaged_records(spoiled_project, capsys):
    assert main(["status", str(spoiled_project), "--check"]) == 2
    captured = capsys.readouterr()
    problems = [line for line in captured.out.splitlines() if line.startswith("problem:")]
    assert any("table checkpoints row 1" in line for line in problems), captured.out
    assert any("table quality_examples row 1" in line for line in problems), captured.out
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1


def test_plain_status_on_a_damaged_record_is_one_line(spoiled_project, capsys):
    assert "damaged record" in cli_error(capsys, ["status", spoiled_project])


# --------------------------------------------------------------------------- 0-byte database (item 9)


def test_a_zero_byte_database_is_refused_with_nothing_written(project_folder, capsys):
    database = project_folder / DB_NAME
    database.write_bytes(b"")
    with pytest.raises(DamagedProjectError) as excinfo:
        Project.open(project_folder)
    message = one_line(excinfo)
    assert "KeyError" not in message and "0 bytes" in message
    assert database.stat().st_size == 0
    assert "0 bytes" in cli_error(capsys, ["status", project_folder])
    assert database.stat().st_size == 0


def test_a_database_without_tables_is_refused_with_nothing_written(project_folder):
    import sqlite3

    database = project_folder / DB_NAME
    database.unlink()
    conn = sqlite3.connect(database)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("DROP TABLE t")  # a valid SQLite file that holds no project
    conn.close()
    before = database.read_bytes()
    with pytest.raises(DamagedProjectError) as excinfo:
        Project.open(project_folder)
    assert "KeyError" not in one_line(excinfo)
    assert database.read_bytes() == before


# --------------------------------------------------------------------------- reader on a FIFO (item 6)


def test_the_reader_does_not_claim_or_hang_on_a_fifo(tmp_path):
    from napari_alseg._reader import napari_get_reader, read_nifti

    fifo = tmp_path / "pipe.nii.gz"
    os.mkfifo(fifo)
    outcome = {}

    def attempt():
        outcome["reader"] = napari_get_reader(str(fifo))
        try:
            read_nifti(str(fifo))
        except AlsegError as exc:
            outcome["error"] = str(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # unblock the hung open so the thread can end
        with open(fifo, "wb"):
            pass
        pytest.fail("the reader hung on a FIFO")
    assert outcome["reader"] is None
    assert "\n" not in outcome["error"] and "not a regular file" in outcome["error"]


# --------------------------------------------------------------------------- broken pipe (item 13)


def test_status_into_a_closed_pipe_prints_no_traceback(project_folder):
    script = ("import sys; from napari_alseg.cli import main; sys.exit(main(sys.argv[1:]))")
    status = subprocess.Popen([sys.executable, "-c", script, "status", str(project_folder)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    status.stdout.close()  # `| head -0`: the reader is gone before anything is printed
    err = status.stderr.read().decode()
    status.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_a_create_that_finished_first_is_never_removed(tmp_path, monkeypatch):
    """We claim the folder, but the other creator takes the lock, writes and closes first."""
    from napari_alseg.store.lock import ProjectLock

    source = make_source(tmp_path / "source", n_cases=2)
    folder = tmp_path / "project"
    real_acquire = ProjectLock.acquire.__func__

    def other_creator_first(cls, *args, **kwargs):
        monkeypatch.setattr(ProjectLock, "acquire", classmethod(real_acquire))
        Project.create(folder, source, annotator="winner").close()
        return real_acquire(cls, *args, **kwargs)

    monkeypatch.setattr(ProjectLock, "acquire", classmethod(other_creator_first))
    with pytest.raises(AlsegError) as excinfo:
        Project.create(folder, source, annotator="loser")
    assert "already holds a project" in one_line(excinfo)
    with Project.open(folder) as project:
        assert len(project.cases) == 2
