"""The HOST after a reboot (qtfs_server): its binds come back before anything
serves the shared directories, and the engine loads qtfs_server.ko itself.

Rendered from the roles' templates for the stand-in pair (qtfs over vsock and
TCP) and for the lab's (sshfs). Before, a rebooted HOST started the engine
with no module and served the bare /run tmpfs (whose ioctl oopses the HOST)."""
import configparser
import json
import os
import shlex
import subprocess

import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The one list the roles render from, read, not restated.
SHARED = [entry['path'] for entry in yaml.safe_load(
    (ROOT / 'roles/offload_common/defaults/main/shared_mounts.yml').read_text())['offload_common_shared_mounts']]

UNIT = 'dpu-offload-host-mounts.service'
SCRIPT = '/usr/local/lib/dpu-offload/qtfs-server/boot-mounts.sh'
NETNS = {'path': '/run/docker/netns/default', 'src': '/proc/1/ns/net', 'opts': 'bind'}


def _unit(path):
    parsed = configparser.ConfigParser(interpolation=None, strict=False)
    parsed.optionxform = str
    parsed.read_string(path.read_text())
    return parsed


def _plan(host_dir):
    return json.loads((host_dir / 'data.json').read_text())['boot_plan']


def test_over_qtfs_every_run_directory_is_bound_from_disk_then_the_namespace(vsock):
    plan = _plan(vsock[0])
    assert plan[-1] == NETNS
    binds = plan[:-1]
    # The shared directories on the /run tmpfs, each from its copy on disk.
    assert [b['path'] for b in binds] == [path for path in SHARED if path.startswith('/run/')] != []
    assert all(b['src'] == '/var/lib/dpu-offload/qtfs-disk' + b['path'] and b['opts'] == 'bind' for b in binds)


def test_over_sshfs_only_the_namespace_is_bound(lab):
    # sshfs serves tmpfs files safely: nothing is kept on disk.
    assert _plan(lab[0]) == [NETNS]


@pytest.mark.parametrize('pair', ['vsock', 'lab'])
def test_the_boot_script_makes_each_bind_unless_it_is_there(request, pair):
    host_dir = request.getfixturevalue(pair)[0]
    script = host_dir / 'host-mounts.sh'
    assert subprocess.run(['sh', '-n', str(script)], check=False).returncode == 0
    lines = script.read_text().splitlines()
    guarded = [line for line in lines if line.startswith('mountpoint -q ')]
    expected = []
    for item in _plan(host_dir):
        path, src = shlex.quote(item['path']), shlex.quote(item['src'])
        expected.append('mountpoint -q %s || { point %s %s && mount -o bind %s %s; }' % (path, path, src, src, path))
    assert guarded == expected
    assert '# %s: the mounts this node\'s deploy made, made' % UNIT in lines


def test_the_boot_unit_runs_before_whatever_serves_the_directories(vsock):
    unit = _unit(vsock[0] / 'host-mounts.service')
    assert unit['Unit']['Before'].split() == ['qtfs-engine.service', 'dpu-offload-sftp.service']
    assert unit['Service']['Type'] == 'oneshot' and unit['Service']['RemainAfterExit'] == 'yes'
    assert unit['Service']['ExecStart'] == SCRIPT
    assert unit['Install']['WantedBy'] == 'multi-user.target'


def test_the_engine_requires_the_binds(vsock):
    unit = _unit(vsock[0] / 'qtfs-engine.service')
    assert unit['Unit']['Requires'] == UNIT
    assert UNIT in unit['Unit']['After'].split()


@pytest.mark.parametrize('pair, params', [
    # The parameters as dpu.offload.kmod passes them: sorted by name.
    ('vsock', ['qtfs_log_level=ERROR', 'qtfs_server_vsock_cid=2', 'qtfs_server_vsock_port=12345']),
    ('tcp', ['qtfs_log_level=ERROR', 'qtfs_server_ip=192.0.2.10', 'qtfs_server_port=12345']),
])
def test_the_engine_loads_its_module_with_the_pairs_parameters_when_it_is_not_loaded(request, tmp_path, pair, params):
    line = _unit(request.getfixturevalue(pair)[0] / 'qtfs-engine.service')['Service']['ExecStartPre']
    # As systemd runs it: $$ is a literal $, then the words split as a shell would.
    argv = shlex.split(line.replace('$$', '$'))
    assert argv[:2] == ['/bin/sh', '-c']
    # This kernel has no qtfs_server loaded; a stand-in insmod records what it gets.
    assert not os.path.exists('/sys/module/qtfs_server')
    (tmp_path / 'insmod').write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done > "$CALLS"\n')
    (tmp_path / 'insmod').chmod(0o755)
    env = dict(os.environ, PATH='%s:/usr/bin:/bin' % tmp_path, CALLS=str(tmp_path / 'calls'))
    subprocess.run(argv, env=env, check=True, timeout=30)
    assert (tmp_path / 'calls').read_text().splitlines() == ['/usr/local/lib/dpu-offload/qtfs/qtfs_server.ko'] + params
