"""The stock mode's CRI pieces without a lab: the sandbox image builder (roles/stock_engine/files)."""
import hashlib
import json
import pathlib
import subprocess
import sys
import tarfile


ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools'))
import role_defaults  # noqa: E402  pylint: disable=wrong-import-position

FILES = ROOT / 'roles' / 'stock_engine' / 'files'


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
