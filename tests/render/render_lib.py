"""Runs a render playbook of tests/render on the controller, with the stand-in pair of inventory.yml."""
import json
import os
import pathlib
import subprocess
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def render_template(template, dest, variables, mode='0644'):
    """One template (a path) rendered to dest on the controller by ansible.builtin.template, with variables."""
    dest = pathlib.Path(dest)
    play = [{'hosts': 'localhost', 'gather_facts': False, 'connection': 'local', 'vars': variables,
             'tasks': [{'ansible.builtin.template': {'src': str(template), 'dest': str(dest), 'mode': mode}}]}]
    playbook = dest.parent / ('render-%s.yml' % dest.name)
    playbook.write_text(yaml.safe_dump(play))
    render(playbook, dest.parent, '-e', 'ansible_python_interpreter=' + sys.executable, inventory='localhost,')
    return dest


def render(playbook, render_dir, *extra, inventory=None):
    """ansible-playbook -i inventory (the stand-in pair) HERE/playbook -e render_dir=render_dir [extra...], which must succeed."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    binary = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    result = subprocess.run([binary, '-i', str(inventory or HERE / 'inventory.yml'), str(HERE / playbook),
                             '-e', 'render_dir=%s' % render_dir, *extra],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def node_data(render_dir, node):
    """The data.json a render playbook wrote for node."""
    return json.loads((pathlib.Path(render_dir) / node / 'data.json').read_text())


class Run:
    """An ansible-playbook run: rc, output, and per node the message it failed with (failed) and its recap line."""

    def __init__(self, result):
        self.rc = result.returncode
        self.output = result.stdout + result.stderr
        self.failed = {}
        self.unreachable = {}
        self.recap = {}
        for line in self.output.splitlines():
            # With the JSON result format a failure is one line: fatal: [node]: FAILED! => {...}
            for kind, found in (('FAILED!', self.failed), ('UNREACHABLE!', self.unreachable)):
                marker = ']: %s => ' % kind
                if line.startswith('fatal: [') and marker in line:
                    node = line[len('fatal: ['):line.index(']')].split(' -> ')[0]
                    found[node] = json.loads(line.split(marker, 1)[1])['msg']
        for line in self.output.split('PLAY RECAP')[-1].splitlines():
            if ' : ok=' in line:
                self.recap[line.split()[0]] = dict(item.split('=') for item in line.split(':', 1)[1].split())

    def __repr__(self):
        return 'rc=%d\n%s' % (self.rc, self.output[-4000:])


def run_playbook(playbook, inventory, *extra, env=None):
    """ansible-playbook -i inventory playbook [extra...] from the checkout, any outcome; a Run."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default', ANSIBLE_CALLBACK_RESULT_FORMAT='json',
               **(env or {}))
    binary = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    result = subprocess.run([binary, '-i', str(inventory), str(playbook), *extra],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    return Run(result)
