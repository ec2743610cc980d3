"""cryodet.read_voc / write_voc: LabelImg XML as the CLI reads and writes it."""

import math
import xml.etree.ElementTree as ET

import pytest

import cryodet
from conftest import EXAMPLE, read_json


def test_read_voc_gives_continuous_boxes():
    path = EXAMPLE.with_suffix(".xml")
    root = ET.parse(path).getroot()
    ann = cryodet.read_voc(path)
    assert ann["filename"] == root.findtext("filename")
    assert (ann["width"], ann["height"]) == (int(root.findtext("size/width")), int(root.findtext("size/height")))
    objs = root.findall("object")
    assert len(ann["objects"]) == len(objs) > 0
    for o, x in zip(ann["objects"], objs):
        b = [float(x.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        assert o["name"] == x.findtext("name")
        assert o["box"] == (b[0] - 1, b[1] - 1, b[2], b[3])
        assert o["difficult"] == (x.findtext("difficult") == "1")
        assert o["truncated"] == (x.findtext("truncated") == "1")


def test_write_voc_writes_what_detect_format_voc_writes(cli, tmp_path):
    cli("detect", "weights/example.png", "--format", "voc", "--out", tmp_path / "cli")
    dets = read_json(tmp_path / "cli" / "example.json")["detections"]
    assert dets
    out = tmp_path / "example.xml"
    cryodet.write_voc(out, dets, (1536, 1536), filename="example.png", image_path="weights/example.png")
    assert out.read_text() == (tmp_path / "cli" / "example.xml").read_text()
    back = cryodet.read_voc(out)
    for o, d in zip(back["objects"], dets):
        x1, y1, x2, y2 = d["box"]
        # Rust's f32::round: halves away from zero (the boxes are positive).
        assert o["box"] == tuple(float(math.floor(v + 0.5)) for v in (x1, y1, x2, y2))
        assert o["name"] == d["label"]


def test_write_voc_does_not_overwrite_silently(model, example, tmp_path):
    out = tmp_path / "x.xml"
    dets = model.detect(example)
    cryodet.write_voc(out, dets, example.shape)
    assert cryodet.read_voc(out)["filename"] == "x"
    before = out.read_text()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        cryodet.write_voc(out, [], example.shape)
    assert out.read_text() == before
    cryodet.write_voc(out, [], example.shape, overwrite=True)
    assert cryodet.read_voc(out)["objects"] == []
