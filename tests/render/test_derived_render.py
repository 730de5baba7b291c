"""What the roles derive from the pairing and from offload_common_shared_mounts,
rendered with their own defaults, vars and templates (tests/render/derived.yml)
for IPv4 and IPv6 pairs over qtfs and sshfs, and pinned to what the roles made before these
derivations moved into filters."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED_LIST = yaml.safe_load((ROOT / 'roles/offload_common/defaults/main/shared_mounts.yml').read_text())['offload_common_shared_mounts']


def _render(out):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    result = subprocess.run([playbook, '-i', str(HERE / 'pairs.yml'), str(HERE / 'derived.yml'),
                             '-e', 'render_dir=%s' % out],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.fixture(scope='module')
def out(tmp_path_factory):
    return _render(tmp_path_factory.mktemp('derived'))


def _data(out, node):
    return json.loads((out / node / 'data.json').read_text())


# The HOST's directories and modes as qtfs_server_directories listed them by
# hand before they were derived from the shared list.
HOST_DIRECTORIES_BEFORE = {
    '/var/lib/docker/containers': '0710', '/var/lib/docker/containerd': '0711', '/var/lib/docker/overlay2': '0710',
    '/var/lib/docker/image': '0700', '/var/lib/docker/tmp': '0700', '/run/docker/containerd': '0711',
    '/run/docker/netns': '0755', '/run/containerd/io.containerd.runtime.v1.linux': '0711', '/var/lib/kubelet/pods': '0750',
}


def test_host_directories_are_the_shared_list_without_proc_and_sys_then_netns(out):
    for node in ('q4-host', 's4-host', 's6-host'):
        directories = _data(out, node)['directories']
        assert {d['path']: d['mode'] for d in directories} == HOST_DIRECTORIES_BEFORE
        assert [d['path'] for d in directories] == [e['path'] for e in SHARED_LIST if not e.get('pseudo')] + ['/run/docker/netns']
        # file_set gives a parent it creates the mode of the entry that needs it
        # first: /run/docker comes from /run/docker/containerd, as before.
        paths = [d['path'] for d in directories]
        assert paths.index('/run/docker/containerd') < paths.index('/run/docker/netns')
    assert _data(out, 'q4-dpu')['directories'] == []


# Each node's pair, as offload_common gave it before the dpu.offload.offload_pair filter.
PAIRS_BEFORE = {
    'q4-host': {'address': '192.0.2.10', 'is_host': True, 'peer': 'q4-dpu', 'peer_address': '192.0.2.11'},
    'q4-dpu': {'address': '192.0.2.11', 'is_host': False, 'peer': 'q4-host', 'peer_address': '192.0.2.10'},
    's6-host': {'address': '2001:db8::10', 'is_host': True, 'peer': 's6-dpu', 'peer_address': '2001:db8::11'},
    's6-dpu': {'address': '2001:db8::11', 'is_host': False, 'peer': 's6-host', 'peer_address': '2001:db8::10'},
}


def test_the_pair_of_each_node(out):
    for node, pair in PAIRS_BEFORE.items():
        assert _data(out, node)['pair'] == pair, node


def test_vsock_ids_from_the_inventory_or_the_defaults(out):
    # q4: the inventory's 3 (HOST) and 11 (DPU); s6: none given, the HOST's 2 and the DPU's 10.
    vsock = {'qtfs_log_level': 'ERROR', 'qtfs_server_vsock_port': 12345}
    assert _data(out, 'q4-host')['host_module_params'] == dict(vsock, qtfs_server_vsock_cid=3)
    assert _data(out, 'q4-host')['host_engine_args'] == [16, 1, 3, 12121, 11, 12121]
    assert _data(out, 'q4-dpu')['dpu_module_params'] == dict(vsock, qtfs_server_vsock_cid=3)
    assert _data(out, 's6-host')['host_engine_args'] == [16, 1, 2, 12121, 10, 12121]
    assert _data(out, 's6-dpu')['dpu_module_params'] == dict(vsock, qtfs_server_vsock_cid=2)
    assert 'ExecStart=/usr/bin/udsproxyd 1 11 12121 3 12121\n' in (out / 'q4-dpu/qtfs-udsproxyd.service').read_text()
    assert 'ExecStart=/usr/bin/udsproxyd 1 10 12121 2 12121\n' in (out / 's6-dpu/qtfs-udsproxyd.service').read_text()


def test_the_hosts_address_in_sshfs_sources_and_the_pinned_key(out):
    for node, host, address in (('s4-dpu', '192.0.2.20', '192.0.2.20'), ('s6-dpu', '[2001:db8::10]', '2001:db8::10')):
        data = _data(out, node)
        assert [m['src'] for m in data['dpu_shared_mounts']] == ['root@%s:%s' % (host, e['path']) for e in SHARED_LIST]
        assert data['dpu_known_hosts'] == '[%s]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Q=\n' % address
    assert [m['src'] for m in _data(out, 'q4-dpu')['dpu_shared_mounts']] == [e['path'] for e in SHARED_LIST]


def _firewall(out, node, port):
    return json.loads((out / node / ('firewall-%s.json' % port)).read_text())


def test_firewalld_rules_name_the_paired_dpu_in_its_family(out):
    assert _firewall(out, 's6-host', '2222') == {
        'zone': 'public', 'permanent': True, 'immediate': True, 'state': 'enabled',
        'rich_rule': 'rule family="ipv6" source address="2001:db8::11" port port="2222" protocol="tcp" accept'}
    assert _firewall(out, 's4-host', '30000-39999')['rich_rule'] == (
        'rule family="ipv4" source address="192.0.2.21" port port="30000-39999" protocol="tcp" accept')
    # vsock qtfs opens no TCP port of its own; the shim ports are patched_docker's.
    assert sorted(p.name for p in (out / 'q4-host').glob('firewall-*')) == ['firewall-30000-39999.json']


# patched_docker's wrapper, as it rendered before its entries came from dpu.offload.file_entries.
WRAPPER_BEFORE = '''#!/bin/sh
# Ansible managed
# dpu.offload wrapper: runs {command} on {peer} through rexec,
# with every argument kept as it was given.
set -a
. /etc/rexec/client.env
set +a
exec /usr/local/bin/rexec {command} "$@"
'''


def _files(out, node, key):
    return {e['path']: e for e in _data(out, node)[key]}


def test_patched_docker_wrappers_stand_in_the_root_on_a_dpu_and_at_the_real_path_on_a_host(out):
    dpu = _files(out, 'q4-dpu', 'wrapper_files')
    assert {path: e['template_vars']['wrapper']['command'] for path, e in dpu.items()} == {
        '/another_rootfs/usr/local/bin/containerd-shim': '/usr/bin/containerd-shim',
        '/another_rootfs/usr/local/bin/remote_kill': '/usr/bin/kill',
        '/another_rootfs/usr/sbin/modprobe': '/usr/sbin/modprobe'}
    host = _files(out, 'q4-host', 'wrapper_files')
    assert list(host) == ['/usr/bin/containerd']
    for entry in list(dpu.values()) + list(host.values()):
        assert (entry['template'], entry['mode'], entry['parents']) == ('wrapper.sh.j2', '0755', True)
        assert set(entry) == {'path', 'template', 'mode', 'parents', 'template_vars'}
    assert (out / 'q4-dpu/_another_rootfs_usr_sbin_modprobe').read_text() == WRAPPER_BEFORE.format(
        command='/usr/sbin/modprobe', peer='q4-host')
    assert (out / 'q4-host/_usr_bin_containerd').read_text() == WRAPPER_BEFORE.format(command='/usr/bin/containerd', peer='q4-dpu')


def test_patched_docker_units_one_per_enabled_daemon_after_containerds_configuration(out):
    files = _data(out, 's6-dpu')['service_files']
    assert files[:2] == [
        {'path': '/another_rootfs/run/docker/containerd', 'mode': '0711', 'parents': True},
        {'path': '/another_rootfs/run/docker/containerd/containerd.toml', 'mode': '0644', 'template': 'containerd.toml.j2'}]
    units = files[2:]
    assert [u['path'] for u in units] == ['/etc/systemd/system/dpu-offload-containerd.service',
                                          '/etc/systemd/system/dpu-offload-dockerd.service']
    assert all((u['template'], u['mode'], set(u)) == ('offload-engine.service.j2', '0644', {'path', 'template', 'mode', 'template_vars'})
               for u in units)
    assert units[1]['template_vars']['unit']['name'] == 'dpu-offload-dockerd.service'
    dockerd = (out / 's6-dpu/_etc_systemd_system_dpu-offload-dockerd.service').read_text().splitlines()
    assert 'Environment=SHIM_HOST=2001:db8::10' in dockerd
    assert 'ExecStart=/usr/bin/dockerd --containerd /run/containerd/containerd.sock' in dockerd
    assert 'Requires=rexec.service dpu-offload-containerd.service' in dockerd
    assert _data(out, 's6-host')['service_files'] == []
