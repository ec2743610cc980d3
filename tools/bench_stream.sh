#!/usr/bin/env bash
# Peak memory of `detect --3d` on large tomograms (issue 17, "bounded memory"): a 4096 x 4096 x NZ
# float32 MRC (6.7 GB at NZ = 100, 26.8 GB at 400) is made as a sparse file (the data section
# is a hole: zeros cost no disk and no reading time beyond the page cache), then
#   /usr/bin/time -v cryodet detect VOL.mrc --3d --stride 2 --label-volume --out OUT
# and its "Maximum resident set size" is printed with the size of the montage PNG. The content
# does not matter for memory: each slice is read, resampled and run through the network the same
# way; only the boxes, the montage tiles (<= 1024 px) and one label slice at a time are kept.
#
#   tools/bench_stream.sh [NZ ...]        (default: 100 400; needs python3 with mrcfile, ~NZ/2 network passes)
# Environment: DIR=/tmp/cryodet_stream (the volumes and outputs; removed at the end unless KEEP=1),
# CRYODET=target/release/cryodet, THREADS=$(nproc).
set -euo pipefail
CRYODET=${CRYODET:-${CARGO_TARGET_DIR:-target}/release/cryodet}
DIR=${DIR:-/tmp/cryodet_stream}
THREADS=${THREADS:-$(nproc)}
mkdir -p "$DIR"
[ $# -gt 0 ] || set -- 100 400
for nz in "$@"; do
  vol="$DIR/vol_$nz.mrc"
  out="$DIR/out_$nz"
  rm -rf "$out"
  python3 - "$vol" "$nz" <<'EOF'
import sys, mrcfile
path, nz = sys.argv[1], int(sys.argv[2])
# new_mmap extends the file without writing the data: a sparse file of zeros
with mrcfile.new_mmap(path, shape=(nz, 4096, 4096), mrc_mode=2, overwrite=True) as m:
    m.voxel_size = 10.0  # 1 nm
EOF
  /usr/bin/time -v "$CRYODET" detect "$vol" --3d --stride 2 --label-volume --threads "$THREADS" \
    --out "$out" > "$DIR/log_$nz.txt" 2> "$DIR/time_$nz.txt" || { cat "$DIR/time_$nz.txt"; exit 1; }
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$DIR/time_$nz.txt")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$DIR/time_$nz.txt")
  montage=$(find "$out" -name '*.montage.png' -printf '%s\n' | head -n1)
  labels=$(find "$out" -name '*.labels.mrc' -printf '%s\n' | head -n1)
  echo "4096x4096x$nz float32 ($(( nz * 4096 * 4096 * 4 / 1000000 )) MB): peak RSS $(( rss_kb / 1024 )) MiB," \
    "wall $wall, montage ${montage:-none} bytes, labels ${labels:-none} bytes"
  rm -f "$vol"
done
[ "${KEEP:-0}" = 1 ] || rm -rf "$DIR"
