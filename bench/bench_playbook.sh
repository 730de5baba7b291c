#!/usr/bin/env bash
# Times playbooks/offload.yml (fresh converge, idempotent re-run) and
# playbooks/teardown.yml on lab fleets of the given sizes, in one run, and
# prints them side by side. Each size gets a fresh lab; the lab is removed
# afterwards. Usage: bench/bench_playbook.sh 1 4
set -euo pipefail
cd "$(dirname "$0")/.."
export ANSIBLE_CONFIG=$PWD/ansible.cfg PATH=$PWD/.venv/bin:$PATH
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(1 4)
declare -A took
mkdir -p .lab
# A failed run is no figure: stop, and keep its output.
seconds() {
  local t0=$EPOCHREALTIME
  "$@" > .lab/bench-last.log 2>&1 || { echo "failed ($*), see .lab/bench-last.log" >&2; exit 1; }
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {print b - a}'; }
for n in "${sizes[@]}"; do
  make -s lab-down PAIRS="$n" > /dev/null 2>&1 || true
  make -s lab-up PAIRS="$n" > /dev/null
  inv=$(make -s --no-print-directory -f Makefile PAIRS="$n" print-inventory)
  took[$n,converge]=$(seconds ansible-playbook playbooks/offload.yml -i "$inv")
  took[$n,rerun]=$(seconds ansible-playbook playbooks/offload.yml -i "$inv")
  took[$n,teardown]=$(seconds ansible-playbook playbooks/teardown.yml -i "$inv")
  make -s lab-down PAIRS="$n" > /dev/null
done
printf '\n| pairs | fresh converge (s) | idempotent re-run (s) | teardown (s) |\n|---|---|---|---|\n'
for n in "${sizes[@]}"; do
  printf '| %s | %.1f | %.1f | %.1f |\n' "$n" "${took[$n,converge]}" "${took[$n,rerun]}" "${took[$n,teardown]}"
done
if [ "${#sizes[@]}" -ge 2 ]; then
  a=${sizes[0]} b=${sizes[-1]}
  printf '\nre-run, %s pairs vs %s: %sx the time\n' "$b" "$a" "$(awk -v x="${took[$b,rerun]}" -v y="${took[$a,rerun]}" 'BEGIN {printf "%.2f", x / y}')"
fi
