"""The current case as napari layers: channels, the labels being edited, the heat map.

Layers are named ``"<case> · <what>"`` so a user can tell them apart and the widget
can find and replace them; geometry (scale / translate in mm, and the rotation of a grid
turned about its slice axis) comes from the project, the same for every layer of a case
(:func:`case_geometry`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .._reader import display_range
from ..geometry import display_orientation, display_placement
from ..session.focus import HeatMapScale, heat_map_scale

if TYPE_CHECKING:
    from napari.components import Camera
    from napari.layers import Image, Labels, Layer, Shapes
    from napari.utils.colormaps import Colormap
    from napari.viewer import Viewer

    from ..domain import BBox
    from ..session import Session

AXIS_LABELS = ("slice", "row", "column")  # a case's (k, j, i) in the dims sliders
LABELS_ROLE = "labels"  # the metadata role of the Labels layer being edited
CHANNEL_ROLE = "channel"  # ... of an image channel of the case
HEAT_MAP_ROLE = "heat map"  # ... of the uncertainty heat map
# The heat map's colours, (value 0..1 of the range, RGBA): clear below the range, then red
# deepening to yellow but never more than 60 % opaque, so the anatomy under the doubt stays
# readable (an additive inferno washed a young model's brain to white, issue 22 item 9).
HEAT_MAP_COLOURS = ((0.0, (0.9, 0.1, 0.0, 0.0)), (0.25, (1.0, 0.25, 0.0, 0.3)),
                    (0.6, (1.0, 0.55, 0.0, 0.5)), (1.0, (1.0, 0.95, 0.2, 0.6)))
HEAT_MAP_COLORMAP_NAME = "alseg doubt"


class ShownCase(Protocol):
    """What the canvas reads of a case's record (the catalog's ``CaseRecord``): its grid,
    ``(k, j, i)`` voxels of ``spacing`` mm from ``origin`` mm, and its voxel-to-world affine."""

    @property
    def shape(self) -> tuple[int, int, int]: ...

    @property
    def spacing(self) -> tuple[float, float, float]: ...

    @property
    def origin(self) -> tuple[float, float, float]: ...

    @property
    def affine(self) -> np.ndarray: ...


class ShownClass(Protocol):
    """What a Labels layer shows of a class (the catalog's ``ClassInfo``): RGB 0-255 or None."""

    @property
    def id(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def color(self) -> tuple[int, int, int] | None: ...


def heat_map_colormap() -> Colormap:
    """napari's colormap of :data:`HEAT_MAP_COLOURS` (shown with translucent blending)."""
    from napari.utils.colormaps import Colormap

    return Colormap(colors=[rgba for _, rgba in HEAT_MAP_COLOURS], controls=[at for at, _ in HEAT_MAP_COLOURS],
                    name=HEAT_MAP_COLORMAP_NAME)


def layer_name(case: str, what: str) -> str:
    return f"{case} · {what}"


def case_geometry(record: ShownCase) -> dict[str, Any]:
    """napari's ``scale``, ``translate`` and ``rotate`` of a case: each voxel shown at the world
    position its files' affine gives, save a tilt out of the slice plane that napari's 2D view
    cannot follow (:func:`~napari_alseg.geometry.display_placement`; :func:`show_radiologically`
    says so on the canvas)."""
    rotate = display_placement(record.affine, record.shape).rotate
    return {"scale": tuple(record.spacing), "translate": tuple(record.origin), "rotate": rotate}


def place(layer: Layer, geometry: dict[str, Any]) -> None:
    """Move a layer kept for the next case to that case's :func:`case_geometry`."""
    layer.scale, layer.translate, layer.rotate = geometry["scale"], geometry["translate"], geometry["rotate"]


def owned_layers(viewer: Viewer) -> list[Layer]:
    return [layer for layer in viewer.layers if layer.metadata.get("alseg_case")]


def show_case(viewer: Viewer, session: Session, case: str, labels: np.ndarray) -> Labels:
    """This case's channels and a new editable Labels layer in place of the previous case's.

    The previous case's image layers are reused when the channel count matches (new data,
    geometry, name and contrast), and its Labels layer always (new data, geometry, name, its
    undo history emptied by :func:`forget_strokes`): adding and removing napari layers costs
    a few hundred ms each, most of Go on a CPU.
    """
    record = session.catalog.case(case)
    geometry = case_geometry(record)
    image = session.view.case_image(case)
    channels = [layer for layer in owned_layers(viewer) if layer.metadata.get("alseg_role") == CHANNEL_ROLE]
    reuse = len(channels) == len(record.channel_names)
    previous_labels = None
    for layer in owned_layers(viewer):
        role = layer.metadata.get("alseg_role")
        if role == REGION_ROLE:
            layer.visible = False  # kept for the next outline (show_region): a removal costs a gc pass
        elif role == LABELS_ROLE and previous_labels is None:
            previous_labels = layer
        elif not (reuse and layer in channels):
            viewer.layers.remove(layer)
    for index, (name, channel) in enumerate(zip(record.channel_names, image)):
        metadata = {"alseg_case": case, "alseg_role": CHANNEL_ROLE}
        limits = display_range(channel)
        if reuse:
            layer = channels[index]
            layer.data = channel
            place(layer, geometry)
            layer.contrast_limits_range = limits
            layer.contrast_limits = limits
            layer.name, layer.metadata = layer_name(case, name), metadata
        else:
            viewer.add_image(channel, name=layer_name(case, name), colormap="gray", contrast_limits=limits,
                             visible=index == 0, metadata=metadata, **geometry)
    data = labels.astype(session.catalog.label_dtype, copy=True)
    metadata = {"alseg_case": case, "alseg_role": LABELS_ROLE}
    if previous_labels is None:
        layer = viewer.add_labels(data, name=layer_name(case, "labels"), opacity=0.5, metadata=metadata, **geometry)
    else:
        layer = previous_labels
        layer.data = data
        place(layer, geometry)
        layer.name, layer.metadata = layer_name(case, "labels"), metadata
        forget_strokes(layer)
    apply_classes(layer, session.catalog.classes)
    layer.n_edit_dimensions = 2  # paint the slice on screen, never through the stack
    show_radiologically(viewer, record.affine, record.shape)
    return layer


def forget_strokes(layer: Labels) -> None:
    """Empty napari's undo history of a reused Labels layer, so Ctrl+Z never brings another
    case's strokes back: napari empties it when a layer stops being editable."""
    layer.editable = False
    layer.editable = True


def show_radiologically(viewer: Viewer, affine: np.ndarray, shape: tuple[int, ...] | None = None) -> None:
    """The slice view in radiological convention for a case with this voxel-to-world
    ``affine`` (:func:`~napari_alseg.geometry.display_orientation`), its letters on the canvas;
    with the case's ``(k, j, i)`` ``shape``, a grid tilted out of its slice plane is said there
    too (it is shown on its acquired slices, the tilt left out)."""
    orientation = display_orientation(affine)
    viewer_camera(viewer).orientation2d = (orientation.vertical, orientation.horizontal)
    viewer.dims.axis_labels = AXIS_LABELS  # napari's default names the slice slider "-3"
    overlay = viewer.text_overlay
    text = f"top {orientation.top} · bottom {orientation.bottom} · left {orientation.left} · right {orientation.right}"
    placement = None if shape is None else display_placement(affine, shape)
    half_voxel = 0.5 * float(np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0)).min())
    if placement is not None and placement.offset_mm > half_voxel:
        text += (f" · tilted {placement.tilt_degrees:.1f}° out of its slice plane: shown on its acquired "
                 f"slices, up to {placement.offset_mm:.1f} mm from their world position")
    overlay.text = text
    overlay.position = "top_left"
    overlay.visible = True


def write_undoably(layer: Labels, labels: np.ndarray) -> None:
    """The voxels where ``labels`` differ from the layer's, written as one napari undo step
    (``data_setitem`` keeps the history; assigning ``layer.data`` would not), so Ctrl+Z takes
    a tool's result back like a stroke."""
    changed = np.asarray(labels) != np.asarray(layer.data)
    if changed.any():
        layer.data_setitem(np.nonzero(changed), np.asarray(labels)[changed])


def apply_classes(layer: Labels, classes: Sequence[ShownClass]) -> None:
    """The project's classes on a Labels layer: their colours (napari's defaults for classes
    without one) and their names as the layer's ``features`` (``index``, ``class``), which
    napari's status bar shows for the label under the pointer."""
    from napari.utils.colormaps import DirectLabelColormap

    layer.features = {"index": np.array([info.id for info in classes]),
                      "class": np.array([info.name for info in classes], dtype=object)}
    colors: dict[int | None, tuple[float, ...]] = {
        info.id: tuple(c / 255 for c in info.color) + (1.0,) for info in classes if info.color and info.id}
    if colors:
        layer.colormap = DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), **colors})


def remove_heat_maps(viewer: Viewer) -> None:
    for layer in [layer for layer in owned_layers(viewer) if layer.metadata.get("alseg_role") == HEAT_MAP_ROLE]:
        viewer.layers.remove(layer)


def show_heat_map(viewer: Viewer, session: Session, case: str, values: np.ndarray,
                  scale: HeatMapScale | None = None) -> Image:
    """Uncertainty as a see-through red-to-yellow overlay (:data:`HEAT_MAP_COLOURS`) with napari's
    colour bar; the layer is reused between rounds. Contrast from the case's own doubtful voxels (:func:`heat_map_scale`), so
    a small lesion's doubt is bright rather than lost under a whole-volume range."""
    name = layer_name(case, "uncertainty")
    scale = scale or heat_map_scale(values)
    limits = (scale.low, scale.high)
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = values
        layer.contrast_limits = limits
    else:
        layer = viewer.add_image(values, name=name, colormap=heat_map_colormap(), blending="translucent",
                                 contrast_limits=limits, opacity=1.0,
                                 metadata={"alseg_case": case, "alseg_role": HEAT_MAP_ROLE},
                                 **case_geometry(session.catalog.case(case)))
    layer.colorbar.visible = True
    return layer


REGION_COLOR = "yellow"  # the suggested region's outline: visible on grey images and under the heat map


REGION_ROLE = "region"


def show_region(viewer: Viewer, session: Session, case: str, slice_index: int, bbox: BBox) -> Shapes:
    """Outline the suggested region (voxel bounds, half-open) on its slice: a Shapes rectangle
    on the pixel edges, in the case's geometry, on top of the case's layers. One layer serves
    every item (moved, renamed, its one rectangle replaced): napari runs a garbage-collection
    pass for each layer removed, ~0.1 s of Go on a CPU."""
    (_, _), (j0, j1), (i0, i1) = bbox
    name = layer_name(case, "suggested region")
    corners = np.array([[slice_index, j0 - 0.5, i0 - 0.5], [slice_index, j0 - 0.5, i1 - 0.5],
                        [slice_index, j1 - 0.5, i1 - 0.5], [slice_index, j1 - 0.5, i0 - 0.5]], dtype=float)
    record = session.catalog.case(case)
    metadata = {"alseg_case": case, "alseg_role": REGION_ROLE}
    kept = [layer for layer in owned_layers(viewer) if layer.metadata.get("alseg_role") == REGION_ROLE]
    if not kept or kept[0].nshapes != 1:
        for layer in kept:
            viewer.layers.remove(layer)
        return viewer.add_shapes([corners], shape_type="rectangle", edge_color=REGION_COLOR,
                                 face_color="transparent", edge_width=1.5, name=name, metadata=metadata,
                                 **case_geometry(record))
    layer = kept[0]
    geometry = case_geometry(record)
    place(layer, geometry)
    layer.data = [(corners, "rectangle")]  # one shape for one: its colours and width are kept
    layer.name, layer.metadata, layer.visible = name, metadata, True
    viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))  # above the new labels
    return layer


def jump_to(viewer: Viewer, session: Session, case: str, slice_index: int | None, bbox: BBox | None) -> None:
    """Show the slice and zoom the 2D view onto the bounding box (voxel bounds, half-open)."""
    record = session.catalog.case(case)
    spacing, origin = np.asarray(record.spacing), np.asarray(record.origin)
    viewer.dims.ndisplay = 2
    viewer.reset_view()
    if bbox is None:
        bbox = tuple((0, size) for size in record.shape)
    centre_voxel = np.array([(low + high - 1) / 2 for low, high in bbox])
    if slice_index is not None:
        centre_voxel[0] = slice_index
    rotate = case_geometry(record)["rotate"]  # about the slice axis only: the slice's world position stays
    centre_world = origin + rotate @ (centre_voxel * spacing)
    viewer.dims.set_point(0, centre_world[0])
    full = np.asarray(record.shape[1:]) * spacing[1:]
    box = np.maximum([(high - low) for low, high in bbox[1:]], 1) * spacing[1:]
    zoom_factor = float(np.clip(0.8 * np.min(full / box), 1.0, 8.0))  # some context around the box
    camera = viewer_camera(viewer)
    camera.center = tuple(centre_world[1:])
    camera.zoom = camera.zoom * zoom_factor


def viewer_camera(viewer: Viewer) -> Camera:
    """The viewer's camera: ``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before."""
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
