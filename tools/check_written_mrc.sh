#!/usr/bin/env bash
# Every MRC cryodet writes passes `mrcfile.validate` and keeps its input's geometry (issue 17,
# "round trips"):
#   * NAME.labels.mrc of `detect --3d --label-volume` on an MRC written by mrcfile with
#     anisotropic voxels (19.5 x 19.5 x 208.3 A), origin (100, -50, 25) and start indices
#     (5, -6, 7): the same voxel size, origin and start indices;
#   * stack.mrc of `synth --mrc-slices`: voxel size (pixel_nm, pixel_nm, slice_nm) x 10 of its
#     stack_gt.json;
#   * the files `cargo test --release --test io_tests` leaves in $CARGO_TARGET_DIR/tmp/
#     io_tests_written/ (write_mrc in modes 2, 1, 6), when present.
# Prints one line per file and exits non-zero if any check fails.
#
#   tools/check_written_mrc.sh          (needs python3 with mrcfile and numpy; a few seconds)
# Environment: CRYODET=target/release/cryodet, DIR=/tmp/cryodet_mrc_check (removed unless KEEP=1).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
CRYODET=${CRYODET:-$TGT/release/cryodet}
DIR=${DIR:-/tmp/cryodet_mrc_check}
rm -rf "$DIR"
mkdir -p "$DIR"
python3 - "$DIR/in.mrc" <<'EOF'
import sys, mrcfile, numpy as np
z, y, x = np.mgrid[0:6, 0:64, 0:64]
with mrcfile.new(sys.argv[1], overwrite=True) as m:
    m.set_data(((z + 3 * y + x) % 40).astype(np.float32))
    m.voxel_size = (19.5, 19.5, 208.3)
    m.header.origin = (100.0, -50.0, 25.0)
    m.header.nxstart, m.header.nystart, m.header.nzstart = 5, -6, 7
EOF
"$CRYODET" detect "$DIR/in.mrc" --3d --label-volume --weights "$ROOT/tests/fixtures/model/weights_small.safetensors" \
  --size 64 --max-size 64 --threads 1 --out "$DIR/det" > /dev/null 2>&1
"$CRYODET" synth "$DIR/synth" --n 0 --classic --size 96 --seed 2 --mrc-slices 4 > /dev/null 2>&1
python3 - "$DIR" "$TGT/tmp/io_tests_written" <<'EOF'
import glob, json, os, sys, mrcfile, numpy as np
d, written = sys.argv[1], sys.argv[2]

def geometry(p):
    with mrcfile.open(p, permissive=False) as m:
        h = m.header
        return (np.array([m.voxel_size.x, m.voxel_size.y, m.voxel_size.z], float),
                np.array([h.origin.x, h.origin.y, h.origin.z], float),
                (int(h.nxstart), int(h.nystart), int(h.nzstart)))

ok = True
def check(p, want=None):
    global ok
    valid = bool(mrcfile.validate(p, print_file=open(os.devnull, "w")))
    vs, org, start = geometry(p)
    same = True
    if want is not None:
        wvs, worg, wstart = want
        same = (np.allclose(vs, wvs, rtol=1e-5) and (worg is None or np.allclose(org, worg))
                and (wstart is None or start == wstart))
    ok &= valid and same
    print(f"{'ok  ' if valid and same else 'FAIL'} {p}: validate {valid}, voxel {vs.round(4).tolist()} A, "
          f"origin {org.tolist()}, start {start}" + ("" if want is None else f", as its input: {same}"))

check(os.path.join(d, "det", "in.labels.mrc"), geometry(os.path.join(d, "in.mrc")))
gt = json.load(open(os.path.join(d, "synth", "stack_gt.json")))
px, dz = gt["pixel_nm"] * 10, gt["slice_nm"] * 10
check(os.path.join(d, "synth", "stack.mrc"), (np.array([px, px, dz]), None, None))
for p in sorted(glob.glob(os.path.join(written, "*.mrc"))):
    check(p)
sys.exit(0 if ok else 1)
EOF
[ "${KEEP:-0}" = 1 ] || rm -rf "$DIR"
