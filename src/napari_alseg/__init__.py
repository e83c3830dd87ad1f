"""napari-alseg: active-learning segmentation of medical images in napari.

The package root imports nothing heavy: napari, Qt, torch and MONAI are imported by
the modules that need them, so ``alseg --help`` and napari's start-up stay fast.
"""

__version__ = "0.1.0"
