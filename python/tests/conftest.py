"""Fixtures of the Python package's tests: the repository, the `cryodet` binary to compare with,
the shipped example, the two shipped models, and a synthetic tomogram detected by the CLI.

The binary: $CRYODET_BIN, else $CARGO_TARGET_DIR/release/cryodet, else target/release/cryodet
(`cargo build --release` or `cargo test --release` makes it). The package under test is the
installed one (`pip install ./python`), not python/cryodet/ of the source tree.
"""

import json
import os
import subprocess
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from PIL import Image

import cryodet

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "weights" / "example.png"

#: Largest difference of box coordinates (px) and scores between the CLI's JSON and the Python
#: package on the same pixels, compared as f32 (the JSON's type; its decimals are the shortest
#: that round-trip, up to half an f32 ulp from the value: 6e-5 px at 1536). Both run the same
#: code on the same f32 values; measured: 0 on the shipped example and the synthetic tomogram.
BOX_TOL = 1e-4
SCORE_TOL = 1e-5


def f32_diff(a, b):
    """max |a - b| of two boxes (or any equal-length sequences) rounded to f32."""
    return float(np.max(np.abs(np.float32(a) - np.float32(b))))


def _binary():
    if os.environ.get("CRYODET_BIN"):
        return Path(os.environ["CRYODET_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not target.is_absolute():
        target = ROOT / target
    return target / "release" / "cryodet"


@pytest.fixture(scope="session")
def cli():
    """Runs the `cryodet` binary in the repository root; returns the CompletedProcess.
    `check=False` returns failures too (for comparing error messages)."""
    exe = _binary()
    if not exe.is_file():
        pytest.fail(f"no cryodet binary at {exe}: run `cargo build --release` or set CRYODET_BIN")

    def run(*args, check=True):
        p = subprocess.run(
            [str(exe), *map(str, args)], cwd=ROOT, capture_output=True, text=True
        )
        if check and p.returncode != 0:
            raise AssertionError(f"cryodet {' '.join(map(str, args))} failed:\n{p.stderr}")
        return p

    return run


def cli_error(p):
    """The one-line message of a failed CLI run, without its `error: ` prefix."""
    assert p.returncode != 0, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), p.stderr
    return line[len("error: "):]


@pytest.fixture(scope="session")
def example():
    """weights/example.png as PIL reads it: (1536, 1536) uint8."""
    return np.array(Image.open(EXAMPLE))


@pytest.fixture(scope="session")
def model():
    return cryodet.load_model()


@pytest.fixture(scope="session")
def slice_model():
    return cryodet.load_model("slices")


def assert_same_detections(got, want, box_tol=BOX_TOL, score_tol=SCORE_TOL):
    """Python detections `got` against CLI JSON detections `want`, pair by pair in order; returns
    the largest box difference."""
    assert len(got) == len(want), (got, want)
    worst = 0.0
    for g, w in zip(got, want):
        assert g["label"] == w["label"] and g["class_id"] == w["class_id"], (g, w)
        assert isinstance(g["box"], tuple) and len(g["box"]) == 4
        worst = max(worst, f32_diff(g["box"], w["box"]))
        assert f32_diff([g["score"]], [w["score"]]) <= score_tol, (g, w)
    assert worst <= box_tol, f"boxes differ by up to {worst} px"
    return worst


@pytest.fixture(scope="session")
def tomogram(tmp_path_factory, cli):
    """A 40-slice synthetic tomogram (`cryodet synth --mrc-slices 40`, 768 x 768, SNR 0.1,
    seed 7: 8 objects with the shipped slice model), rewritten with mrcfile as tomo.mrc (so
    `detect --3d` reads mrcfile's own file), and `detect --3d` on it: returns
    (tomo.mrc, pixel size in nm, CLI output directory)."""
    d = tmp_path_factory.mktemp("tomo")
    cli("synth", d, "--n", "0", "--size", "768", "--snr", "0.1", "--seed", "7", "--mrc-slices", "40")
    with mrcfile.open(d / "stack.mrc") as m:
        data, voxel = m.data.copy(), float(m.voxel_size.x)
    path = d / "tomo.mrc"
    with mrcfile.new(path) as m:
        m.set_data(data)
        m.voxel_size = voxel
    out = d / "det"
    cli("detect", path, "--3d", "--out", out)
    return path, voxel / 10.0, out


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
