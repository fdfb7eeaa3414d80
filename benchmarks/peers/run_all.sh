#!/usr/bin/env bash
# Regenerate every peer-written dataset and every reference dump, then compare the references.
# Needs the two peer venvs (../shared/tools/peers/setup_lerobot.sh, setup_opentau.sh) in $PEERS.
#
#   bash benchmarks/peers/run_all.sh                 # everything, 18-40 minutes on 2 shared cores
#                                                    # (OpenTau's delta_timestamps reads are ~10 items/s)
#   OUT=/tmp/peer_data SEED=0 bash benchmarks/peers/run_all.sh
#
# Writes only under $OUT (default /tmp/peer_data) and the peers' HF caches under $PEERS. Never the repo.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PEERS=${PEERS:-/tmp/peers}
OUT=${OUT:-/tmp/peer_data}
SEED=${SEED:-0}
DUMPS=$OUT/dumps
LR="$PEERS/venv/bin/python"
OT="$PEERS/venv_tau/bin/python"
mkdir -p "$OUT" "$DUMPS"
quiet() { grep -v -E "Map|examples/s|Generating|Svt\[|moov atom|it/s\]" || true; }

# 1. datasets, written by each library's own writer
( . "$PEERS/env_lerobot.sh"; "$LR" "$HERE/make_lerobot_dataset.py" "$OUT" --seed "$SEED" ) 2>&1 | quiet > "$OUT/make_lerobot.log"
( . "$PEERS/env_opentau.sh"; "$OT" "$HERE/make_opentau_dataset.py" "$OUT" --seed "$SEED" ) 2>&1 | quiet > "$OUT/make_opentau.log"
# H.264 variant of lr_video (LeRobot writer with rgb_encoder vcodec=h264), for the decoder-spread measurement
( . "$PEERS/env_lerobot.sh"; "$LR" "$HERE/make_lerobot_dataset.py" "$OUT" --seed "$SEED" --which lr_video \
    --vcodec h264 --suffix _h264 ) 2>&1 | quiet > "$OUT/make_lerobot_h264.log"

# 2. reference dumps. OpenTau opens copies in $OUT/opentau_opened (first open = episodes=None, so its
#    meta/speed_percentiles.jsonl is computed over the whole dataset), never the pristine roots.
rm -rf "$OUT/opentau_opened" "$OUT/opentau_opened_subset_first"
rm -f "$DUMPS"/*.npz
lr() {  # dataset backend query episodes
  ( . "$PEERS/env_lerobot.sh"
    "$LR" "$HERE/dump_reference_items.py" --lib lerobot --backend "$2" --root "$OUT/$1" --query "$3" \
      --episodes "$4" --seed "$SEED" --out "$DUMPS/$1__lerobot-$2__$3__$(echo "$4" | tr , -).npz" ) 2>&1 | quiet
}
ot() {
  ( . "$PEERS/env_opentau.sh"
    "$OT" "$HERE/dump_reference_items.py" --lib opentau --backend "$2" --root "$OUT/$1" --query "$3" \
      --episodes "$4" --seed "$SEED" --scratch "$OUT/opentau_opened" \
      --out "$DUMPS/$1__opentau-$2__$3__$(echo "$4" | tr , -).npz" ) 2>&1 | quiet
}
for q in none deltas single; do
  for eps in all 7,2,11; do
    for b in pyav torchcodec; do lr lr_video "$b" "$q" "$eps"; done
    lr lr_image pyav "$q" "$eps"
    lr lr_tabular pyav "$q" "$eps"
    for d in ot_video ot_image ot_tabular lr_video lr_image lr_tabular; do ot "$d" torchcodec "$q" "$eps"; done
  done
done
for b in pyav torchcodec; do lr lr_video_h264 "$b" none all; done
ot lr_video_h264 torchcodec none all
# OpenTau's PyAV path on a video dataset (expected to fail on every video item: recorded, not hidden)
ot ot_video pyav none all
# LeRobot 0.6.1 on a v2.1 dataset: refuses to open (BackwardCompatibilityError); record the message
( . "$PEERS/env_lerobot.sh"
  "$LR" "$HERE/dump_reference_items.py" --lib lerobot --backend pyav --root "$OUT/ot_tabular" \
    --out "$DUMPS/ot_tabular__lerobot-pyav__none__all.npz" ) > "$OUT/lerobot_on_v21.log" 2>&1 || true
# OpenTau speed labels when the first open is a subset: the file's population is that subset
( . "$PEERS/env_opentau.sh"
  "$OT" "$HERE/dump_reference_items.py" --lib opentau --backend torchcodec --root "$OUT/ot_tabular" \
    --episodes 7,2,11,40,41,42,43,44,45,46,47,48,49,50 --scratch "$OUT/opentau_opened_subset_first" --fresh-copy \
    --out "$DUMPS/ot_tabular__opentau-torchcodec__none__subset-first.npz" ) 2>&1 | quiet

# 3. compare (numpy only; any of the two venvs)
"$LR" "$HERE/compare_references.py" "$DUMPS" --data "$OUT" --json "$OUT/compare_summary.json"

# 4. the same frames decoded by another PyAV/FFmpeg build: the peers' (PyAV 15.1, FFmpeg 7.1) and, when present,
#    the project's own .venv (PyAV 18, FFmpeg 8). numpy + pyarrow + av only.
PROJECT_PY=${PROJECT_PY:-$HERE/../../.venv/bin/python}
: > "$OUT/pyav_spread.jsonl"
for py in "$LR" "$PROJECT_PY"; do
  [ -x "$py" ] || continue
  for d in lr_video__lerobot-pyav__none__all lr_video__opentau-torchcodec__none__all \
           ot_video__opentau-torchcodec__none__all lr_video_h264__lerobot-torchcodec__none__all; do
    "$py" "$HERE/decode_frames_pyav.py" "$DUMPS/$d.npz" --data "$OUT" | tee -a "$OUT/pyav_spread.jsonl"
  done
done
