"""Model.detect_volume: `cryodet detect STACK --3d` on a volume read with mrcfile."""

import mrcfile
import pytest

from conftest import BOX_TOL, SCORE_TOL, assert_same_detections, f32_diff, read_json


def assert_same_objects(got, want):
    """Objects of detect_volume against NAME.objects.json's, one by one."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for k in ("id", "class_id", "class", "n_slices", "touches_first", "touches_last"):
            assert g[k] == w[k], (k, g, w)
        assert f32_diff(g["bbox3d"], w["bbox3d"]) <= BOX_TOL, (g, w)
        assert f32_diff([g["score"]], [w["score"]]) <= SCORE_TOL
        assert [s["z"] for s in g["slices"]] == [s["z"] for s in w["slices"]]
        for gs, ws in zip(g["slices"], w["slices"]):
            assert f32_diff(gs["bbox"], ws["bbox"]) <= BOX_TOL
            assert f32_diff([gs["score"]], [ws["score"]]) <= SCORE_TOL


def assert_same_slices(got, want):
    assert (got["width"], got["height"], got["depth"]) == (want["width"], want["height"], want["depth"])
    assert [s["z"] for s in got["slices"]] == [s["z"] for s in want["slices"]]
    for g, w in zip(got["slices"], want["slices"]):
        assert_same_detections(g["detections"], w["detections"])


def test_volume_gives_the_objects_of_detect_3d(tomogram, slice_model):
    """Acceptance: a 40-slice synthetic stack, memory-mapped by mrcfile, against
    `cryodet detect tomo.mrc --3d` (the shipped slice model, its 3D threshold, default linking)."""
    path, nm, out = tomogram
    want_objects = read_json(out / "tomo.objects.json")["objects"]
    assert len(want_objects) >= 3, "the synthetic tomogram has objects"
    with mrcfile.mmap(path, mode="r") as m:
        assert m.data.shape == (40, 768, 768)
        got = slice_model.detect_volume(m.data, pixel_size=nm)
    assert_same_slices(got, read_json(out / "tomo.json"))
    assert_same_objects(got["objects"], want_objects)


def test_stride_and_linking_options_are_the_cli_options(cli, tomogram, slice_model, tmp_path):
    path, nm, _ = tomogram
    cli("detect", path, "--3d", "--stride", "2", "--min-slices", "2", "--link-iou", "0.4", "--smooth", "3",
        "--merge-gap", "4", "--out", tmp_path)
    with mrcfile.open(path) as m:
        vol = m.data
    got = slice_model.detect_volume(vol, pixel_size=nm, stride=2, min_slices=2, link_iou=0.4, smooth=3, merge_gap=4)
    assert [s["z"] for s in got["slices"]] == list(range(0, 40, 2))
    assert_same_slices(got, read_json(tmp_path / "tomo.json"))
    want = read_json(tmp_path / "tomo.objects.json")["objects"]
    assert want
    assert_same_objects(got["objects"], want)


def test_without_linking_the_slices_are_the_same_and_objects_none(tomogram, slice_model):
    path, nm, out = tomogram
    with mrcfile.open(path) as m:
        vol = m.data[:6]
    got = slice_model.detect_volume(vol, pixel_size=nm, link=False)
    assert got["objects"] is None
    want = read_json(out / "tomo.json")
    assert_same_slices(got, {**want, "depth": 6, "slices": want["slices"][:6]})


def test_a_volume_section_equals_detect_with_the_3d_threshold(tomogram, slice_model):
    path, nm, out = tomogram
    with mrcfile.open(path) as m:
        section = m.data[17]
    want = read_json(out / "tomo.json")["slices"][17]
    assert want["z"] == 17
    thresh = float(slice_model.metadata["score_thresh_3d"])
    assert_same_detections(slice_model.detect(section, pixel_size=nm, score_thresh=thresh), want["detections"])
