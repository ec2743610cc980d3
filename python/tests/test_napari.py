"""The napari reader (cryodet/napari.yaml -> cryodet._napari), tested without napari."""

import importlib
import importlib.metadata
import importlib.resources
import json

import numpy as np

from cryodet import _napari
from conftest import EXAMPLE, read_json


def check_layer(layers, boxes, zs=None):
    """One Shapes layer of rectangles: corner k of box (x1, y1, x2, y2) at (y, x) - 0.5."""
    assert len(layers) == 1
    data, kwargs, kind = layers[0]
    assert kind == "shapes"
    assert kwargs["shape_type"] == "rectangle"
    assert len(data) == len(boxes) > 0
    for i, (rect, (x1, y1, x2, y2)) in enumerate(zip(data, boxes)):
        want = np.array([(y1, x1), (y1, x2), (y2, x2), (y2, x1)]) - 0.5
        if zs is not None:
            assert rect.shape == (4, 3) and kwargs["ndim"] == 3
            assert np.all(rect[:, 0] == zs[i])
            rect = rect[:, 1:]
        else:
            assert rect.shape == (4, 2) and kwargs["ndim"] == 2
        assert np.allclose(rect, want)
    return kwargs


def test_image_detections(cli, tmp_path):
    cli("detect", EXAMPLE, "--out", tmp_path)
    path = tmp_path / "example.json"
    reader = _napari.get_reader(str(path))
    assert reader is not None
    dets = read_json(path)["detections"]
    kwargs = check_layer(reader(str(path)), [d["box"] for d in dets])
    assert list(kwargs["properties"]["score"]) == [d["score"] for d in dets]


def test_stack_detections_and_objects(tomogram):
    _, _, out = tomogram
    stack = read_json(out / "tomo.json")
    boxes = [(d["box"], s["z"]) for s in stack["slices"] for d in s["detections"]]
    check_layer(_napari.get_reader(str(out / "tomo.json"))(str(out / "tomo.json")),
                [b for b, _ in boxes], [z for _, z in boxes])
    objects = read_json(out / "tomo.objects.json")["objects"]
    per_slice = [(s["bbox"], s["z"], o["id"]) for o in objects for s in o["slices"]]
    path = str(out / "tomo.objects.json")
    kwargs = check_layer(_napari.get_reader([path])(path), [b for b, _, _ in per_slice], [z for _, z, _ in per_slice])
    assert list(kwargs["properties"]["id"]) == [i for _, _, i in per_slice]
    # One colour per object.
    colors = {}
    for c, (_, _, i) in zip(kwargs["edge_color"], per_slice):
        assert colors.setdefault(i, c) == c


def test_other_files_are_not_read(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    assert _napari.get_reader(str(other)) is None
    assert _napari.get_reader(str(EXAMPLE)) is None
    assert _napari.get_reader(str(tmp_path / "missing.json")) is None
    assert _napari.get_reader([str(other), str(other)]) is None


def test_the_manifest_is_installed_and_points_at_the_reader():
    eps = importlib.metadata.entry_points(group="napari.manifest")
    ep = [e for e in eps if e.name == "cryodet"]
    assert len(ep) == 1 and ep[0].value == "cryodet:napari.yaml"
    text = importlib.resources.files("cryodet").joinpath("napari.yaml").read_text()
    assert "python_name: cryodet._napari:get_reader" in text
    assert 'filename_patterns: ["*.json"]' in text
    module, name = "cryodet._napari", "get_reader"
    assert getattr(importlib.import_module(module), name) is _napari.get_reader
