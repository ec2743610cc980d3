"""Every error path of the package: core errors carry the CLI's one-line message; wrong types,
dtypes and shapes name what was expected."""

import json
import math

import numpy as np
import pytest

import cryodet
from conftest import EXAMPLE, ROOT, cli_error


# --- the same one-line message as the CLI -----------------------------------------------------

def test_missing_weight_file(cli, tmp_path):
    missing = tmp_path / "missing.safetensors"
    want = cli_error(cli("detect", EXAMPLE, "--weights", missing, "--out", tmp_path, check=False))
    with pytest.raises(FileNotFoundError) as e:
        cryodet.load_model(missing)
    assert str(e.value) == want
    assert str(missing) in want


def test_a_file_that_is_not_a_weight_file(cli, tmp_path):
    want = cli_error(cli("detect", EXAMPLE, "--weights", EXAMPLE, "--out", tmp_path, check=False))
    with pytest.raises(ValueError) as e:
        cryodet.load_model(EXAMPLE)
    assert str(e.value) == want
    assert "safetensors" in want


@pytest.mark.parametrize(
    "cli_args, kwargs",
    [(["--pixel-size", "0"], {"pixel_size": 0.0}), (["--score-thresh", "NaN"], {"score_thresh": math.nan})],
    ids=["pixel-size", "score-thresh"],
)
def test_bad_option_values(cli, model, example, tmp_path, cli_args, kwargs):
    want = cli_error(cli("detect", EXAMPLE, "--out", tmp_path, *cli_args, check=False))
    with pytest.raises(ValueError) as e:
        model.detect(example, **kwargs)
    assert str(e.value) == want
    with pytest.raises(ValueError) as e:
        model.detect_volume(example[None, :64, :64], **kwargs)
    assert str(e.value) == want


def test_bad_linking_option(cli, slice_model, tmp_path):
    stack = tmp_path / "s.json"
    stack.write_text(json.dumps({"image": "s.mrc", "width": 8, "height": 8, "depth": 1, "slices": []}))
    want = cli_error(cli("link", stack, "--link-iou", "0", "--out", tmp_path, check=False))
    with pytest.raises(ValueError) as e:
        slice_model.detect_volume(np.zeros((2, 8, 8), np.float32), link_iou=0.0)
    assert str(e.value) == want
    for bad in ({"merge_iou": -1.0}, {"fragment_overlap": math.inf}):
        with pytest.raises(ValueError, match="must be a positive number"):
            slice_model.detect_volume(np.zeros((2, 8, 8), np.float32), **bad)


def test_bad_iou_threshold_of_evaluate(cli, tmp_path):
    want = cli_error(cli("eval", "--gt", EXAMPLE.parent, "--pred", tmp_path, "--iou", "1.5", check=False))
    with pytest.raises(ValueError) as e:
        cryodet.evaluate({"a": []}, {"a": {"objects": []}}, iou=[1.5])
    assert str(e.value) == want


def test_malformed_xml(cli, tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir()
    bad = gt / "x.xml"
    bad.write_text("<annotation><filename>x.png</filename>")
    want = cli_error(cli("eval", "--gt", gt, "--pred", tmp_path, check=False))
    with pytest.raises(ValueError) as e:
        cryodet.read_voc(bad)
    assert str(e.value) == want
    assert "malformed XML" in want


def test_missing_xml(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.xml"):
        cryodet.read_voc(tmp_path / "nothere.xml")


# --- non-finite pixels --------------------------------------------------------------------------

def test_nan_image_raises_unless_masked(model, example):
    img = example[:256, :256].astype(np.float32)
    img[3, 4] = np.nan
    with pytest.raises(ValueError) as e:
        model.detect(img)
    msg = str(e.value)
    assert msg.startswith("image: 1 non-finite pixel(s) (NaN/Inf), first at (y=3, x=4) = NaN")
    assert "mask_nonfinite=True" in msg
    # Masked: the pixel takes the (lower) median of the finite pixels, with a warning.
    finite = np.sort(img[np.isfinite(img)])
    filled = img.copy()
    filled[3, 4] = finite[(finite.size - 1) // 2]
    with pytest.warns(UserWarning, match="image: 1 NaN/Inf pixel"):
        got = model.detect(img, mask_nonfinite=True, score_thresh=0.05)
    assert got == model.detect(filled, score_thresh=0.05)


def test_an_image_without_a_finite_pixel(model):
    with pytest.raises(ValueError, match="no finite pixel"):
        model.detect(np.full((8, 8), np.inf, np.float32), mask_nonfinite=True)


def test_nan_in_a_volume_names_the_slice(slice_model, example):
    vol = np.stack([example[:64, :64]] * 5).astype(np.float32)
    vol[3, 10, 20] = -np.inf
    with pytest.raises(ValueError) as e:
        slice_model.detect_volume(vol)
    assert str(e.value).startswith("volume: slice 3: 1 non-finite pixel(s) (NaN/Inf), first at (y=10, x=20) = -inf")
    with pytest.warns(UserWarning, match="volume: slice 3: 1 NaN/Inf"):
        slice_model.detect_volume(vol, mask_nonfinite=True)


# --- types, dtypes, shapes ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.int8, np.bool_, np.complex64])
def test_wrong_dtype_names_the_accepted_ones(model, slice_model, dtype):
    with pytest.raises(TypeError) as e:
        model.detect(np.zeros((8, 8), dtype))
    assert "uint8, uint16, int16 or float32" in str(e.value)
    assert np.dtype(dtype).name in str(e.value)
    with pytest.raises(TypeError, match="uint8, uint16, int16 or float32"):
        slice_model.detect_volume(np.zeros((2, 8, 8), dtype))


def test_non_native_byte_order_is_refused(model):
    with pytest.raises(TypeError, match="native byte order"):
        model.detect(np.zeros((8, 8), np.dtype(">u2") if np.little_endian else np.dtype("<u2")))


@pytest.mark.parametrize("obj", [[[1, 2], [3, 4]], "image.png", None])
def test_not_an_array(model, obj):
    with pytest.raises(TypeError, match="expected a numpy.ndarray"):
        model.detect(obj)


@pytest.mark.parametrize("shape", [(8,), (2, 8, 8), (1, 1, 8, 8)])
def test_detect_needs_2d(model, shape):
    with pytest.raises(ValueError, match=r"image: expected a 2-D array \(rows, columns\)"):
        model.detect(np.zeros(shape, np.float32))


@pytest.mark.parametrize("shape", [(8, 8), (1, 2, 8, 8)])
def test_detect_volume_needs_3d(slice_model, shape):
    with pytest.raises(ValueError, match=r"volume: expected a 3-D array \(z, rows, columns\)"):
        slice_model.detect_volume(np.zeros(shape, np.float32))


@pytest.mark.parametrize("shape", [(1, 8), (8, 1), (0, 0)])
def test_an_image_smaller_than_2x2(model, shape):
    with pytest.raises(ValueError, match="need at least 2x2"):
        model.detect(np.zeros(shape, np.uint8))


def test_bad_threads_stride_and_keywords(model, slice_model, example):
    with pytest.raises(ValueError, match="threads must be at least 1"):
        model.detect(example[:64, :64], threads=0)
    vol = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(ValueError, match="stride must be at least 1"):
        slice_model.detect_volume(vol, stride=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'link_iuo'"):
        slice_model.detect_volume(vol, link_iuo=0.5)
    with pytest.raises(TypeError):
        slice_model.detect_volume(vol, max_gap="two")
    with pytest.raises(TypeError):
        model.detect(example, pixel_size="2.5 nm")
    with pytest.raises(OverflowError):
        model.detect(example, threads=-1)


# --- evaluate and VOC inputs --------------------------------------------------------------------

GT = {"a": {"width": 100, "height": 100, "objects": [{"name": "mitochondria", "box": (10, 10, 50, 50)}]}}
DET = {"box": (10, 10, 50, 50), "score": 0.9, "label": "mitochondria", "class_id": 1}


def test_evaluate_input_errors():
    assert cryodet.evaluate({"a": [DET]}, GT)["overall"][0]["pooled"]["tp"] == 1
    with pytest.raises(ValueError, match="no detections for ground-truth image 'a'"):
        cryodet.evaluate({"b": [DET]}, GT)
    with pytest.raises(ValueError, match="ground_truth: no image"):
        cryodet.evaluate({}, {})
    with pytest.raises(ValueError, match=r"predictions\['a'\]\[0\]: missing key 'score'"):
        cryodet.evaluate({"a": [{"box": (0, 0, 1, 1), "label": "m"}]}, GT)
    with pytest.raises(ValueError, match="expected 4 numbers"):
        cryodet.evaluate({"a": [{**DET, "box": (0, 0, 1)}]}, GT)
    with pytest.raises(ValueError, match="x1 <= x2"):
        cryodet.evaluate({"a": [{**DET, "box": (5, 0, 1, 1)}]}, GT)
    with pytest.raises(ValueError, match="finite"):
        cryodet.evaluate({"a": [{**DET, "score": math.nan}]}, GT)
    with pytest.raises(TypeError, match="expected a list of detection dicts"):
        cryodet.evaluate({"a": 3}, GT)
    with pytest.raises(ValueError, match="missing key 'objects'"):
        cryodet.evaluate({"a": [DET]}, {"a": {"width": 3}})
    with pytest.raises(ValueError, match="groups: image 'a' is not listed"):
        cryodet.evaluate({"a": [DET]}, GT, groups={"b": "g"})
    with pytest.raises(TypeError):
        cryodet.evaluate([DET], GT)
    with pytest.raises(ValueError, match="--coco-max-dets must be at least 1"):
        cryodet.evaluate({"a": [DET]}, GT, coco_max_dets=0)


def test_write_voc_input_errors(tmp_path):
    with pytest.raises(ValueError, match=r"image_shape: expected \(rows, columns\)"):
        cryodet.write_voc(tmp_path / "x.xml", [DET], (100, 100, 3))
    with pytest.raises(ValueError, match=r"detections\[0\]: missing key 'label'"):
        cryodet.write_voc(tmp_path / "x.xml", [{"box": (0, 0, 1, 1), "score": 1.0}], (100, 100))
    assert not (tmp_path / "x.xml").exists()
    with pytest.raises(FileNotFoundError):
        cryodet.write_voc(tmp_path / "no" / "dir" / "x.xml", [DET], (100, 100))
