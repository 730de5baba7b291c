# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark a workload's file I/O and an image's start-up on a deployed lab pair, side by side.

    python3 bench/bench_storage.py [--dpu lab-dpu] [--host lab-host] [--runs 3] [--quick]

The same busybox script, in one run of this program:
- inside an offloaded container (docker on the DPU, default runtime: the
  container runs on the HOST, its root file system wherever the offload puts
  it), writing in its root file system;
- inside a container of the same image run by the same dockerd with the local
  runtime (`--runtime io.containerd.runtime.v1.linux`: runc on the DPU, its
  root file system on the DPU's own disk);
- on the HOST's own disk (a directory under /var/tmp, the HOST's busybox).
Rows: 200 MiB sequential write with fsync, reading it back, create / stat /
read / delete of 2,000 small files, `find` over a 20,000-entry tree.  Then
`docker run --rm` and a CRI pod start of an image of about 100 MiB in about
2,000 files, offloaded against the local runtime.

Median of `--runs` per row; the machines are noisy, so read the ratios.  Not a
test: nothing is asserted.  The lab's "machines" share one disk, so the HOST's
own disk and the local runtime's are the same device here.
"""

import argparse
import json
import statistics
import sys

import bench_engine
import cri_pods

IMAGE = "localhost/dpu-offload/bench-storage:2"
APPLETS = "sh adjtimex cat dd find mkdir rm seq sleep stat true wc"
FAT_FILE_KIB = 50


def fat_image(files):
    """The start-up image's name: its size is in its tag, so a quick run never stands in for a full one."""
    return "localhost/dpu-offload/bench-fat:%dx%dk" % (files, FAT_FILE_KIB)


# Builds both images on the DPU (once), makes them known to ctr's and CRI's namespaces.
PREPARE = r"""
set -euo pipefail
build() {  # image, extra files (count), KiB each
  docker image inspect "$1" >/dev/null 2>&1 && return 0
  dir=$(mktemp -d)
  mkdir "$dir/bin" "$dir/tmp" "$dir/work"
  cp /bin/busybox "$dir/bin/busybox"
  for app in $APPLETS; do ln -s busybox "$dir/bin/$app"; done
  if [ "$2" -gt 0 ]; then
    mkdir "$dir/data"
    for i in $(seq "$2"); do head -c "$(($3 * 1024))" /dev/urandom > "$dir/data/f$i"; done
  fi
  tar -C "$dir" -c . | docker import - "$1" >/dev/null
  rm -rf "$dir"
}
build "$IMAGE" 0 0  # (the tag changes whenever APPLETS does)
build "$FAT_IMAGE" "$FAT_FILES" "$FAT_FILE_KIB"
for image in "$IMAGE" "$FAT_IMAGE"; do
  ctr -n k8s.io images list -q | grep -qx "$image" || docker save "$image" | ctr -n k8s.io images import --snapshotter native - >/dev/null
done
"""

# The workload: prints "ROW MICROSECONDS" per step, in the directory $1.
WORKLOAD = r"""
set -e
d=$1; small=$2; tree=$3
# busybox's date has no %N; adjtimex(2) read-only gives the clock in microseconds.
now() { adjtimex | { while read -r key value _; do case $key in time.tv_sec:) s=$value;; time.tv_usec:) u=$value;; esac
  done; echo $((s * 1000000 + u)); }; }
step() { name=$1; shift; t0=$(now); "$@"; t1=$(now); echo "$name $((t1 - t0))"; }
write() { dd if=/dev/zero of="$d/big" bs=1048576 count=200 conv=fsync 2>/dev/null; }
readback() { cat "$d/big" > /dev/null; }
create() { mkdir "$d/small"; for i in $(seq "$small"); do echo "$i" > "$d/small/f$i"; done; }
stats() { stat "$d"/small/* > /dev/null; }
reads() { cat "$d"/small/* > /dev/null; }
delete() { rm -r "$d/small"; }
mktree() { for i in $(seq 100); do mkdir -p "$d/tree/$i"; for j in $(seq $((tree / 100 - 1))); do : > "$d/tree/$i/$j"; done; done; }
walk() { find "$d/tree" | wc -l > /dev/null; }
step write write
step read readback
rm -f "$d/big"
step create create
step stat stats
step read_small reads
step delete delete
mktree
step find walk
rm -rf "$d/tree"
"""

ROWS = (("write", "write 200 MiB, fsync"), ("read", "read it back"),
        ("create", "create %(small)d small files"), ("stat", "stat them"), ("read_small", "read them"),
        ("delete", "delete them"), ("find", "find over %(tree)d entries"))

# The HOST's own disk: busybox's applets first on PATH, in a fresh directory under /var/tmp.
ON_HOST = r"""
set -eu
dir=$(mktemp -d /var/tmp/dpu-offload-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/bin" "$dir/work"
busybox=$(command -v busybox)
for app in $APPLETS; do ln -s "$busybox" "$dir/bin/$app"; done
PATH="$dir/bin" "$busybox" sh -c "$WORKLOAD" sh "$dir/work" "$@"
"""


def parse(output):
    """{row: seconds} from the workload's "ROW MICROSECONDS" lines; other lines are ignored."""
    figures = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isascii() and parts[1].isdigit():
            figures[parts[0]] = int(parts[1]) / 1e6
    missing = [name for name, _label in ROWS if name not in figures]
    if missing:
        raise ValueError("the workload printed no figure for %s:\n%s" % (", ".join(missing), output))
    return figures


def medians(runs):
    """{row: median seconds} over a list of parse() results."""
    return {name: statistics.median(run[name] for run in runs) for name, _label in ROWS}


def in_container(dpu, runtime, small, tree):
    flags = ["--runtime", runtime] if runtime else []
    return parse(bench_engine.on_dpu(dpu, 'exec docker run --rm "$@"', *flags, IMAGE, "sh", "-c", WORKLOAD, "sh",
                                     "/work", str(small), str(tree)))


def on_host(host, small, tree):
    return parse(bench_engine.on_dpu(host, ON_HOST, str(small), str(tree),
                                     env={"APPLETS": APPLETS, "WORKLOAD": WORKLOAD}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--dpu", default="lab-dpu", help="the DPU's lab container (lab-dpu)")
    parser.add_argument("--host", default="lab-host", help="the HOST's lab container (lab-host)")
    parser.add_argument("--runs", type=int, default=3, help="runs per I/O row (3); start-up rows take 5x as many")
    parser.add_argument("--quick", action="store_true", help="one run, small sizes: checks the benchmark still works")
    args = parser.parse_args()
    runs, small, tree, files = (1, 200, 2000, 20) if args.quick else (args.runs, 2000, 20000, 2000)
    local = "io.containerd.runtime.v1.linux"
    fat = fat_image(files)
    env = {"IMAGE": IMAGE, "FAT_IMAGE": fat, "APPLETS": APPLETS, "FAT_FILES": str(files),
           "FAT_FILE_KIB": str(FAT_FILE_KIB)}
    bench_engine.on_dpu(args.dpu, PREPARE, env=env)
    columns = {"offloaded": [], "local": [], "host": []}
    for _run in range(runs):
        columns["offloaded"].append(in_container(args.dpu, "", small, tree))
        columns["local"].append(in_container(args.dpu, local, small, tree))
        columns["host"].append(on_host(args.host, small, tree))
    io = {name: medians(values) for name, values in columns.items()}
    start_runs = 3 if args.quick else 5 * args.runs
    run_local = bench_engine.timed(args.dpu, start_runs, "docker", "run", "--rm", "--runtime", local, fat, "true")
    run_off = bench_engine.timed(args.dpu, start_runs, "docker", "run", "--rm", fat, "true")
    pod_local = cri_pods.pod_starts(args.dpu, start_runs, fat, handler="dpu-local")
    pod_off = cri_pods.pod_starts(args.dpu, start_runs, fat)

    quick = " -- QUICK MODE, figures not meaningful" if args.quick else ""
    print("\nFile I/O, median of %d run(s) (s)%s\n" % (runs, quick))
    print("| workload | offloaded container | local runtime's container | HOST's own disk "
          "| offloaded / HOST (target: at most 1.2x) |\n|---|---|---|---|---|")
    ratios = {}
    for name, label in ROWS:
        off, loc, host = io["offloaded"][name], io["local"][name], io["host"][name]
        ratios[name] = round(off / host, 2) if host else None
        shown = "%.1fx" % ratios[name] if host else "-"
        print("| %s | %.3f | %.3f | %.3f | %s |" % (label % {"small": small, "tree": tree}, off, loc, host, shown))
    print("\nStart-up of an image of %d files x %d KiB, %d runs (ms)%s\n"
          % (files, FAT_FILE_KIB, start_runs, quick))
    print("| operation | local runtime median | offloaded median | offloaded p95 | ratio (target: at most 1.5x) |"
          "\n|---|---|---|---|---|")
    for label, loc, off in (("docker run --rm IMAGE true", run_local, run_off),
                            ("CRI pod start (sandbox + container running)", pod_local, pod_off)):
        ratio = statistics.median(off) / statistics.median(loc)
        ratios[label] = round(ratio, 2)
        figures = (statistics.median(loc), statistics.median(off), bench_engine.p95(off), ratio)
        print("| %s | %.0f | %.0f | %.0f | %.2fx |" % ((label,) + figures))
    print("\nJSON: " + json.dumps({"offloaded_over_host": ratios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
