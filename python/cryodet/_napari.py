"""napari reader of cryodet's detection files (manifest: napari.yaml), without importing napari.

* ``NAME.json`` of an image (``detections``): one 2-D rectangle per detection;
* ``NAME.json`` of a stack (``slices``): one rectangle per detection on its slice ``z``;
* ``NAME.objects.json`` (``objects``): one rectangle per object and linked slice.

Each file gives one Shapes layer ``(data, kwargs, "shapes")``: ``data`` is a list of ``(4, 2)``
arrays ``(row, column)`` or ``(4, 3)`` arrays ``(z, row, column)``, the corners
``(y1, x1), (y1, x2), (y2, x2), (y2, x1)`` of each box; ``kwargs["shape_type"] == "rectangle"``.
cryodet's pixel ``i`` spans ``[i, i + 1)`` while napari centres pixel ``i`` on ``i``, so corners
are shifted by -0.5 to lie on the image's pixel edges. ``properties`` hold ``score`` and
``label`` (objects: ``id``, ``class``, ``score``).
"""

import json
from pathlib import Path

import numpy as np

#: Edge colours of objects, by id (cycled), and of plain detections.
OBJECT_COLORS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6"]
DETECTION_COLOR = "#2870ff"


def _load(path):
    """The file's JSON if it is a cryodet detection or objects file, else None."""
    if not isinstance(path, (str, Path)) or not str(path).endswith(".json"):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if "objects" in data or "slices" in data or "detections" in data:
        return data
    return None


def get_reader(path):
    """napari's reader hook: a reader function for a cryodet JSON file, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return reader if _load(path) is not None else None


def corners(box, z=None):
    """The 4 corners of ``box = (x1, y1, x2, y2)`` as napari rows ``(y, x)`` or ``(z, y, x)``."""
    x1, y1, x2, y2 = (float(v) - 0.5 for v in box)
    rows = [(y1, x1), (y1, x2), (y2, x2), (y2, x1)]
    if z is not None:
        rows = [(float(z), y, x) for y, x in rows]
    return np.array(rows)


def reader(path):
    """The Shapes layer of one cryodet JSON file (see the module doc)."""
    if isinstance(path, list):
        path = path[0]
    data = _load(path)
    if data is None:
        raise ValueError(f"{path}: not a cryodet detection file")
    shapes, props, colors = [], {}, []

    def add(box, z, color, **p):
        shapes.append(corners(box, z))
        colors.append(color)
        for k, v in p.items():
            props.setdefault(k, []).append(v)

    if "objects" in data:
        for o in data["objects"]:
            color = OBJECT_COLORS[(int(o["id"]) - 1) % len(OBJECT_COLORS)]
            for s in o["slices"]:
                add(s["bbox"], s["z"], color, id=o["id"], **{"class": o["class"]}, score=s["score"])
    elif "slices" in data:
        for s in data["slices"]:
            for d in s["detections"]:
                add(d["box"], s["z"], DETECTION_COLOR, label=d["label"], score=d["score"])
    else:
        for d in data["detections"]:
            add(d["box"], None, DETECTION_COLOR, label=d["label"], score=d["score"])
    kwargs = {
        "name": Path(path).name,
        "shape_type": "rectangle",
        "ndim": 2 if "detections" in data and "objects" not in data else 3,
        "edge_color": colors or DETECTION_COLOR,
        "face_color": "transparent",
        "edge_width": 2,
        "properties": {k: np.array(v) for k, v in props.items()},
    }
    return [(shapes, kwargs, "shapes")]
