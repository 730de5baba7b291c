"""The qtfs transport, rendered: what the roles would write for a pair, checked
without qtfs.ko (this kernel cannot load modules). Named as such in the README."""
import configparser
import json
import pathlib
import subprocess

import pytest
import yaml

from render_lib import render

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The one list the roles render from, read, not restated.
SHARED_LIST = yaml.safe_load((ROOT / 'roles/offload_common/defaults/main/shared_mounts.yml').read_text())['offload_common_shared_mounts']
SHARED = [entry['path'] for entry in SHARED_LIST]
WRITABLE = [entry['path'] for entry in SHARED_LIST if not entry.get('readonly')]
SECTIONS = ['Open', 'Write', 'Read', 'Readdir', 'Mkdir', 'Rmdir', 'Create', 'Unlink', 'Rename', 'Setattr', 'Setxattr', 'Mount']
# The operations that change files: never in a directory the engine only reads.
WRITE_SECTIONS = ['Write', 'Mkdir', 'Rmdir', 'Create', 'Unlink', 'Rename', 'Setattr', 'Setxattr']


def _render(tmp_path, *extra):
    render('qtfs.yml', tmp_path, *extra)
    return tmp_path / 'render-host', tmp_path / 'render-dpu'


@pytest.fixture(scope='module')
def vsock(tmp_path_factory):
    return _render(tmp_path_factory.mktemp('vsock'))


@pytest.fixture(scope='module')
def tcp(tmp_path_factory):
    return _render(tmp_path_factory.mktemp('tcp'), '-e', 'offload_common_qtfs_connection=tcp',
                   '-e', '{"qtfs_server_whitelist_extra": {"Udsconnect": ["/run/containerd"]}}')


def _whitelist(host_dir):
    parser = configparser.ConfigParser()
    parser.optionxform = str
    parser.read(host_dir / 'qtfs_whitelist')
    return parser


def test_whitelist_lists_exactly_the_shared_paths(vsock):
    whitelist = _whitelist(vsock[0])
    assert whitelist.sections() == SECTIONS
    for section in SECTIONS:
        expected = WRITABLE if section in WRITE_SECTIONS else SHARED
        assert whitelist[section]['Path'].split(';') == expected, section
    assert '/proc' not in WRITABLE and '/sys' not in WRITABLE and '/var/lib/docker/containers' in WRITABLE
    assert len(SHARED) <= 64  # the engine reads at most 64 entries a section


def test_whitelist_extra_sections_are_added_not_widened(tcp):
    whitelist = _whitelist(tcp[0])
    assert whitelist['Udsconnect']['Path'] == '/run/containerd'
    assert whitelist['Mount']['Path'].split(';') == SHARED


def test_vsock_parameters_and_engine_arguments(vsock):
    host, dpu = (json.loads((d / 'data.json').read_text()) for d in vsock)
    assert host['module_params'] == {'qtfs_server_vsock_cid': 2, 'qtfs_server_vsock_port': 12345, 'qtfs_log_level': 'ERROR'}
    assert dpu['module_params'] == {'qtfs_server_vsock_cid': 2, 'qtfs_server_vsock_port': 12345, 'qtfs_log_level': 'ERROR'}
    assert host['engine_args'] == [16, 1, 2, 12121, 10, 12121]
    assert host['ports'] == []
    unit = (vsock[0] / 'qtfs-engine.service').read_text()
    assert 'ExecStart=/usr/local/lib/dpu-offload/qtfs/engine 16 1 2 12121 10 12121\n' in unit


def test_tcp_test_mode_parameters_ports_and_udsproxyd(tcp):
    host, dpu = (json.loads((d / 'data.json').read_text()) for d in tcp)
    assert host['module_params']['qtfs_server_ip'] == '192.0.2.10'
    assert dpu['module_params'] == {'qtfs_server_ip': '192.0.2.10', 'qtfs_server_port': 12345, 'qtfs_log_level': 'ERROR'}
    assert host['engine_args'] == [16, 1, '192.0.2.10', 12121, '192.0.2.11', 12121]
    assert host['ports'] == ['12345-12347', '12121']
    uds = (tcp[1] / 'qtfs-udsproxyd.service').read_text()
    assert 'ExecStart=/usr/bin/udsproxyd 1 192.0.2.11 12121 192.0.2.10 12121\n' in uds


def test_dpu_mount_plan_over_qtfs(vsock):
    mounts = json.loads((vsock[1] / 'data.json').read_text())['mounts']
    by_path = [(m['path'], m['fstype']) for m in mounts]
    assert by_path[0] == ('/another_rootfs', 'overlay')
    assert ('/another_rootfs/local_proc', 'proc') in by_path
    shared = [m for m in mounts if m['fstype'] == 'qtfs']
    assert [m['src'] for m in shared] == SHARED
    assert [m['path'] for m in shared] == ['/another_rootfs' + p for p in SHARED]
    assert shared[0]['opts'] == 'proc' and all(m['opts'] == '' for m in shared[1:])
    # The guide's order: the DPU's own proc before the HOST's, sysfs before /sys over it.
    paths = [p for p, _t in by_path]
    assert paths.index('/another_rootfs/local_proc') < paths.index('/another_rootfs/proc')
    assert [t for p, t in by_path if p == '/another_rootfs/sys'] == ['sysfs', 'qtfs']


def test_boot_script_loads_qtfs_then_mounts_in_plan_order(vsock):
    script = (vsock[1] / 'mount-rootfs.sh').read_text()
    assert subprocess.run(['sh', '-n', str(vsock[1] / 'mount-rootfs.sh')], check=False).returncode == 0
    lines = script.splitlines()
    insmod = next(i for i, line in enumerate(lines) if 'insmod' in line)
    assert "qtfs_server_vsock_cid=2" in lines[insmod] and '/usr/local/lib/dpu-offload/qtfs/qtfs.ko' in lines[insmod]
    mounts = [line for line in lines if line.startswith('mount ')]
    mounts_json = json.loads((vsock[1] / 'data.json').read_text())['mounts']
    assert len(mounts) == len(mounts_json)
    assert all(line.endswith(' ' + m['path']) for line, m in zip(mounts, mounts_json))
    assert insmod < lines.index(mounts[0])
    assert mounts[-len(SHARED)] == 'mount -t qtfs -o proc /proc /another_rootfs/proc'
