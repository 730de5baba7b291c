"""Renders of tests/render/qtfs.yml, made once per session and shared by the
render tests: the qtfs pair of tests/render/inventory.yml over vsock and over
TCP, and the lab's pair (inventories/lab, sshfs)."""
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _render(out_dir, inventory, *extra):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    result = subprocess.run([playbook, '-i', str(inventory), str(HERE / 'qtfs.yml'),
                             '-e', 'render_dir=%s' % out_dir, *extra],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out_dir


@pytest.fixture(scope='session')
def vsock(tmp_path_factory):
    out = _render(tmp_path_factory.mktemp('vsock'), HERE / 'inventory.yml')
    return out / 'render-host', out / 'render-dpu'


@pytest.fixture(scope='session')
def tcp(tmp_path_factory):
    out = _render(tmp_path_factory.mktemp('tcp'), HERE / 'inventory.yml', '-e', 'offload_common_qtfs_connection=tcp',
                  '-e', '{"qtfs_server_whitelist_extra": {"Udsconnect": ["/run/containerd"]}}')
    return out / 'render-host', out / 'render-dpu'


@pytest.fixture(scope='session')
def lab(tmp_path_factory):
    out = _render(tmp_path_factory.mktemp('lab'), ROOT / 'inventories/lab')
    return out / 'lab-host', out / 'lab-dpu'
