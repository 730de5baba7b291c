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
