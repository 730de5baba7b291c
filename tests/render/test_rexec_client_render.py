"""Every file on a pair that names the rexec client or its settings, rendered
from the roles (rexec_client.yml), against what they rendered before the paths
came from one place (offload_common_rexec_*): rexec_client.json, byte for byte
(each file as its lines, so that a diff of the pin reads like one of the files).

A change that means to change one of these files writes the new pin with
REXEC_CLIENT_PIN_WRITE=1 and shows it in its diff."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PIN = HERE / 'rexec_client.json'


def _render(tmp_path, *extra):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    result = subprocess.run([playbook, '-i', str(HERE / 'inventory.yml'), str(HERE / 'rexec_client.yml'),
                             '-e', 'render_dir=%s' % tmp_path, *extra],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {node.name: {path.name: path.read_text() for path in sorted(node.iterdir())}
            for node in sorted(tmp_path.iterdir())}


@pytest.fixture(scope='module')
def defaults(tmp_path_factory):
    return _render(tmp_path_factory.mktemp('defaults'))


def test_the_files_are_what_they_were(defaults):
    if os.environ.get('REXEC_CLIENT_PIN_WRITE') == '1':
        lines = {node: {name: text.splitlines(keepends=True) for name, text in files.items()} for node, files in defaults.items()}
        PIN.write_text(json.dumps(lines, indent=1, sort_keys=True) + '\n')
    pinned = json.loads(PIN.read_text())
    assert sorted(defaults) == sorted(pinned)
    for node, files in pinned.items():
        assert sorted(defaults[node]) == sorted(files), node
        for name, lines in files.items():
            assert defaults[node][name] == ''.join(lines), '%s: %s' % (node, name)


def test_the_pin_covers_every_kind_of_consumer(defaults):
    dpu = defaults['render-dpu']
    assert '. /etc/rexec/client.env\n' in dpu['patched-wrapper-containerd-shim']
    assert 'exec /usr/local/bin/rexec /usr/bin/containerd-shim "$@"\n' in dpu['patched-wrapper-containerd-shim']
    assert 'EnvironmentFile=/etc/rexec/client.env\n' in dpu['patched-dpu-offload-dockerd.service']
    assert 'exec /usr/local/bin/rexec /usr/bin/ps "$@"\n' in dpu['stock-ps']
    assert json.loads(dpu['stock-shim.json'])['client_env'] == '/etc/rexec/client.env'
    assert 'ExecStart=/usr/local/bin/rexec_forward ' in dpu['stock-dpu-offload-stock-shims.service']
    paths = [entry['path'] for entry in json.loads(dpu['rexec-files.json'])]
    assert '/etc/rexec/client.env' in paths and '/usr/local/bin/rexec' in paths


def test_one_setting_moves_the_client_for_every_role(tmp_path):
    moved = _render(tmp_path, '-e', 'offload_common_rexec_config_dir=/opt/rexec-etc',
                    '-e', 'offload_common_rexec_bin_dir=/opt/rexec-bin')
    for node, files in moved.items():
        for name, text in files.items():
            assert '/etc/rexec' not in text and '/usr/local/bin/rexec' not in text, '%s: %s' % (node, name)
    dpu = moved['render-dpu']
    assert '. /opt/rexec-etc/client.env\n' in dpu['patched-wrapper-modprobe']
    assert 'exec /opt/rexec-bin/rexec /usr/sbin/modprobe "$@"\n' in dpu['patched-wrapper-modprobe']
    assert json.loads(dpu['stock-shim.json'])['rexec'] == '/opt/rexec-bin/rexec'
    assert 'ExecStart=/opt/rexec-bin/rexec_fiforelay ' in dpu['stock-dpu-offload-stock-fiforelay.service']
    paths = [entry['path'] for entry in json.loads(dpu['rexec-files.json'])]
    assert '/opt/rexec-etc/client.env' in paths and '/opt/rexec-bin/rexec' in paths
