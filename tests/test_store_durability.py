"""Submitted work survives kills; one process per project; the training thread may read."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from napari_alseg.errors import AlsegError
from napari_alseg.nifti import save_volume
from napari_alseg.store import Project
from test_store import SHAPE, make_source, submit_slice

# Submits forever, printing "<event id> <slice> <seed> <sha256 of the submitted slice>" after
# each submit returns; the parent kills it mid-stream.
SUBMIT_LOOP = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    from napari_alseg.store import Project

    project = Project.open(sys.argv[1])
    print("ready", flush=True)
    seed = 0
    while True:
        slice_index = seed % {n_slices}
        labels = np.random.default_rng(seed).integers(0, 3, size={slice_shape}).astype(np.uint8)
        event_id = project.submit("case_000", labels, kind="manual", slice_index=slice_index,
                                  annotator="loop", seconds_active=1.0)
        print(event_id, slice_index, seed, hashlib.sha256(labels.tobytes()).hexdigest(), flush=True)
        seed += 1
""").format(n_slices=SHAPE[0], slice_shape=SHAPE[1:])

# Tries to open the project and prints the error it gets.
OPEN_ONCE = textwrap.dedent("""
    import sys
    from napari_alseg.errors import AlsegError
    from napari_alseg.store import Project
    try:
        Project.open(sys.argv[1]).close()
        print("opened")
    except AlsegError as exc:
        print(exc)
""")


@pytest.fixture
def project_folder(tmp_path):
    Project.create(tmp_path / "project", make_source(tmp_path / "source", n_cases=2)).close()
    return tmp_path / "project"


def run_python(script, *args):
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                          text=True, timeout=60, check=True).stdout.strip()


def submit_until_killed(project_folder, n_returned):
    """Run SUBMIT_LOOP, SIGKILL it after ``n_returned`` submits; every line it printed."""
    child = subprocess.Popen([sys.executable, "-c", SUBMIT_LOOP, str(project_folder)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        lines = [child.stdout.readline() for _ in range(n_returned)]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        lines += child.stdout.readlines()  # anything printed before the kill also returned
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return [line.split() for line in lines if line.endswith("\n")]


@pytest.mark.parametrize("n_returned", [3, 8])
def test_every_submit_that_returned_survives_sigkill(project_folder, n_returned):
    returned = []
    for _ in range(2):  # kill, reopen, kill again: the numbering must carry on cleanly
        returned += submit_until_killed(project_folder, n_returned)
    with Project.open(project_folder) as project:
        events = {event.id: event for event in project.events("case_000")}
        for event_id, slice_index, seed, digest in returned:
            event = events[int(event_id)]  # committed before submit returned
            version = project.labels_at("case_000", event.label_version)
            submitted = version.data[int(slice_index)]
            assert hashlib.sha256(submitted.tobytes()).hexdigest() == digest
            expected = np.random.default_rng(int(seed)).integers(0, 3, size=SHAPE[1:])
            np.testing.assert_array_equal(submitted, expected)
        last = project.current_labels("case_000")
        assert last.version >= len(returned)  # the submit in flight may or may not have landed
        files = sorted(p.name for p in (project_folder / "labels" / "case_000").iterdir())
        assert files == sorted(f"v{v:04d}{suffix}" for v in range(1, last.version + 1)
                               for suffix in (".nii.gz", ".json"))  # each version with its record
        submit_slice(project)
        assert project.current_labels("case_000").version == last.version + 1


def test_open_sweeps_temp_files_and_keeps_uncommitted_versions_aside(project_folder):
    with Project.open(project_folder) as project:
        submit_slice(project)
        case = project.case("case_000")
    folder = project_folder / "labels" / "case_000"
    # what a kill between "file renamed" and "row committed" leaves, plus a half-written temp
    save_volume(folder / "v0002.nii.gz", np.ones(SHAPE, np.uint8), case.source_affine, is_label=True)
    (folder / ".v0003.nii.gz.abcd.tmp.nii.gz").write_bytes(b"half")
    (folder / "notes.txt").write_text("not ours, left alone")
    with Project.open(project_folder) as project:
        assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "v0001.json", "v0001.nii.gz"]
        assert (project_folder / "recovered" / "labels" / "case_000" / "v0002.nii.gz").is_file()  # kept
        assert project.current_labels("case_000").version == 1
        submit_slice(project, seed=5)
        assert project.current_labels("case_000").version == 2


def test_a_failed_label_write_records_nothing(project_folder, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with Project.open(project_folder) as project:
        with monkeypatch.context() as patched:
            patched.setattr("napari_alseg.store.labels.save_volume", disk_full)
            with pytest.raises(AlsegError, match="v0001.nii.gz: cannot write the label file .disk full"):
                submit_slice(project)
        assert project.events() == [] and project.current_labels("case_000") is None
        submit_slice(project)
        assert project.current_labels("case_000").version == 1


def test_a_failed_commit_removes_the_label_file_it_wrote(project_folder):
    with Project.open(project_folder) as project:
        project._db.connection().execute(
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'refused'); END")
        with pytest.raises(Exception, match="refused"):
            submit_slice(project)
        assert project.current_labels("case_000") is None
        assert list((project_folder / "labels" / "case_000").iterdir()) == []


def test_a_second_process_gets_a_clear_lock_error_naming_the_holder(project_folder):
    with Project.open(project_folder):
        message = run_python(OPEN_ONCE, project_folder)
        assert "project is already open in another process" in message
        assert f"PID {os.getpid()}" in message
    assert run_python(OPEN_ONCE, project_folder) == "opened"


def test_same_process_reopen_after_close_but_not_twice_at_once(project_folder):
    project = Project.open(project_folder)
    with pytest.raises(AlsegError, match=r"already open in this process \(PID"):
        Project.open(project_folder)
    project.close()
    project.close()  # idempotent
    with pytest.raises(AlsegError, match="project is closed"):
        project.events()
    with Project.open(project_folder) as again:
        assert again.events() == []


def test_the_training_thread_reads_while_the_annotator_submits(project_folder):
    seen_versions, errors = [], []
    done = threading.Event()
    with Project.open(project_folder) as project:
        def train():
            try:
                while not done.is_set():
                    snapshot = project.current_labels("case_000")
                    if snapshot is not None:
                        assert snapshot.labelled.shape == snapshot.data.shape
                        seen_versions.append(snapshot.version)
            except Exception as exc:  # surfaced in the main thread below
                errors.append(exc)

        reader = threading.Thread(target=train)
        reader.start()
        for seed in range(10):
            submit_slice(project, slice_index=seed % SHAPE[0], seed=seed)
        done.set()
        reader.join(timeout=30)
    assert errors == []
    assert seen_versions == sorted(seen_versions)
