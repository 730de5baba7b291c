#!/usr/bin/env bash
# By hand, not in make test (it boots two emulated guests, minutes on 2
# cores): bring the VM lab up, ping both guests with Ansible, ping across the
# private link both ways, print boot times and memory, and take the lab down
# again unless KEEP=1. Run from the checkout after make venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$PWD/.venv/bin:$PATH ANSIBLE_CONFIG=$PWD/ansible.cfg
inventory=${INVENTORY:-inventories/vm}
vmlab() { python lab/vm/vmlab.py "$@"; }
[ -n "${KEEP:-}" ] || trap 'vmlab down' EXIT
start=$(date +%s)
vmlab up -i "$inventory"
echo "smoke: lab-up took $(( $(date +%s) - start )) s"
ansible all -i "$inventory" -m ansible.builtin.ping
host_address=$(ansible-inventory -i "$inventory" --host vm-host | python -c 'import json,sys; print(json.load(sys.stdin)["dpu_offload_address"])')
dpu_address=$(ansible-inventory -i "$inventory" --host vm-dpu | python -c 'import json,sys; print(json.load(sys.stdin)["dpu_offload_address"])')
ansible vm-dpu -i "$inventory" -m ansible.builtin.command -a "ping -c 3 -W 5 $host_address"
ansible vm-host -i "$inventory" -m ansible.builtin.command -a "ping -c 3 -W 5 $dpu_address"
ansible all -i "$inventory" -m ansible.builtin.shell -a 'uname -r; free -m | sed -n 2p; systemd-analyze | head -1'
vmlab status -i "$inventory"
cat .lab/vm/boot-times.json; echo
echo "smoke: passed in $(( $(date +%s) - start )) s"
