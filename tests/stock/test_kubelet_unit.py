"""The optional kubelet unit of the stock mode, rendered by Ansible from the
role's template (no kubelet is packaged for the lab, so it never runs here)."""
import configparser
import os
import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULTS = yaml.safe_load((ROOT / 'roles/stock_engine/defaults/main.yml').read_text())


def render(tmp_path, **extra):
    out = tmp_path / 'kubelet.service'
    play = [{'hosts': 'localhost', 'gather_facts': False, 'connection': 'local',
             'vars': dict({'stock_engine_kubelet_binary': DEFAULTS['stock_engine_kubelet_binary'],
                           'stock_engine_kubelet_args': DEFAULTS['stock_engine_kubelet_args'],
                           'stock_engine_containerd_address': DEFAULTS['stock_engine_containerd_address']}, **extra),
             'tasks': [{'ansible.builtin.template': {'src': str(ROOT / 'roles/stock_engine/templates/kubelet.service.j2'),
                                                     'dest': str(out), 'mode': '0644'}}]}]
    playbook = tmp_path / 'render.yml'
    playbook.write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    binary = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    command = [binary, '-i', 'localhost,', '-e', 'ansible_python_interpreter=' + sys.executable, str(playbook)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string(out.read_text())
    return unit


def test_kubelet_speaks_cri_to_the_dpus_containerd(tmp_path):
    unit = render(tmp_path)
    exec_start = unit['Service']['ExecStart'].split()
    assert exec_start[0] == '/usr/bin/kubelet'
    assert exec_start[1] == \
        '--container-runtime-endpoint=unix://' + DEFAULTS['stock_engine_containerd_address']
    assert exec_start[2:] == DEFAULTS['stock_engine_kubelet_args']
    assert 'containerd.service' in unit['Unit']['Requires']


def test_arguments_are_quoted_for_systemd(tmp_path):
    unit = render(tmp_path, stock_engine_kubelet_args=['--node-labels=a=b c'])
    assert unit['Service']['ExecStart'].endswith("'--node-labels=a=b c'")
