"""The pairing check and the gate between plays, run on the controller with
stand-in nodes: a broken pair stops on its own, the others go on."""
import os
import pathlib
import subprocess
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# good: a pair that finishes; half: a pair whose DPU fails in the first play;
# twice: a HOST two DPUs name.
INVENTORY = {
    'offload_hosts': {'hosts': {'good-host': {'dpu_offload_address': '192.0.2.10'},
                                'half-host': {'dpu_offload_address': '192.0.2.20'},
                                'twice-host': {'dpu_offload_address': '192.0.2.30'}}},
    'offload_dpus': {'hosts': {'good-dpu': {'dpu_offload_address': '192.0.2.11', 'dpu_offload_host': 'good-host'},
                               'half-dpu': {'dpu_offload_address': '192.0.2.21', 'dpu_offload_host': 'half-host'},
                               'twice-dpu1': {'dpu_offload_address': '192.0.2.31', 'dpu_offload_host': 'twice-host'},
                               'twice-dpu2': {'dpu_offload_address': '192.0.2.32', 'dpu_offload_host': 'twice-host'}}},
    'all': {'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': '{{ ansible_playbook_python }}',
                     'dpu_offload_transport': 'sshfs'}},
}

# offload.yml's first play and gate, with the package-manager lookup skipped.
PLAYBOOK = [
    {'name': 'The pair', 'hosts': 'offload_hosts:offload_dpus', 'gather_facts': False,
     'vars': {'ansible_facts': {'pkg_mgr': 'apt'}},
     'roles': [{'role': 'dpu.offload.offload_common'}],
     'tasks': [{'name': 'Fail one DPU', 'ansible.builtin.fail': {'msg': 'broken on purpose'},
                'when': "inventory_hostname == 'half-dpu'"}],
     'post_tasks': [{'name': 'Mark the stage done', 'ansible.builtin.include_tasks': str(ROOT / 'playbooks/tasks/pair_done.yml'),
                     'vars': {'pair_gate_stage': 'mode'}}]},
    {'name': 'The next stage', 'hosts': 'offload_hosts:offload_dpus', 'gather_facts': False,
     'pre_tasks': [{'name': 'Gate',
                    'ansible.builtin.include_role': {'name': 'dpu.offload.offload_common', 'tasks_from': 'pair_gate'},
                    'vars': {'offload_common_pair_after': 'mode'}}],
     'tasks': [{'name': 'Reached', 'ansible.builtin.debug': {'msg': 'reached'}}]},
]


def test_a_broken_pair_stops_alone(tmp_path):
    (tmp_path / 'hosts.yml').write_text(yaml.safe_dump(INVENTORY))
    (tmp_path / 'play.yml').write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default', ANSIBLE_CALLBACK_RESULT_FORMAT='yaml')
    playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    result = subprocess.run([playbook, '-i', str(tmp_path / 'hosts.yml'), str(tmp_path / 'play.yml')],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    recap = {line.split()[0]: line for line in output.split('PLAY RECAP')[-1].splitlines() if ':' in line}
    assert all('failed=0' in recap[n] for n in ('good-host', 'good-dpu')), recap
    assert output.count('reached') >= 2
    words = ' '.join(output.split())
    # The HOST two DPUs name stops all three in the pairing (after the
    # argument check), before anything else.
    for node in ('twice-host', 'twice-dpu1', 'twice-dpu2'):
        assert 'ok=1 ' in recap[node] and 'failed=1' in recap[node], recap[node]
        assert '%s: the HOST twice-host is named by 2 DPUs (twice-dpu1, twice-dpu2)' % node in words
    # The HOST of the DPU that failed stops at the gate, naming its partner.
    assert 'failed=1' in recap['half-host'] and 'failed=1' in recap['half-dpu']
    assert 'half-host stops: its partner half-dpu failed (its error is above)' in words
    assert '--limit half-host,half-dpu' in words
