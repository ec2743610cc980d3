#!/usr/bin/env python3
"""Contact sheet of generated images with their VOC boxes drawn (for looking, not for choosing).

    python3 tools/indepgen/contact.py DIR OUT.png [--n 12] [--cols 4] [--tile 400] [--no-boxes]
DIR holds images/ (.tif or .png) and annotations/. Boxes are drawn from the XML (1-based inclusive corners).
"""

from __future__ import annotations

import argparse
import glob
import os
import xml.etree.ElementTree as ET

import numpy as np
import tifffile
from PIL import Image, ImageDraw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--tile", type=int, default=400)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--pattern", default="*")
    ap.add_argument("--no-boxes", action="store_true")
    a = ap.parse_args()
    files = sorted(f for ext in (".tif", ".png") for f in glob.glob(os.path.join(a.dir, "images", a.pattern + ext)))
    files = files[a.start:a.start + a.n]
    rows = (len(files) + a.cols - 1) // a.cols
    sheet = Image.new("RGB", (a.cols * a.tile, rows * a.tile), (40, 40, 40))
    for n, f in enumerate(files):
        img = (tifffile.imread(f) if f.endswith(".tif") else np.asarray(Image.open(f).convert("L"))).astype(np.float64)
        lo, hi = np.percentile(img, [0.5, 99.5])
        g = (np.clip((img - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)
        im = Image.fromarray(g).convert("RGB")
        s = a.tile / max(im.size)
        im = im.resize((max(1, int(im.size[0] * s)), max(1, int(im.size[1] * s))), Image.BILINEAR)
        d = ImageDraw.Draw(im)
        stem = os.path.splitext(os.path.basename(f))[0]
        xml = os.path.join(a.dir, "annotations", stem + ".xml")
        if not a.no_boxes and os.path.exists(xml):
            for o in ET.parse(xml).getroot().iter("object"):
                bb = o.find("bndbox")
                x1, y1, x2, y2 = (float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
                col = (255, 160, 0) if o.findtext("truncated", "0") == "1" else (0, 255, 0)
                d.rectangle([(x1 - 1) * s, (y1 - 1) * s, x2 * s, y2 * s], outline=col, width=2)
        d.text((4, 4), stem, fill=(255, 255, 0))
        sheet.paste(im, ((n % a.cols) * a.tile, (n // a.cols) * a.tile))
    sheet.save(a.out)
    print(a.out, len(files))


if __name__ == "__main__":
    main()
