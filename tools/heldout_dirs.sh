#!/usr/bin/env bash
# Makes the held-out split of a training run evaluable by `cryodet eval`: the annotations of
# RUN/test.txt ("image annotation" lines) copied into GT_DIR and their images linked into IMG_DIR
# under the names the list gives them (both directories are made anew).
#
#   tools/heldout_dirs.sh RUN/test.txt GT_DIR IMG_DIR
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 RUN/test.txt GT_DIR IMG_DIR" >&2; exit 2; }
rm -rf "$2" "$3"
mkdir -p "$2" "$3"
while read -r img ann; do
  cp "$ann" "$2/"
  ln -s "$(realpath "$img")" "$3/$(basename "$img")"
done < "$1"
