#!/usr/bin/env python3
"""Sets string metadata of a safetensors file in place (standard library only; tensors untouched).

    python3 tools/set_metadata.py weights/default.safetensors score_thresh=0.93

A safetensors file is an 8-byte little-endian header length, a JSON header (tensor dtypes, shapes
and byte offsets relative to the data section, plus "__metadata__": {str: str}) and the data;
changing the header's length does not move the offsets, so only the header is rewritten. cryodet
reads `classes`, `bn_eps`, `min_size`, `preprocess`, `score_thresh` (detect's default
threshold) and `score_thresh_3d` (detect --3d's) from the metadata.
"""
import json
import os
import struct
import sys


def main() -> int:
    if len(sys.argv) < 3 or any("=" not in kv for kv in sys.argv[2:]):
        sys.exit(__doc__)
    path = sys.argv[1]
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.setdefault("__metadata__", {})
    for kv in sys.argv[2:]:
        k, v = kv.split("=", 1)
        meta[k] = v
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned, as the safetensors writer does
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    os.replace(tmp, path)
    print(f"{path}: metadata {meta}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
