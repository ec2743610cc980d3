"""Model.detect: the CLI's detections on the same pixels, any dtype and layout, without the GIL."""

import threading
import time

import numpy as np
import pytest

import cryodet
from conftest import EXAMPLE, assert_same_detections, read_json


@pytest.mark.parametrize(
    "cli_args, kwargs",
    [
        ([], {}),
        (["--pixel-size", "1.0"], {"pixel_size": 1.0}),
        (["--no-preprocess", "--score-thresh", "0.2"], {"preprocess": False, "score_thresh": 0.2}),
    ],
    ids=["defaults", "pixel-size", "no-preprocess"],
)
def test_detections_equal_the_cli_on_the_shipped_example(cli, model, example, tmp_path, cli_args, kwargs):
    """Acceptance: `cryodet detect weights/example.png` (the shipped default model) against
    `load_model().detect(image read with PIL)` with the same options."""
    cli("detect", EXAMPLE, "--out", tmp_path, *cli_args)
    want = read_json(tmp_path / "example.json")
    assert (want["height"], want["width"]) == example.shape
    assert want["detections"], "the example has mitochondria"
    assert_same_detections(model.detect(example, **kwargs), want["detections"])


def test_detections_are_the_cli_json_records(model, example):
    d = model.detect(example)
    assert d and all(set(x) == {"box", "score", "label", "class_id"} for x in d)
    scores = [x["score"] for x in d]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= x1 < x2 <= 1536 and 0 <= y1 < y2 <= 1536 for x1, y1, x2, y2 in (x["box"] for x in d))
    # The threshold recorded with the model (metadata score_thresh) is the default.
    assert min(scores) >= float(model.metadata["score_thresh"])
    assert model.classes == ["__background__", "mitochondria"]


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a[100:740, 150:830],  # rows of a larger array
        lambda a: a[:900, ::2],  # every other column
        lambda a: a[800:100:-1, 900:200:-1],  # negative strides
        lambda a: np.asfortranarray(a[:640, 300:1000]),  # Fortran order
    ],
    ids=["sub-block", "column-step", "negative-strides", "fortran-order"],
)
def test_a_strided_view_equals_its_contiguous_copy(model, example, make):
    view = make(example)
    assert not view.flags.c_contiguous
    copy = np.ascontiguousarray(view)
    want = model.detect(copy, score_thresh=0.05)
    assert want, "the crop holds candidates"
    assert model.detect(view, score_thresh=0.05) == want


def test_every_dtype_gives_the_detections_of_its_values(model, example):
    """uint8, uint16, int16 and float32 holding the same values detect the same (values are used
    as they are, as the CLI uses a file's samples)."""
    crop = example[:700, 200:900]
    want = model.detect(crop.astype(np.float32), score_thresh=0.05)
    assert want
    for dt in (np.uint8, np.uint16, np.int16):
        assert model.detect(crop.astype(dt), score_thresh=0.05) == want, dt


def test_threads_argument_gives_the_same_detections(model, example):
    crop = example[:640, :640]
    assert model.detect(crop, threads=1, score_thresh=0.05) == model.detect(crop, threads=2, score_thresh=0.05)


def test_the_gil_is_released_while_detecting(model, example):
    """A Python thread keeps running while detect computes: the longest pause between its
    steps stays well below the length of the call (holding the GIL would pause it for the whole
    call)."""
    stamps, stop = [], threading.Event()

    def ticker():
        while not stop.is_set():
            stamps.append(time.perf_counter())

    t = threading.Thread(target=ticker)
    t.start()
    try:
        t0 = time.perf_counter()
        model.detect(example, threads=1)
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
    inside = [s for s in stamps if t0 <= s <= t1]
    gaps = np.diff([t0, *inside, t1])
    assert gaps.max() < 0.5 * (t1 - t0), f"ticker paused {gaps.max():.3f} s of a {t1 - t0:.3f} s call"


def test_the_shipped_models_are_built_into_the_package(monkeypatch):
    """The defaults compared with the CLI above are the built-in copies of weights/; the CLI's
    environment variables name other files."""
    monkeypatch.delenv("CRYODET_WEIGHTS", raising=False)
    monkeypatch.delenv("CRYODET_SLICE_WEIGHTS", raising=False)
    assert cryodet.load_model().path == "<built-in weights/default.safetensors>"
    assert cryodet.load_model("slices").path == "<built-in weights/slices.safetensors>"
    monkeypatch.setenv("CRYODET_WEIGHTS", str(EXAMPLE.parent / "slices.safetensors"))
    assert cryodet.load_model().metadata == cryodet.load_model("slices").metadata


def test_load_model_loads_a_weight_file_by_path(example, model):
    m = cryodet.load_model(EXAMPLE.parent / "default.safetensors")
    assert m.path.endswith("default.safetensors")
    assert m.metadata == model.metadata
    assert m.detect(example) == model.detect(example)
