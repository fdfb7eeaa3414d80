#!/usr/bin/env bash
# LeRobot 0.6.1 reads datasets written by robotempo's own v3.0 writer (row groups of several episodes,
# several data files), and compat_check.py compares robotempo's items with LeRobot's, key by key.
# Needs the LeRobot venv (../shared/tools/peers/setup_lerobot.sh) in $PEERS. ~2 minutes on 2 cores.
#
#   bash benchmarks/peers/lerobot_reads_ours.sh       # OUT=/tmp/peer_data/robotempo_written by default
#
# Writes only under $OUT and LeRobot's HF cache under $PEERS. Never the repo (results: pass --out).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PEERS=${PEERS:-/tmp/peers}
OUT=${OUT:-/tmp/peer_data/robotempo_written}
RESULTS=${RESULTS:-$OUT}
DUMPS=$OUT/dumps
LR="$PEERS/venv/bin/python"
PY="$REPO/.venv/bin/python"
rm -rf "$OUT"/rt_* "$DUMPS"
mkdir -p "$DUMPS"
"$PY" - "$OUT" <<'PYEOF'
import sys
from pathlib import Path

import pyarrow.parquet as pq

from robotempo.synth import write_synthetic

out = Path(sys.argv[1])
write_synthetic(out / "rt_image", version="v3.0", n_episodes=40, n_tasks=3, camera="image",
                image_size=(64, 64), mean_length=30.0, seed=11, data_files_size_in_mb=3)
write_synthetic(out / "rt_tabular", version="v3.0", n_episodes=800, n_tasks=4, camera=None,
                mean_length=40.0, seed=12, data_files_size_in_mb=2)
write_synthetic(out / "rt_video", version="v3.0", n_episodes=300, n_tasks=2, camera="video",
                image_size=(64, 64), mean_length=30.0, seed=13)
for name in ("rt_image", "rt_tabular", "rt_video"):
    root = out / name
    for f in sorted((root / "data").rglob("*.parquet")):
        pf = pq.ParquetFile(f)
        held = [len(set(pf.read_row_group(g, columns=["episode_index"]).column(0).to_pylist()))
                for g in range(pf.metadata.num_row_groups)]
        print(f"{name} {f.relative_to(root)}: {f.stat().st_size} B, episodes per row group {held}")
PYEOF
lr() {  # dataset query episodes
  ( . "$PEERS/env_lerobot.sh"
    "$LR" "$HERE/dump_reference_items.py" --lib lerobot --backend pyav --root "$OUT/$1" --query "$2" \
      --episodes "$3" --seed 0 --out "$DUMPS/$1__lerobot-pyav__$2__$(echo "$3" | tr , -).npz" ) 2>&1 \
      | grep -v -E "Map|examples/s|Generating|it/s\]" || true
}
for q in none deltas; do
  for eps in all 7,2,11; do
    for d in rt_image rt_tabular rt_video; do lr "$d" "$q" "$eps"; done
  done
done
"$PY" "$REPO/benchmarks/compat_check.py" --dumps "$DUMPS" --out "$RESULTS"
