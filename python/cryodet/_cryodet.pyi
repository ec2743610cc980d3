"""Type stub of the extension module ``cryodet._cryodet`` (python/src/*.rs).

Conventions (the CLI's, README "Output files"):

* an image is a 2-D array ``(rows, columns)`` = ``(height, width)``; a volume is 3-D
  ``(z, rows, columns)``, as ``mrcfile`` returns ``data[z, y, x]``;
* boxes are continuous pixel coordinates ``(x1, y1, x2, y2)`` of the original image: pixel
  ``i`` spans ``[i, i + 1)``, so ``0 <= x1 < x2 <= width``; ``x`` is the column, ``y`` the row;
* a detection is ``{"box": (x1, y1, x2, y2), "score": float, "label": str, "class_id": int}``
  (``class_id`` 0 is the background, 1.. the classes), by decreasing score.

Errors: a core error becomes ``OSError`` (``FileNotFoundError``, ``PermissionError``, ...) for the
file system, else ``ValueError``, with the one-line message ``cryodet`` prints after
``error:`` (checks of option values name the CLI option, e.g. ``--pixel-size``). A wrong
argument type, dtype or dimensionality raises ``TypeError`` / ``ValueError`` naming what was
expected.
"""

from os import PathLike
from typing import Any, Mapping, Optional, Sequence, Tuple, TypedDict, Union

import numpy as np
import numpy.typing as npt

Box = Tuple[float, float, float, float]
"""``(x1, y1, x2, y2)`` in pixels."""

class Detection(TypedDict):
    box: Box
    score: float
    label: str
    class_id: int

class SliceDetections(TypedDict):
    z: int
    detections: list[Detection]

class VolumeDetections(TypedDict):
    """``Model.detect_volume``'s result: the stack's ``NAME.json`` (``width``, ``height``,
    ``depth``, ``slices``) and ``NAME.objects.json``'s ``objects`` (``None`` with ``link=False``).

    Each object: ``{"id": int (1..), "class_id": int, "class": str,
    "bbox3d": [x1, y1, z1, x2, y2, z2] (z2 exclusive: last slice + 1), "score": float (mean),
    "n_slices": int, "touches_first": bool, "touches_last": bool,
    "slices": [{"z": int, "bbox": [x1, y1, x2, y2], "score": float}]}``.
    """

    width: int
    height: int
    depth: int
    slices: list[SliceDetections]
    objects: Optional[list[dict[str, Any]]]

class VocObject(TypedDict, total=False):
    name: str
    box: Box
    difficult: bool
    truncated: bool

class VocAnnotation(TypedDict, total=False):
    filename: str
    path: Optional[str]
    width: int
    height: int
    depth: int
    objects: list[VocObject]

Image = npt.NDArray[Union[np.uint8, np.uint16, np.int16, np.float32]]
"""A 2-D ``(rows, columns)`` or 3-D ``(z, rows, columns)`` array of uint8, uint16, int16 or
float32 in native byte order; any layout (C or Fortran order, strided views, negative strides).
Values are used as they are (as the CLI uses a file's samples)."""

StrPath = Union[str, PathLike[str]]

class Model:
    """A loaded detector (``load_model``). Immutable; usable from several threads."""

    @property
    def classes(self) -> list[str]:
        """Class names, index = ``class_id`` (``classes[0]`` is the background)."""
    @property
    def path(self) -> str:
        """The weight file (``<built-in weights/NAME>`` for the copy built into the package)."""
    @property
    def metadata(self) -> dict[str, str]:
        """The weight file's metadata: ``min_size``, ``score_thresh``, ``pixel_size_nm``, ..."""
    def detect(
        self,
        image: Image,
        pixel_size: Optional[float] = None,
        score_thresh: Optional[float] = None,
        preprocess: Optional[bool] = None,
        threads: Optional[int] = None,
        mask_nonfinite: bool = False,
    ) -> list[Detection]:
        """Detections on one image ``(rows, columns)``: what ``cryodet detect`` writes to
        ``NAME.json`` for a file with these pixels (``detections``).

        pixel_size: nm per pixel (``--pixel-size``). With it and a model that records its own
            (``metadata["pixel_size_nm"]``) the image is resampled to the model's pixel size;
            without it the short side is scaled to the model's ``min_size`` (an array carries no
            pixel size: pass it, e.g. ``mrc.voxel_size.x / 10``).
        score_thresh: keep detections scoring at least this (default: the model's
            ``score_thresh``, else 0.5).
        preprocess: ``None`` as the model was trained (the study's bilateral filter + histogram
            equalization unless its metadata says ``preprocess=none``); ``False`` skips it
            (``--no-preprocess``); ``True`` applies it.
        threads: threads of this call (default: all cores). The GIL is released while the
            detector runs. The matrix products' thread count (at most 4) is set by the first
            call of the process (or ``MATMUL_NUM_THREADS``).
        mask_nonfinite: replace NaN/Inf pixels by the median with a ``UserWarning``
            (``--mask-nonfinite``); by default they raise ``ValueError``.

        Raises TypeError (not an ndarray, or dtype not uint8/uint16/int16/float32), ValueError
        (not 2-D, smaller than 2x2, non-finite pixels, a bad option value).
        """
    def detect_volume(
        self,
        volume: Image,
        pixel_size: Optional[float] = None,
        stride: int = 1,
        link: bool = True,
        score_thresh: Optional[float] = None,
        preprocess: Optional[bool] = None,
        threads: Optional[int] = None,
        mask_nonfinite: bool = False,
        *,
        link_iou: float = 0.3,
        max_gap: int = 2,
        min_slices: int = 3,
        fragment_overlap: float = 0.8,
        smooth: int = 9,
        merge_iou: float = 0.5,
        merge_gap: int = 10,
    ) -> VolumeDetections:
        """``cryodet detect STACK --3d`` on a volume ``(z, rows, columns)``: sections
        ``0, stride, 2*stride, ...`` detected one by one as ``detect`` does (the default score
        threshold is the model's ``score_thresh_3d`` when recorded; use
        ``load_model("slices")``, the model ``--3d`` uses), then with ``link=True`` linked along
        z into 3D objects (README "Tomograms in 3D"; the options are ``detect --3d``'s:
        ``--link-iou``, ``--max-gap``, ``--min-slices``, ``--fragment-overlap``, ``--smooth``,
        ``--merge-iou``, ``--merge-gap``).

        Returns the per-slice detections and the objects as ``NAME.json`` and
        ``NAME.objects.json`` hold them (see ``VolumeDetections``). Each section is copied to
        f32 with the GIL held and detected without it, so a memory-mapped volume
        (``mrcfile.mmap``) is read one section at a time.

        Raises as ``detect``, and ValueError for a volume that is not 3-D, ``stride < 1`` or a
        bad linking option (message naming the section for non-finite pixels), TypeError for
        an unknown keyword.
        """

def load_model(path: Union[None, StrPath] = None) -> Model:
    """Loads a detector: ``None`` the shipped default model (projection images; what
    ``cryodet detect`` uses), ``"slices"`` the shipped tomogram-slice model (what
    ``detect --3d`` uses), else a safetensors weight file. The shipped models are built into
    the package (``Model.path`` is then ``<built-in weights/NAME>``); ``$CRYODET_WEIGHTS`` /
    ``$CRYODET_SLICE_WEIGHTS``, when set, name other files instead, as for the CLI.

    Raises FileNotFoundError, ValueError (not a weight file, or one that does not fit the
    network).
    """

def evaluate(
    predictions: Mapping[str, Union[Sequence[Detection], Mapping[str, Any]]],
    ground_truth: Mapping[str, VocAnnotation],
    iou: Optional[Sequence[float]] = (0.5, 0.6, 0.7, 0.8, 0.9),
    score_thresh: Optional[float] = 0.5,
    table_iou: Optional[float] = 0.7,
    groups: Optional[Mapping[str, str]] = None,
    coco_max_dets: Optional[int] = 100,
    voc_plus_one: bool = False,
) -> dict[str, Any]:
    """``cryodet eval``: the metrics dict that ``metrics.json`` holds (``config``,
    ``n_images``, ``classes``, ``overall`` per IoU threshold with mAP and the pooled summary,
    ``per_class``, ``groups``, ``images``; each summary has ``ap_all_point``, ``ap_11_point``,
    ``ap_coco101``, ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``, ``miou``,
    ``best_f1``, ``best_f1_threshold``, ``pr_curve``).

    predictions: image name -> its detections (``Model.detect``'s list, or a dict with
        ``"detections"`` as ``NAME.json`` holds them); only ``box``, ``score`` and ``label``
        are used. Names without ground truth are skipped with a ``UserWarning``.
    ground_truth: image name -> its annotation as ``read_voc`` returns it (``width`` and
        ``height`` may be missing: unknown; objects need ``name`` and ``box``). The images
        evaluated, in sorted order; each must have predictions.
    iou: IoU thresholds of AP and the precision-recall curves (``--iou``).
    score_thresh: detections scoring at least this count for P, R, F1, mIoU.
    table_iou: IoU threshold of the per-group and per-image tables.
    groups: image name -> group (tomogram); default the name's prefix before its last ``_``.
    """

def read_voc(path: StrPath) -> VocAnnotation:
    """Reads one LabelImg / Pascal VOC XML file: boxes continuous,
    ``(xmin - 1, ymin - 1, xmax, ymax)``.

    Raises FileNotFoundError, ValueError (malformed XML, a missing field, an inverted box).
    """

def write_voc(
    path: StrPath,
    detections: Union[Sequence[Detection], Mapping[str, Any]],
    image_shape: Tuple[int, int],
    filename: Optional[str] = None,
    image_path: Optional[str] = None,
    overwrite: bool = False,
) -> None:
    """Writes detections as LabelImg XML, as ``cryodet detect --format voc`` does
    (``xmin = round(x1) + 1``, ``xmax = round(x2)``), for an image of ``image_shape``
    ``(rows, columns)``. ``filename`` is the image's file name (default: the XML's stem),
    ``image_path`` its path.

    Raises FileExistsError when ``path`` exists and ``overwrite`` is false, ValueError for a
    bad detection or shape.
    """
