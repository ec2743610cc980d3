#!/usr/bin/env bash
# Detection benchmark, cryodet vs torchvision, same weights / input / threads.
#
#   tools/bench.sh            # 2 threads, median of 5 runs (+1 warm-up each)
#   THREADS=1 RUNS=3 tools/bench.sh
#
# 1. makes /tmp/perf_full.safetensors (full-width random weights, calibrated) and
#    /tmp/perf_x600x800.safetensors (normalised random input) if missing;
# 2. builds and runs benches/detect.rs: per-stage seconds and GFLOP/s (cargo bench --bench detect);
# 3. runs tools/bench_torch.py: whole detection, torchvision and cryodet in separate processes,
#    times, ratio, GFLOP/s, peak RSS of each.
# The load average is printed with each table (the machine may be shared).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
RUNS=${RUNS:-5}
W=${WEIGHTS:-/tmp/perf_full.safetensors}
X=${INPUT:-/tmp/perf_x600x800.safetensors}
[ -f "$W" ] || python3 tools/torch_reference.py random-weights --config full --out "$W"
[ -f "$X" ] || python3 tools/torch_reference.py random-input --size 600x800 --out "$X"
echo "== $(date -u) load: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench --bench detect -- --weights "$W" --input "$X" --threads "$THREADS" --runs "$RUNS"
echo "== $(date -u) load: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 tools/bench_torch.py --weights "$W" --input "$X" --threads "$THREADS" --runs "$RUNS"
echo "== $(date -u) load: $(cut -d' ' -f1-3 /proc/loadavg)"
