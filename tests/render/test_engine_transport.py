"""offload.yml's first play refuses an engine mode over a transport it does
not deploy, before it records anything; run on the controller with stand-in
nodes, in check mode and with the record file in a temporary directory."""
import os
import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]

# name: (engine, transport)
NODES = {'stock-sshfs': ('stock', 'sshfs'), 'stock-qtfs': ('stock', 'qtfs'),
         'patched-qtfs': ('patched', 'qtfs'), 'patched-sshfs': ('patched', 'sshfs')}


def run_engine_mode(tmp_path):
    hosts = {name: {'dpu_offload_address': '192.0.2.%d' % (10 + i), 'dpu_offload_engine': engine,
                    'dpu_offload_transport': transport}
             for i, (name, (engine, transport)) in enumerate(NODES.items())}
    inventory = {'offload_hosts': {'hosts': hosts},
                 'all': {'vars': {'ansible_connection': 'local',
                                  'ansible_python_interpreter': '{{ ansible_playbook_python }}'}}}
    playbook = [{'name': 'The engine mode', 'hosts': 'offload_hosts', 'gather_facts': False,
                 'vars': {'offload_common_mode_file': str(tmp_path / '{{ inventory_hostname }}.mode')},
                 'tasks': [{'name': 'Check and record', 'ansible.builtin.include_role': {
                     'name': 'dpu.offload.offload_common', 'tasks_from': 'engine_mode.yml'}},
                     {'name': 'Reached', 'ansible.builtin.debug': {'msg': 'reached {{ inventory_hostname }}'}}]}]
    (tmp_path / 'hosts.yml').write_text(yaml.safe_dump(inventory))
    (tmp_path / 'play.yml').write_text(yaml.safe_dump(playbook, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default')
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    result = subprocess.run([ansible_playbook, '--check', '-i', str(tmp_path / 'hosts.yml'), str(tmp_path / 'play.yml')],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    return result, result.stdout + result.stderr


def test_only_the_stock_mode_over_qtfs_is_refused_and_nothing_is_recorded(tmp_path):
    result, output = run_engine_mode(tmp_path)
    assert result.returncode == 2, output[-3000:]
    reached = {name for name in NODES if 'reached %s' % name in output}
    assert reached == {'stock-sshfs', 'patched-qtfs', 'patched-sshfs'}, output[-3000:]
    words = ' '.join(output.split())
    assert ('the stock engine mode runs over sshfs, not dpu_offload_transport qtfs. Set dpu_offload_transport to sshfs, '
            "or dpu_offload_engine: patched for the guide's engine over qtfs.") in words, output[-3000:]
    assert not list(tmp_path.glob('*.mode'))
