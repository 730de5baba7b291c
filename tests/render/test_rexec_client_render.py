"""Every file on a pair that names the rexec client or its settings, rendered
from the roles (rexec_client.yml), against what they rendered before the paths
came from one place (offload_common_rexec_*): rexec_client.json, byte for byte
(each file as its lines, so that a diff of the pin reads like one of the files).

A change that means to change one of these files writes the new pin with
REXEC_CLIENT_PIN_WRITE=1 and shows it in its diff."""
import json
import os
import pathlib

import pytest

from render_lib import render

HERE = pathlib.Path(__file__).resolve().parent
PIN = HERE / 'rexec_client.json'


def _render(tmp_path, *extra):
    render('rexec_client.yml', tmp_path, *extra)
    return {node.name: {path.name: path.read_text() for path in sorted(node.iterdir())}
            for node in sorted(tmp_path.iterdir())}


@pytest.fixture(scope='module')
def defaults(tmp_path_factory):
    return _render(tmp_path_factory.mktemp('defaults'))


def _every_consumer_names(dpu, config_dir, bin_dir):
    """Each kind of file on the DPU that runs the client names it and its settings under config_dir and bin_dir."""
    client_env, client = config_dir + '/client.env', bin_dir + '/rexec'
    assert '. %s\n' % client_env in dpu['patched-wrapper-containerd-shim']
    assert 'exec %s /usr/bin/containerd-shim "$@"\n' % client in dpu['patched-wrapper-containerd-shim']
    assert 'EnvironmentFile=%s\n' % client_env in dpu['patched-dpu-offload-dockerd.service']
    assert 'exec %s /usr/bin/ps "$@"\n' % client in dpu['stock-ps']
    shim = json.loads(dpu['stock-shim.json'])
    assert (shim['rexec'], shim['client_env']) == (client, client_env)
    assert 'EnvironmentFile=%s\n' % client_env in dpu['stock-dpu-offload-stock-shims.service']
    assert 'ExecStart=%s/rexec_forward ' % bin_dir in dpu['stock-dpu-offload-stock-shims.service']
    assert 'ExecStart=%s/rexec_fiforelay ' % bin_dir in dpu['stock-dpu-offload-stock-fiforelay.service']
    paths = [entry['path'] for entry in json.loads(dpu['rexec-files.json'])]
    assert client_env in paths and client in paths


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
    _every_consumer_names(defaults['render-dpu'], '/etc/rexec', '/usr/local/bin')


def test_one_setting_moves_the_client_for_every_role(tmp_path):
    moved = _render(tmp_path, '-e', 'offload_common_rexec_config_dir=/opt/rexec-etc',
                    '-e', 'offload_common_rexec_bin_dir=/opt/rexec-bin')
    for node, files in moved.items():
        for name, text in files.items():
            assert '/etc/rexec' not in text and '/usr/local/bin/rexec' not in text, '%s: %s' % (node, name)
    _every_consumer_names(moved['render-dpu'], '/opt/rexec-etc', '/opt/rexec-bin')
