"""The sshfs transport (roles/sshfs_transport, offload_common_sshfs_*), rendered
from the roles (sshfs.yml) for the pairs of pairs.yml: the SFTP endpoint's files
byte for byte as qtfs_server rendered them before the transport had a role of
its own, and the mounts of both engine modes with the options and sources that
qtfs_client and stock_engine each derived by hand before; then one setting
moving the key and the port for every mode."""
import pathlib

import pytest
import yaml

from render_lib import node_data, render

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED_LIST = yaml.safe_load((ROOT / 'roles/offload_common/defaults/main/shared_mounts.yml').read_text())['offload_common_shared_mounts']

SSHD_CONFIG_BEFORE = '''# Ansible managed
# SFTP only, for the paired DPU's sshfs mounts; nothing else is possible.
ListenAddress {address}
Port 2222
HostKey /etc/dpu-offload/sftp/ssh_host_ed25519_key
PidFile /run/dpu-offload-sftp.pid
AuthorizedKeysFile /etc/dpu-offload/sftp/authorized_keys
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
UsePAM no
{chroot}ForceCommand internal-sftp
Subsystem sftp internal-sftp
AllowTcpForwarding no
AllowStreamLocalForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTunnel no
PermitTTY no
PermitUserRC no
PermitUserEnvironment no
MaxAuthTries 2
ClientAliveInterval 15
ClientAliveCountMax 3
'''
STOCK_CHROOT = '# The peer sees only the directories bound into this tree.\nChrootDirectory /var/lib/dpu-offload/sftp-root\n'

UNIT_BEFORE = '''# Ansible managed
[Unit]
Description=dpu.offload SFTP endpoint for the paired DPU's sshfs mounts
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStartPre=/usr/sbin/sshd -t -f /etc/dpu-offload/sftp/sshd_config
ExecStart=/usr/sbin/sshd -D -e -f /etc/dpu-offload/sftp/sshd_config
ExecReload=/bin/kill -HUP $MAINPID
# sshd's privilege-separation directory, shared with the system's sshd.
RuntimeDirectory=sshd
RuntimeDirectoryPreserve=yes
Restart=on-failure

[Install]
WantedBy=multi-user.target
'''

# qtfs_client_sshfs_options and stock_engine_sshfs_options (the same list) with
# the key, the pin and the port, as both roles joined them.
OPTS_BEFORE = ('reconnect,ServerAliveInterval=5,ServerAliveCountMax=3,allow_other,StrictHostKeyChecking=yes,'
               'IdentityFile=/etc/dpu-offload/sshfs/id_ed25519,UserKnownHostsFile=/etc/dpu-offload/sshfs/known_hosts,port=2222')
# stock_engine_shared's own options per directory, after the common ones.
STOCK_RUNTIME = 'dir_cache=no,entry_timeout=0,attr_timeout=0,negative_timeout=0'
STOCK_EXTRA = {
    '/var/lib/containerd/io.containerd.snapshotter.v1.native': 'auto_cache',
    '/run/containerd/io.containerd.runtime.v2.task': STOCK_RUNTIME,
    # The stdio fifo directories: read-only since issue 31's point 4 (the HOST only opens the fifos).
    '/run/containerd/fifo': STOCK_RUNTIME + ',ro',
    '/var/lib/docker/vfs': 'auto_cache',
    '/var/lib/docker/containers': 'ro',
    '/run/docker/containerd': STOCK_RUNTIME + ',ro',
    '/run/containerd/io.containerd.grpc.v1.cri/containers': STOCK_RUNTIME + ',ro',
    '/run/containerd/io.containerd.grpc.v1.cri/sandboxes': STOCK_RUNTIME + ',ro',
    '/var/lib/containerd/io.containerd.grpc.v1.cri': 'ro',
}
PAIRS = {'s4': ('192.0.2.20', '192.0.2.21'), 's6': ('2001:db8::10', '2001:db8::11')}


def _render(tmp_path, *extra):
    render('sshfs.yml', tmp_path, *extra, inventory=HERE / 'pairs.yml')
    return tmp_path


@pytest.fixture(scope='module')
def out(tmp_path_factory):
    return _render(tmp_path_factory.mktemp('sshfs'))


def _bracketed(address):
    return '[%s]' % address if ':' in address else address


@pytest.mark.parametrize('node, address', [('s4-host', '192.0.2.20'), ('s6-host', '2001:db8::10'), ('s6-dpu', '2001:db8::11')])
def test_the_endpoint_files_are_what_qtfs_server_rendered(out, node, address):
    assert (out / node / 'sshd_config').read_text() == SSHD_CONFIG_BEFORE.format(address=address, chroot='')
    assert (out / node / 'sshd_config-stock').read_text() == SSHD_CONFIG_BEFORE.format(address=address, chroot=STOCK_CHROOT)
    assert (out / node / 'dpu-offload-sftp.service').read_text() == UNIT_BEFORE


def test_the_patched_dpu_mounts_its_hosts_directories_with_the_options_of_before(out):
    for pair, (host, _dpu) in PAIRS.items():
        mounts = node_data(out, pair + '-dpu')['patched_mounts']
        assert [m['src'] for m in mounts] == ['root@%s:%s' % (_bracketed(host), e['path']) for e in SHARED_LIST]
        assert [m['opts'] for m in mounts] == [','.join(o for o in (OPTS_BEFORE, e.get('sshfs_opts')) if o) for e in SHARED_LIST]
        assert node_data(out, pair + '-dpu')['known_hosts'] == '[%s]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Q=\n' % host


def test_the_stock_host_mounts_the_dpus_directories_at_their_own_paths(out):
    for pair, (_host, dpu) in PAIRS.items():
        host_data, dpu_data = node_data(out, pair + '-host'), node_data(out, pair + '-dpu')
        mounts = host_data['stock_mounts']
        assert {m['path']: m['opts'] for m in mounts} == {path: OPTS_BEFORE + ',' + extra for path, extra in STOCK_EXTRA.items()}
        assert all(m['src'] == 'root@%s:%s' % (_bracketed(dpu), m['path']) and m['fstype'] == 'fuse.sshfs' for m in mounts)
        # The HOST runs the client entry point, the DPU the endpoint; the DPU mounts nothing.
        assert (host_data['stock_mounts_sftp'], host_data['stock_serves_sftp']) == (True, False)
        assert (dpu_data['stock_mounts_sftp'], dpu_data['stock_serves_sftp']) == (False, True)
        assert dpu_data['stock_mounts'] == []
        assert host_data['known_hosts'] == '[%s]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Q=\n' % dpu


def test_one_setting_moves_the_key_and_the_port_for_both_modes(tmp_path):
    moved = _render(tmp_path, '-e', 'offload_common_sshfs_key_dir=/opt/keys', '-e', 'offload_common_sftp_port=2022',
                    '-e', '{"offload_common_sshfs_options": ["reconnect"]}')
    opts = 'reconnect,IdentityFile=/opt/keys/id_ed25519,UserKnownHostsFile=/opt/keys/known_hosts,port=2022'
    for pair, (host, dpu) in PAIRS.items():
        patched = node_data(moved, pair + '-dpu')['patched_mounts']
        stock = node_data(moved, pair + '-host')['stock_mounts']
        assert patched and stock
        assert all(m['opts'].startswith(opts) and '/etc/dpu-offload/sshfs' not in m['opts'] for m in patched + stock)
        assert node_data(moved, pair + '-host')['sshfs_mount'] == {
            'source': 'root@' + _bracketed(dpu), 'opts': opts,
            'identity': '/opt/keys/id_ed25519', 'known_hosts': '/opt/keys/known_hosts'}
        assert node_data(moved, pair + '-dpu')['known_hosts'].startswith('[%s]:2022 ' % host)
        assert 'Port 2022\n' in (moved / (pair + '-host') / 'sshd_config').read_text()
