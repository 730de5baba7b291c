"""The stock mode's CRI pieces without a lab: the CNI plugin that refuses pod
networks, and the sandbox image builder (roles/stock_engine/files)."""
import hashlib
import json
import pathlib
import subprocess
import sys
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools'))
import role_defaults  # noqa: E402  pylint: disable=wrong-import-position

FILES = ROOT / 'roles' / 'stock_engine' / 'files'
PLUGIN = FILES / 'no_pod_network.sh'
CONF = json.dumps({'cniVersion': '0.4.0', 'name': 'dpu-offload-no-pod-network',
                   'type': 'dpu-offload-no-pod-network'})


def cni(command):
    env = {'PATH': '/usr/bin:/bin', 'CNI_CONTAINERID': 'abc', 'CNI_NETNS': '/var/run/netns/cni-1', 'CNI_IFNAME': 'eth0',
           'CNI_PATH': str(FILES)}
    if command is not None:
        env['CNI_COMMAND'] = command
    return subprocess.run(['sh', str(PLUGIN)], input=CONF, env=env, capture_output=True, text=True, check=False)


def test_add_fails_with_the_reason_as_a_cni_error():
    result = cni('ADD')
    assert result.returncode != 0
    error = json.loads(result.stdout)
    assert error['cniVersion'] == '0.4.0' and error['code'] == 100
    assert 'needs network offload' in error['msg'] and 'hostNetwork' in error['msg']


@pytest.mark.parametrize('command', ['DEL', 'CHECK'])
def test_del_and_check_succeed_because_add_made_nothing(command):
    result = cni(command)
    assert (result.returncode, result.stdout) == (0, '')


def test_version_and_an_unknown_command():
    version = json.loads(cni('VERSION').stdout)
    assert '0.4.0' in version['supportedVersions']
    for command in ('BOGUS', None):
        result = cni(command)
        assert result.returncode != 0 and json.loads(result.stdout)['code'] == 4


def test_the_sandbox_image_is_the_same_bytes_every_time_and_runs_its_entrypoint(tmp_path):
    entrypoint = role_defaults.stock_sandbox_entrypoint()
    busybox = tmp_path / 'busybox'
    busybox.write_bytes(b'\x7fELF stand-in')
    archives = []
    for name in ('a.tar', 'b.tar'):
        subprocess.run([sys.executable, str(FILES / 'oci_image.py'), str(tmp_path / name), 'localhost/x/pause:1',
                        str(busybox), json.dumps(entrypoint)], check=True)
        archives.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert archives[0] == archives[1]
    with tarfile.open(str(tmp_path / 'a.tar')) as tar:
        index = json.load(tar.extractfile('index.json'))
        manifest_ref = index['manifests'][0]
        assert manifest_ref['annotations']['org.opencontainers.image.ref.name'] == 'localhost/x/pause:1'
        manifest = json.load(tar.extractfile('blobs/sha256/' + manifest_ref['digest'].split(':')[1]))
        config = json.load(tar.extractfile('blobs/sha256/' + manifest['config']['digest'].split(':')[1]))
    assert config['config']['Entrypoint'] == entrypoint and 'Cmd' not in config['config']
    assert config['os'] == 'linux' and config['architecture'] in ('amd64', 'arm64', 'riscv64', 'ppc64le', 's390x')
