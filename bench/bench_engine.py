# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark the stock engine mode on a deployed lab pair: offloaded against local, side by side.

    python3 bench/bench_engine.py [--dpu lab-dpu] [--runs 20] [--quick]

On the DPU of a pair deployed with playbooks/offload.yml (stock mode):
- `docker run --rm IMAGE true`, offloaded (the default runtime: shim and
  process on the HOST) against the same dockerd with containerd's built-in
  local runtime (`--runtime io.containerd.runtime.v1.linux`: containerd-shim
  v1 and runc on the DPU itself);
- `docker exec CONTAINER true` into an offloaded and a local container;
- `ctr run --rm IMAGE true`, offloaded;
- a pod through CRI (RunPodSandbox + CreateContainer + StartContainer, as
  kubelet starts one), offloaded against CRI's local runtime handler
  `dpu-local` (the lab enables it: stock_engine_cri_local_runtime), in the
  host's network and with a network of its own (CNI: on the HOST through the
  relay for the offloaded pod, on the DPU for the local one);
- where the time of one offloaded shim call goes: the rexec client's start-up
  against the floor `python3 -I -S -c "import ssl, socket"`, and a whole
  rexec round trip of `ps` on the HOST.
Every round runs in one shell on the DPU, so `docker exec` of the lab is not
timed.  Median and p95 per row, one run; the machines are noisy, so read the
ratios.  Not a test: nothing is asserted.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

import cri_pods

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import role_defaults  # noqa: E402  pylint: disable=wrong-import-position

# Where the rexec role puts the client and its settings (its defaults, not a copy).
REXEC = role_defaults.rexec()

IMAGE = "localhost/dpu-offload/bench-busybox:1"
ROUND = r"""
set -euo pipefail
runs=$1; shift
for i in $(seq "$runs"); do
  t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000 ))
done
"""
PREPARE = r"""
set -euo pipefail
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
  mkdir "$dir/bin"; cp /bin/busybox "$dir/bin/busybox"
  for app in sh sleep true; do ln -s busybox "$dir/bin/$app"; done
  tar -C "$dir" -c . | docker import - "$IMAGE" >/dev/null
fi
if ! ctr -n default images list -q | grep -qx "$IMAGE"; then
  docker save "$IMAGE" | ctr -n default images import - >/dev/null
fi
if ! ctr -n k8s.io images list -q | grep -qx "$IMAGE"; then
  docker save "$IMAGE" | ctr -n k8s.io images import --snapshotter native - >/dev/null
fi
docker rm -f bench-offloaded bench-local >/dev/null 2>&1 || true
docker run -d --name bench-offloaded "$IMAGE" sleep 3600 >/dev/null
docker run -d --name bench-local --runtime io.containerd.runtime.v1.linux "$IMAGE" sleep 3600 >/dev/null
"""
CLEANUP = "docker rm -f bench-offloaded bench-local >/dev/null 2>&1 || true"
# One `docker run --rm true` taken apart: create (dockerd alone, on the DPU),
# start (the shim's start, the forwarded socket, runc create and start on the
# HOST), wait (the exit event back), rm (task delete, shim shutdown).
PHASES = r"""
set -euo pipefail
runs=$1; shift
ms() { echo $(( ($(date +%s%N) - $1) / 1000 )); }
for i in $(seq "$runs"); do
  t=$(date +%s%N); id=$(docker create "$@" "$IMAGE" true); c=$(ms "$t")
  t=$(date +%s%N); docker start "$id" >/dev/null; s=$(ms "$t")
  t=$(date +%s%N); docker wait "$id" >/dev/null; w=$(ms "$t")
  t=$(date +%s%N); docker rm "$id" >/dev/null; r=$(ms "$t")
  echo "$c $s $w $r"
done
"""


def on_dpu(dpu, script, *args, env=None):
    cmd = ["docker", "exec"]
    for key, value in (env or {}).items():
        cmd += ["-e", "%s=%s" % (key, value)]
    cmd += [dpu, "bash", "-c", script, "bench"] + list(args)
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def timed(dpu, runs, *command):
    """Milliseconds of each of `runs` runs of command on the DPU (after one untimed warm-up)."""
    on_dpu(dpu, ROUND, "1", *command)
    return [int(line) / 1000.0 for line in on_dpu(dpu, ROUND, str(runs), *command).split()]


def phases(dpu, runs, *flags):
    """Per phase (create, start, wait, rm), the milliseconds of each run."""
    on_dpu(dpu, PHASES, "1", *flags, env={"IMAGE": IMAGE})
    rows = [line.split() for line in on_dpu(dpu, PHASES, str(runs), *flags, env={"IMAGE": IMAGE}).splitlines()]
    return [[int(r[i]) / 1000.0 for r in rows] for i in range(4)]


def p95(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def row(name, values, peer=None):
    median = statistics.median(values)
    ratio = "%.2fx" % (median / statistics.median(peer)) if peer else ""
    print("| %s | %.0f | %.0f | %s |" % (name, median, p95(values), ratio))
    return median


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--dpu", default="lab-dpu", help="the DPU's lab container (lab-dpu)")
    parser.add_argument("--runs", type=int, default=20, help="runs per row (20)")
    parser.add_argument("--quick", action="store_true", help="3 runs per row: checks the benchmark still works")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    dpu = args.dpu
    client = "set -a; . %s; set +a; exec \"$@\"" % REXEC.client_env
    on_dpu(dpu, PREPARE, env={"IMAGE": IMAGE})
    try:
        local_run = timed(dpu, runs, "docker", "run", "--rm", "--runtime", "io.containerd.runtime.v1.linux", IMAGE, "true")
        off_run = timed(dpu, runs, "docker", "run", "--rm", IMAGE, "true")
        local_exec = timed(dpu, runs, "docker", "exec", "bench-local", "true")
        off_exec = timed(dpu, runs, "docker", "exec", "bench-offloaded", "true")
        ctr_run = timed(dpu, runs, "ctr", "-n", "default", "run", "--rm", IMAGE, "bench-ctr", "true")
        floor = timed(dpu, runs, "python3", "-I", "-S", "-c", "import ssl, socket")
        # The client as the offload shim runs it (python3 -I -S, its TLS settings loaded), up to a
        # refused connection: everything a shim call pays before the network.
        refused = "set -a; . %s; set +a; \"$@\" 2>/dev/null || true" % REXEC.client_env
        start = timed(dpu, runs, "bash", "-c", refused, "rexec-env", "env", "CMD_NET_ADDR=tcp://127.0.0.1:9",
                      "python3", "-I", "-S", os.path.join(REXEC.install_dir, "rexec"), "/bin/true")
        local_phases = phases(dpu, runs, "--runtime", "io.containerd.runtime.v1.linux")
        off_phases = phases(dpu, runs)
        round_trip = timed(dpu, runs, "bash", "-c", client, "rexec-env", REXEC.client, "/usr/bin/ps", "-o", "comm=", "-p", "1")
        pod_runs = 3 if args.quick else 10
        local_pods = cri_pods.pod_starts(dpu, pod_runs, IMAGE, handler="dpu-local")
        off_pods = cri_pods.pod_starts(dpu, pod_runs, IMAGE)
        local_net_pods = cri_pods.pod_starts(dpu, pod_runs, IMAGE, handler="dpu-local", own_network=True)
        off_net_pods = cri_pods.pod_starts(dpu, pod_runs, IMAGE, own_network=True)
    finally:
        on_dpu(dpu, CLEANUP)
    print("\n%d runs per row on %s (ms)%s\n" % (runs, dpu, " -- QUICK MODE, figures not meaningful" if args.quick else ""))
    print("| command | median | p95 | against the row above |\n|---|---|---|---|")
    row("docker run --rm true, local runtime on the DPU", local_run)
    median = row("docker run --rm true, offloaded (target: at most 1.5x local)", off_run, local_run)
    row("docker exec true, local container", local_exec)
    row("docker exec true, offloaded container", off_exec, local_exec)
    row("ctr run --rm true, offloaded", ctr_run)
    row("python3 -I -S -c 'import ssl, socket' (the floor)", floor)
    row("rexec client start-up to a refused connect (target: at most 1.3x)", start, floor)
    row("rexec round trip: ps on the HOST", round_trip)
    row("CRI pod start (sandbox + container running), local runtime on the DPU, %d runs" % len(local_pods), local_pods)
    pod_median = row("CRI pod start, offloaded (target: at most 1.5x local)", off_pods, local_pods)
    row("CRI pod start with its own network, local runtime (CNI on the DPU)", local_net_pods)
    net_median = row("CRI pod start with its own network, offloaded (CNI on the HOST; target: at most 1.5x local)",
                     off_net_pods, local_net_pods)
    print("\nWhere a docker run goes (medians, ms):\n\n| phase | local | offloaded | extra |\n|---|---|---|---|")
    for name, loc, off in zip(("create (dockerd on the DPU)", "start (shim, runc create + start)", "wait (exit event)",
                               "rm (task delete, shim shutdown)"), local_phases, off_phases):
        print("| %s | %.0f | %.0f | %+.0f |" % (name, statistics.median(loc), statistics.median(off),
                                                statistics.median(off) - statistics.median(loc)))
    print("\nWhat a network of its own adds to a pod's start (medians, ms): local %+.0f, offloaded %+.0f"
          % (statistics.median(local_net_pods) - statistics.median(local_pods), net_median - pod_median))
    ratios = {"docker_run_offloaded_over_local": round(median / statistics.median(local_run), 2),
              "cri_pod_start_offloaded_over_local": round(pod_median / statistics.median(local_pods), 2),
              "cri_pod_start_own_network_offloaded_over_local": round(net_median / statistics.median(local_net_pods), 2),
              "rexec_startup_over_floor": round(statistics.median(start) / statistics.median(floor), 2)}
    print("\nJSON: " + json.dumps(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
