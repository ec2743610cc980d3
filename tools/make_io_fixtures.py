#!/usr/bin/env python3
"""Fixtures for tests/io_tests.rs: image files, MRC files, LabelImg XML, and the expected
values (tests/fixtures/io/expected.safetensors) computed by the reference libraries.

Run from the repository root:

    pip install mrcfile tifffile pillow safetensors torch torchvision opencv-python-headless
    python3 tools/make_io_fixtures.py

and, to check that MRC files written by cryodet's `write_mrc` are valid for `mrcfile`
(the Rust test `mrc_write_read_roundtrip` writes them under $CARGO_TARGET_DIR/tmp/io_tests_written/):

    cargo test --release --test io_tests
    python3 tools/make_io_fixtures.py --validate ${CARGO_TARGET_DIR:-target}/tmp/io_tests_written/*.mrc

Expected values and the reference calls that produce them:
  images:   the stored arrays themselves; RGB -> gray with f32 0.299 R + 0.587 G + 0.114 B
  MRC:      mrcfile.open(p).data (float32), voxel_size, nsymbt
  resize:   torch.nn.functional.interpolate(x[None, None], size=(oh, ow), mode="bilinear",
            align_corners=False) where (oh, ow) = floor(h * s), floor(w * s)
  rcnn:     torchvision GeneralizedRCNNTransform(min_size, max_size, mean, std)(img)
  opencv:   cv2.bilateralFilter(u8, -1, sigmaColor, sigmaSpace) with IPP off; cv2.equalizeHist(u8)
Every fixture is a few KB.
"""
import argparse
import os
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "io")


def images(expected):
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(1)
    # 16-bit TIFF, H != W, the full range including 0 and 65535.
    g16 = rng.integers(0, 65536, size=(5, 7), dtype=np.uint16)
    g16[0, 0], g16[-1, -1] = 0, 65535
    tifffile.imwrite(f"{OUT}/gray16.tif", g16)
    expected["gray16"] = g16.astype(np.float32)
    # The same 16-bit values as PNG.
    Image.fromarray(g16.astype(np.uint16)).save(f"{OUT}/gray16.png")
    # 8-bit gray PNG.
    g8 = rng.integers(0, 256, size=(6, 9), dtype=np.uint8)
    Image.fromarray(g8, mode="L").save(f"{OUT}/gray8.png")
    expected["gray8"] = g8.astype(np.float32)
    # RGB PNG -> Rec.601 luma in f32, same operation order as cryodet.
    rgb = rng.integers(0, 256, size=(4, 3, 3), dtype=np.uint8)
    Image.fromarray(rgb, mode="RGB").save(f"{OUT}/rgb8.png")
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    expected["rgb8_gray"] = (np.float32(0.299) * r + np.float32(0.587) * g) + np.float32(0.114) * b
    # 32-bit float TIFF, negative values.
    f32 = rng.normal(size=(3, 4)).astype(np.float32) * 1000
    tifffile.imwrite(f"{OUT}/float32.tif", f32)
    expected["float32"] = f32
    # Float TIFF with NaN and Inf (for check_finite).
    bad = np.arange(12, dtype=np.float32).reshape(3, 4)
    bad[1, 2] = np.nan
    bad[2, 0] = np.inf
    tifffile.imwrite(f"{OUT}/nan.tif", bad)
    # Gray JPEG; expected = PIL's (libjpeg's) decoding, other decoders may differ by ~1 level.
    grad = (np.add.outer(np.arange(8) * 9, np.arange(16) * 5) + 40).astype(np.uint8)
    Image.fromarray(grad, mode="L").save(f"{OUT}/gray8.jpg", quality=95)
    expected["jpeg"] = np.array(Image.open(f"{OUT}/gray8.jpg")).astype(np.float32)
    huge_headers()


def huge_headers():
    """Images whose headers claim 60000 x 60000 pixels but hold almost no data: readers must
    refuse them without allocating."""
    import struct
    import zlib

    import tifffile

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 16, 6, 0, 0, 0)  # 16-bit RGBA
    idat = zlib.compress(b"\0" * 64)
    with open(f"{OUT}/huge.png", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    # A 2 x 2 16-bit TIFF whose ImageWidth/ImageLength tags are patched to 60000.
    tifffile.imwrite(f"{OUT}/huge.tif", np.zeros((2, 2), np.uint16))
    b = bytearray(open(f"{OUT}/huge.tif", "rb").read())
    assert b[:2] == b"II"
    ifd = struct.unpack_from("<I", b, 4)[0]
    for i in range(struct.unpack_from("<H", b, ifd)[0]):
        e = ifd + 2 + 12 * i
        tag, typ = struct.unpack_from("<HH", b, e)
        if tag in (256, 257):  # ImageWidth, ImageLength
            if typ == 3:
                struct.pack_into("<H", b, e + 8, 60000)
            else:
                struct.pack_into("<I", b, e + 8, 60000)
    open(f"{OUT}/huge.tif", "wb").write(bytes(b))


def mrcs(expected):
    import mrcfile

    rng = np.random.default_rng(2)
    shape = (3, 5, 7)  # nz != ny != nx
    data = {
        0: rng.integers(-128, 128, size=shape).astype(np.int8),
        1: rng.integers(-32768, 32768, size=shape).astype(np.int16),
        2: rng.normal(size=shape).astype(np.float32),
        6: rng.integers(0, 65536, size=shape).astype(np.uint16),
        12: rng.normal(size=shape).astype(np.float16),
    }
    for mode, d in data.items():
        p = f"{OUT}/mode{mode}.mrc"
        with mrcfile.new(p, overwrite=True) as m:
            m.set_data(d)
            m.voxel_size = (1.5, 2.0, 2.5)
        with mrcfile.open(p, permissive=False) as m:
            assert m.header.mode == mode
            expected[f"mode{mode}"] = m.data.astype(np.float32)
    # Big-endian float32 image stack (.mrcs).
    p = f"{OUT}/bigendian.mrcs"
    with mrcfile.new(p, overwrite=True) as m:
        m.set_data(data[2].astype(">f4"))
        m.set_image_stack()
    with mrcfile.open(p, permissive=False) as m:
        assert m.header.machst[0] == 0x11
        expected["bigendian"] = m.data.astype(np.float32)
    # int16 with a 40-byte extended header.
    p = f"{OUT}/exthdr.mrc"
    with mrcfile.new(p, overwrite=True) as m:
        m.set_data(data[1])
        m.set_extended_header(np.arange(40, dtype=np.uint8))
        m.header.exttyp = b"SERI"
    with mrcfile.open(p) as m:
        assert m.header.nsymbt == 40
        expected["exthdr"] = m.data.astype(np.float32)


LABELIMG = """<annotation>
\t<folder>images</folder>
\t<filename>slice_063.png</filename>
\t<path>/data/Unstim_20k_mito1/images/slice_063.png</path>
\t<source>
\t\t<database>Unknown</database>
\t</source>
\t<size>
\t\t<width>120</width>
\t\t<height>80</height>
\t\t<depth>1</depth>
\t</size>
\t<segmented>0</segmented>
\t<object>
\t\t<name>mitochondria</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>11</xmin>
\t\t\t<ymin>21</ymin>
\t\t\t<xmax>50</xmax>
\t\t\t<ymax>60</ymax>
\t\t</bndbox>
\t</object>
\t<object>
\t\t<name>mito &amp; co</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>1</truncated>
\t\t<difficult>1</difficult>
\t\t<bndbox>
\t\t\t<xmin>1</xmin>
\t\t\t<ymin>30.0</ymin>
\t\t\t<xmax>120</xmax>
\t\t\t<ymax>80</ymax>
\t\t</bndbox>
\t</object>
</annotation>
"""


def voc():
    with open(f"{OUT}/labelimg.xml", "w") as f:
        f.write(LABELIMG)
    # An image without objects (LabelImg writes no <object>).
    start, end = LABELIMG.index("\t<object>"), LABELIMG.rindex("</object>\n") + len("</object>\n")
    with open(f"{OUT}/empty.xml", "w") as f:
        f.write(LABELIMG[:start] + LABELIMG[end:])
    with open(f"{OUT}/malformed.xml", "w") as f:
        f.write(LABELIMG.replace("</size>", "</siz>"))
    with open(f"{OUT}/nonnumeric.xml", "w") as f:
        f.write(LABELIMG.replace("<xmin>11</xmin>", "<xmin>eleven</xmin>"))
    with open(f"{OUT}/inverted.xml", "w") as f:
        f.write(LABELIMG.replace("<xmax>50</xmax>", "<xmax>5</xmax>"))
    with open(f"{OUT}/missing_ymax.xml", "w") as f:
        f.write(LABELIMG.replace("\t\t\t<ymax>60</ymax>\n", ""))
    with open(f"{OUT}/bad_utf8.xml", "wb") as f:
        f.write(LABELIMG.replace("slice_063", "slice_\x01").encode().replace(b"\x01", b"\xff\xfe"))


def resize(expected):
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(3)
    x = torch.rand(13, 17, generator=g)
    expected["resize_in"] = x.numpy()
    # (name, scale): down, up, non-integer ratios; sizes as interpolate(recompute_scale_factor=True).
    for name, s in [("down", 0.61), ("up", 1.7), ("up3", 3.0), ("half", 0.5)]:
        oh, ow = int(np.floor(13 * s)), int(np.floor(17 * s))
        y = F.interpolate(x[None, None], scale_factor=s, mode="bilinear",
                          recompute_scale_factor=True, align_corners=False)[0, 0]
        assert y.shape == (oh, ow), (y.shape, oh, ow)
        expected[f"resize_{name}"] = y.numpy()

    # The whole torchvision transform on one gray image replicated to RGB.
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    img = torch.rand(29, 41, generator=g)
    t = GeneralizedRCNNTransform(min_size=50, max_size=64, image_mean=[0.485, 0.456, 0.406],
                                 image_std=[0.229, 0.224, 0.225]).eval()
    with torch.no_grad():
        il, _ = t([img[None].expand(3, -1, -1)])
    expected["rcnn_in"] = img.numpy()
    expected["rcnn_out"] = il.tensors[0].numpy()
    expected["rcnn_size"] = np.array(il.image_sizes[0], dtype=np.float32)
    # Boxes back to the original size (transform.postprocess).
    boxes = torch.tensor([[1.5, 2.0, 30.25, 40.0], [0.0, 0.0, 63.0, 44.0]])
    from torchvision.models.detection.transform import resize_boxes

    expected["rcnn_boxes"] = boxes.numpy()
    expected["rcnn_boxes_orig"] = resize_boxes(boxes, il.image_sizes[0], (29, 41)).numpy()


def opencv(expected):
    try:
        import cv2
    except ImportError:
        print("opencv not installed: skipping the bilateral/equalize fixtures", file=sys.stderr)
        return
    # OpenCV's IPP path for 8-bit bilateral truncates instead of rounding (off by up to 1
    # level); the reference is OpenCV's own implementation.
    cv2.ipp.setUseIPP(False)
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:23, 0:31]
    clean = np.where((yy - 11) ** 2 + (xx - 15) ** 2 < 64, 180.0, 60.0)
    u8 = np.clip(clean + rng.normal(0, 40, clean.shape), 0, 255).astype(np.uint8)
    expected["cv_in"] = u8.astype(np.float32)
    expected["cv_bilateral_100_1.2"] = cv2.bilateralFilter(u8, -1, 100, 1.2).astype(np.float32)
    expected["cv_bilateral_30_2.5"] = cv2.bilateralFilter(u8, -1, 30, 2.5).astype(np.float32)
    expected["cv_equalize"] = cv2.equalizeHist(u8).astype(np.float32)


def validate(paths):
    import mrcfile

    ok = True
    for p in paths:
        ok &= bool(mrcfile.validate(p))
        with mrcfile.open(p, permissive=False) as m:
            print(p, m.data.shape, m.data.dtype, m.voxel_size)
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--validate", nargs="*", help="check MRC files with mrcfile.validate")
    a = ap.parse_args()
    if a.validate is not None:
        validate(a.validate)
    from safetensors.numpy import save_file

    os.makedirs(OUT, exist_ok=True)
    expected = {}
    images(expected)
    mrcs(expected)
    voc()
    resize(expected)
    opencv(expected)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in expected.items()},
              f"{OUT}/expected.safetensors")
    print("wrote", len(expected), "arrays to", f"{OUT}/expected.safetensors")


if __name__ == "__main__":
    main()
