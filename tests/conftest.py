"""Shared fixtures: where real brain data lives, and the rule for when it may be missing."""

import os
from pathlib import Path

import pytest

MRICRON_TEMPLATES = Path(os.environ.get("ALSEG_MRICRON_DIR", "/usr/share/mricron/templates"))


@pytest.fixture
def mricron_dir() -> Path:
    """The Debian ``mricron-data`` templates (Colin27 + AAL).

    Skipped with the install hint when absent, except under ``CI=true``: there a
    missing package is a broken set-up and must fail, not hide behind a skip.
    """
    needed = [MRICRON_TEMPLATES / name for name in ("ch2bet.nii.gz", "aal.nii.gz")]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        message = f"mricron-data not installed (apt-get install -y mricron-data): missing {missing}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return MRICRON_TEMPLATES
