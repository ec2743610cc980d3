"""cryodet.evaluate: the metrics.json of `cryodet eval` from Python values."""

import json

import pytest

import cryodet
from conftest import EXAMPLE, read_json


@pytest.fixture(scope="module")
def detected(cli, tmp_path_factory):
    """`cryodet detect weights/example.png --score-thresh 0.05` (the whole PR curve)."""
    d = tmp_path_factory.mktemp("pred")
    cli("detect", EXAMPLE, "--score-thresh", "0.05", "--out", d)
    return d


@pytest.mark.parametrize(
    "cli_args, kwargs",
    [([], {}), (["--iou", "0.5,0.75", "--score-thresh", "0.3", "--table-iou", "0.5"],
                {"iou": (0.5, 0.75), "score_thresh": 0.3, "table_iou": 0.5})],
    ids=["defaults", "options"],
)
def test_evaluate_equals_the_metrics_json_of_cryodet_eval(cli, detected, tmp_path, cli_args, kwargs):
    cli("eval", "--gt", EXAMPLE.parent, "--pred", detected, "--out", tmp_path, *cli_args)
    want = read_json(tmp_path / "metrics.json")
    preds = {"example": read_json(detected / "example.json")}
    gt = {"example": cryodet.read_voc(EXAMPLE.with_suffix(".xml"))}
    got = cryodet.evaluate(preds, gt, **kwargs)
    assert want["overall"][0]["pooled"]["tp"] > 0
    # Same f32 inputs, same f64 arithmetic, both through serde_json: equal, not just close.
    assert got == want


def test_a_list_of_detections_is_the_same_as_the_json_record(detected):
    record = read_json(detected / "example.json")
    gt = {"example": cryodet.read_voc(EXAMPLE.with_suffix(".xml"))}
    assert cryodet.evaluate({"example": record["detections"]}, gt) == cryodet.evaluate({"example": record}, gt)


def test_groups_and_unmatched_predictions(detected):
    record = read_json(detected / "example.json")
    ann = cryodet.read_voc(EXAMPLE.with_suffix(".xml"))
    gt = {"tomo_a_001": ann, "tomo_b_001": {"objects": ann["objects"]}}
    preds = {"tomo_a_001": record, "tomo_b_001": [], "other": []}
    with pytest.warns(UserWarning, match="1 prediction"):
        m = cryodet.evaluate(preds, gt)
    assert [g["group"] for g in m["groups"]] == ["tomo_a", "tomo_b"]
    assert m["n_images"] == 2
    m = cryodet.evaluate({k: preds[k] for k in gt}, gt, groups={"tomo_a_001": "x", "tomo_b_001": "x"})
    assert [g["group"] for g in m["groups"]] == ["x"]
    # The image without detections: all its ground truth missed.
    b = [i for i in m["images"] if i["name"] == "tomo_b_001"][0]["summary"]
    assert b["tp"] == 0 and b["fn"] == len(ann["objects"])
