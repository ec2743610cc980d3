#!/usr/bin/env bash
# Training throughput of one or more cryodet binaries, run alternately (the machine is shared:
# compare runs made back to back, and look at the spread over the repeats).
#
#   tools/bench_train.sh DATA SIZE REPEATS "TRAIN ARGS" BIN...
#   e.g. tools/bench_train.sh /tmp/tf_data 384 3 "--width-div 8 --blocks 2,2,2,2 --roi-batch 128" old/cryodet target/release/cryodet
#
# DATA: e.g. `cryodet synth /tmp/tf_data --n 40 --size 1536 --snr 0.1 --seed 3 --groups 10`.
# Each run trains 2 epochs on a fresh run directory; per run it prints the mean seconds per
# iteration of epoch 1 (images loaded and preprocessed on first use) and of epoch 2 (cached),
# the median of epoch 2's iterations (robust to bursts of other jobs), images per second of
# epoch 2 (from the mean), the process's CPU seconds (user + sys) and the final loss.
set -euo pipefail
data=$1 size=$2 reps=$3 args=$4
shift 4
out=$(mktemp -d /tmp/bench_train.XXXXXX)
printf "%-40s %4s %3s %9s %9s %9s %8s %8s %s\n" binary size rep e1_s/it e2_s/it e2_median e2_img/s cpu_s loss
for r in $(seq 1 "$reps"); do
  for bin in "$@"; do
    run=$out/run
    rm -rf "$run"
    # shellcheck disable=SC2086
    /usr/bin/time -f "%U %S" -o "$out/time" "$bin" train --data "$data" --out "$run" --epochs 2 \
      --size "$size" $args --threads 2 2>"$out/log" || { cat "$out/log"; exit 1; }
    read -r u s <"$out/time"
    loss=$(grep -o "epoch 2 done: mean loss [0-9.]*" "$out/log" | awk '{print $NF}')
    med=$(awk -F, 'NR>1 && $1==2{print $NF}' "$run/train.csv" | sort -g | awk '{v[NR]=$1} END{print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}')
    awk -F, -v b="$bin" -v sz="$size" -v r="$r" -v cpu="$(echo "$u + $s" | bc)" -v loss="$loss" -v med="$med" \
      'NR>1{s[$1]+=$NF; n[$1]++} END{printf "%-40s %4s %3s %9.4f %9.4f %9.4f %8.2f %8.1f %s\n", b, sz, r, s[1]/n[1], s[2]/n[2], med, n[2]/s[2], cpu, loss}' \
      "$run/train.csv"
  done
done
rm -rf "$out"
