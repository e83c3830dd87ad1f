"""The Qt/napari layer: turns session state into layers and controls, nothing more."""
