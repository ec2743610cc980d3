"""Writers: TIFF with resolution tags, LabelImg / Pascal VOC XML, MRC stacks, 3D ground truth.

* TIFF (tifffile): XResolution = YResolution = 1e7 / pixel_nm pixels per cm, ResolutionUnit
  = centimeter (TIFF 6.0 tags 282, 283, 296), so readers recover the pixel size.
* VOC boxes follow LabelImg: 1-based inclusive pixel corners, xmin = floor(x1) + 1,
  xmax = ceil(x2), from continuous 0-based boxes (x1, y1, x2, y2) with x2 exclusive.
* MRC (mrcfile): float32, voxel size in Angstrom in the header.
* 3D ground truth JSON (what tools/eval_3d.py reads): {"objects": [{"id", "class",
  "bbox3d": [x1, y1, z1, x2, y2, z2] (z2 exclusive, voxel units), "slices": [{"z", "bbox":
  [x1, y1, x2, y2]}], "touches_top", "touches_bottom"}], "voxel_size_nm", "shape": [nz, ny, nx]}.
"""

from __future__ import annotations

import json
import math
import os
from xml.sax.saxutils import escape

import numpy as np


def write_tiff(path, arr, pixel_nm):
    import tifffile

    r = 1e7 / pixel_nm
    tifffile.imwrite(path, arr, resolution=(r, r), resolutionunit="CENTIMETER",
                     description=f"indepgen pixel_nm={pixel_nm:g}")


def voc_xml(filename, width, height, boxes, folder="images"):
    """boxes: list of (x1, y1, x2, y2, truncated) continuous pixel coordinates."""
    out = ["<annotation>", f"  <folder>{folder}</folder>", f"  <filename>{escape(filename)}</filename>",
           "  <size>", f"    <width>{width}</width>", f"    <height>{height}</height>", "    <depth>1</depth>",
           "  </size>", "  <segmented>0</segmented>"]
    for x1, y1, x2, y2, tr in boxes:
        xmin = max(1, int(math.floor(x1)) + 1)
        ymin = max(1, int(math.floor(y1)) + 1)
        xmax = min(width, int(math.ceil(x2)))
        ymax = min(height, int(math.ceil(y2)))
        out += ["  <object>", "    <name>mitochondria</name>", "    <pose>Unspecified</pose>",
                f"    <truncated>{int(tr)}</truncated>", "    <difficult>0</difficult>", "    <bndbox>",
                f"      <xmin>{xmin}</xmin>", f"      <ymin>{ymin}</ymin>", f"      <xmax>{xmax}</xmax>",
                f"      <ymax>{ymax}</ymax>", "    </bndbox>", "  </object>"]
    out.append("</annotation>")
    return "\n".join(out) + "\n"


def write_annotated(root, stem, img, pixel_nm, boxes):
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    fn = stem + ".tif"
    write_tiff(os.path.join(root, "images", fn), img, pixel_nm)
    h, w = img.shape
    with open(os.path.join(root, "annotations", stem + ".xml"), "w") as f:
        f.write(voc_xml(fn, w, h, boxes))


def write_mrc(path, vol, voxel_nm):
    import mrcfile

    with mrcfile.new(path, overwrite=False) as m:
        m.set_data(np.ascontiguousarray(vol, dtype=np.float32))
        m.voxel_size = voxel_nm * 10.0
        m.header.label[0] = b"tools/indepgen synthetic tomogram (no timestamp: reproducible)".ljust(80)
        m.header.nlabl = 1


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
