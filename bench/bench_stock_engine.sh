#!/usr/bin/env bash
# Times `ctr run --rm IMAGE true` on the DPU of a pair deployed with
# playbooks/stock_engine.yml: offloaded (runtime io.containerd.offload.v2,
# shim and process on the HOST) against local (io.containerd.runc.v2 on the
# DPU itself), same image and snapshotter. Not a test; prints a table.
#   bench/bench_stock_engine.sh [DPU container (lab-dpu)] [runs (10)]
# The image comes from molecule/stock/files/busybox_oci.py (imported here
# when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
dpu=${1:-lab-dpu}
runs=${2:-10}
image=localhost/dpu-offload/busybox:latest
if ! docker exec "$dpu" ctr -n default images list -q | grep -qx "$image"; then
  docker exec -i "$dpu" python3 - /var/tmp/dpu-offload-busybox.tar "$image" < molecule/stock/files/busybox_oci.py
  docker exec "$dpu" ctr -n default images import --snapshotter native /var/tmp/dpu-offload-busybox.tar > /dev/null
fi
# One shell on the DPU runs every round, so docker exec is not timed.
docker exec -e IMAGE="$image" -e RUNS="$runs" "$dpu" bash -c '
  set -euo pipefail
  time_runs() {
    local runtime=$1 i t0 t1 total=0 best=
    ctr -n default run --rm --snapshotter native --runtime "$runtime" "$IMAGE" bench-warm true
    for i in $(seq "$RUNS"); do
      t0=$(date +%s%N)
      ctr -n default run --rm --snapshotter native --runtime "$runtime" "$IMAGE" "bench-$i" true
      t1=$(date +%s%N)
      total=$((total + (t1 - t0) / 1000000))
      if [ -z "$best" ] || [ $(((t1 - t0) / 1000000)) -lt "$best" ]; then best=$(((t1 - t0) / 1000000)); fi
    done
    echo "$((total / RUNS)) $best"
  }
  read -r off_mean off_best < <(time_runs io.containerd.offload.v2)
  read -r loc_mean loc_best < <(time_runs io.containerd.runc.v2)
  printf "\n| ctr run --rm true (%s runs) | mean (ms) | best (ms) |\n|---|---|---|\n" "$RUNS"
  printf "| offloaded (shim and process on the HOST) | %s | %s |\n" "$off_mean" "$off_best"
  printf "| local on the DPU | %s | %s |\n" "$loc_mean" "$loc_best"
  awk -v a="$off_mean" -v b="$loc_mean" "BEGIN {printf \"\noffloaded / local: %.1fx\n\", a / b}"
'
