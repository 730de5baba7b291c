#!/usr/bin/env bash
# Times playbooks/offload.yml (fresh converge, idempotent re-run) and
# playbooks/teardown.yml on lab fleets of the given sizes, in one run, and
# prints them side by side, with the CPU time the whole machine spent
# meanwhile (controller, Docker and the lab's nodes all share its cores).
# Each size gets a fresh lab; the lab is removed afterwards.
# Usage: bench/bench_playbook.sh [--quick] [SIZE...]   (default sizes: 1 4)
#   --quick  one pair unless sizes are given, no comparison line: checks that
#            the benchmark runs (the lab is still needed); not figures to quote.
set -euo pipefail
cd "$(dirname "$0")/.."
export ANSIBLE_CONFIG=$PWD/ansible.cfg PATH=$PWD/.venv/bin:$PATH
quick=
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || { if [ -n "$quick" ]; then sizes=(1); else sizes=(1 4); fi; }
for n in "${sizes[@]}"; do
  [[ $n =~ ^([1-9]|10)$ ]] || { echo "usage: $0 [--quick] [SIZE...] (sizes 1-10)" >&2; exit 2; }
done
declare -A took
mkdir -p .lab
cores=$(nproc)
# Busy CPU time of the machine so far, in clock ticks (user nice system irq softirq).
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# Prints "wall-seconds cpu-seconds". A failed run is no figure: stop, and keep its output.
seconds() {
  local t0=$EPOCHREALTIME c0; c0=$(busy)
  "$@" > .lab/bench-last.log 2>&1 || { echo "failed ($*), see .lab/bench-last.log" >&2; exit 1; }
  awk -v a="$t0" -v b="$EPOCHREALTIME" -v c0="$c0" -v c1="$(busy)" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {print b - a, (c1 - c0) / hz}'; }
for n in "${sizes[@]}"; do
  make -s lab-down PAIRS="$n" > /dev/null 2>&1 || true
  make -s lab-up PAIRS="$n" > /dev/null
  inv=$(make -s --no-print-directory -f Makefile PAIRS="$n" print-inventory)
  took[$n,converge]=$(seconds ansible-playbook playbooks/offload.yml -i "$inv")
  took[$n,rerun]=$(seconds ansible-playbook playbooks/offload.yml -i "$inv")
  took[$n,teardown]=$(seconds ansible-playbook playbooks/teardown.yml -i "$inv")
  make -s lab-down PAIRS="$n" > /dev/null
done
wall() { echo "${took[$1]% *}"; }
cpu() { echo "${took[$1]#* }"; }
[ -z "$quick" ] || printf '\nQUICK MODE: checks the benchmark runs; not figures to quote\n'
printf '\n| pairs | fresh converge (s) | idempotent re-run (s) | teardown (s) | re-run CPU (s) | re-run cores busy of %s |\n' "$cores"
printf '|---|---|---|---|---|---|\n'
for n in "${sizes[@]}"; do
  printf '| %s | %.1f | %.1f | %.1f | %.1f | %.2f |\n' "$n" "$(wall "$n,converge")" "$(wall "$n,rerun")" "$(wall "$n,teardown")" \
    "$(cpu "$n,rerun")" "$(awk -v c="$(cpu "$n,rerun")" -v w="$(wall "$n,rerun")" 'BEGIN {print c / w}')"
done
if [ -z "$quick" ] && [ "${#sizes[@]}" -ge 2 ]; then
  a=${sizes[0]} b=${sizes[-1]}
  # The fastest the larger fleet could go on these cores: its CPU time spread
  # over all of them, or the smaller fleet's time if that is longer.
  awk -v x="$(wall "$b,rerun")" -v y="$(wall "$a,rerun")" -v cb="$(cpu "$b,rerun")" -v k="$cores" -v a="$a" -v b="$b" 'BEGIN {
    floor = cb / k; if (floor < y) floor = y
    printf "\nre-run, %s pairs vs %s: %.2fx the time; %s pairs need %.1f CPU-s, at least %.1f s (%.2fx) on %s cores\n",
      b, a, x / y, b, cb, floor, floor / y, k }'
fi
