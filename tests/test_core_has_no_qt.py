"""The core must import without Qt, napari's Qt layer or magicgui (STYLE: keep them apart)."""

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import napari_alseg

# Modules allowed to touch Qt / napari: the thin UI layer.
UI_MODULES = {"napari_alseg._widget"}
UI_PACKAGE = "napari_alseg._qt"
FORBIDDEN = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "napari.qt", "napari._qt")


def core_modules():
    names = [m.name for m in pkgutil.walk_packages(napari_alseg.__path__, "napari_alseg.")]
    return sorted(name for name in names
                  if name not in UI_MODULES and name.split(".")[:2] != UI_PACKAGE.split("."))


def test_core_imports_no_qt():
    modules = core_modules()
    assert "napari_alseg.nifti" in modules and "napari_alseg.cli" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r}))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"core pulled in: {result.stdout.strip()}"


def test_cli_help_does_not_import_torch_or_napari():
    script = (
        "import sys\n"
        "from napari_alseg.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print(','.join(m for m in ('torch', 'monai', 'napari') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_import_linter_forbids_qt_in_every_core_module():
    """A new top-level core module must join the contract's list, or lint-imports never checks it."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    listed = next(set(c["source_modules"]) for c in contracts if "qtpy" in c.get("forbidden_modules", ()))
    top_level = {".".join(name.split(".")[:2]) for name in core_modules()}
    assert sorted(top_level - listed) == []
