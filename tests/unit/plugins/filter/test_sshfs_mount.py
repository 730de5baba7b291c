# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.sshfs_mount import sshfs_known_host, sshfs_mount

# offload_common_sshfs_options and offload_common_sshfs_key_dir as the roles ship them.
OPTIONS = ['reconnect', 'ServerAliveInterval=5', 'ServerAliveCountMax=3', 'allow_other', 'StrictHostKeyChecking=yes']
KEY_DIR = '/etc/dpu-offload/sshfs'
# What qtfs_client and stock_engine each joined by hand before the filter, for the lab's pair.
LAB_OPTS = ('reconnect,ServerAliveInterval=5,ServerAliveCountMax=3,allow_other,StrictHostKeyChecking=yes,'
            'IdentityFile=/etc/dpu-offload/sshfs/id_ed25519,UserKnownHostsFile=/etc/dpu-offload/sshfs/known_hosts,port=2222')
PUB = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Q= dpu.offload sftp lab-host\n'


def test_the_lab_pairs_mounts_are_what_the_roles_made_before():
    assert sshfs_mount('172.30.77.10', KEY_DIR, 2222, OPTIONS) == {
        'source': 'root@172.30.77.10', 'opts': LAB_OPTS,
        'identity': '/etc/dpu-offload/sshfs/id_ed25519', 'known_hosts': '/etc/dpu-offload/sshfs/known_hosts'}


def test_an_ipv6_peer_is_bracketed_in_the_source_only():
    mount = sshfs_mount('2001:db8::10', KEY_DIR, '2222', OPTIONS)
    assert mount['source'] == 'root@[2001:db8::10]'
    assert mount['opts'] == LAB_OPTS


def test_another_key_directory_port_and_user():
    mount = sshfs_mount('dpu1.example.net', '/var/lib/keys/', 2022, [], user='offload')
    assert mount == {'source': 'offload@dpu1.example.net',
                     'opts': 'IdentityFile=/var/lib/keys/id_ed25519,UserKnownHostsFile=/var/lib/keys/known_hosts,port=2022',
                     'identity': '/var/lib/keys/id_ed25519', 'known_hosts': '/var/lib/keys/known_hosts'}


@pytest.mark.parametrize('option', ['IdentityFile=/root/.ssh/id_rsa', 'port=22', 'userknownhostsfile=/dev/null', 'PORT = 22'])
def test_options_the_filter_sets_itself_are_refused(option):
    with pytest.raises(AnsibleFilterError, match='leave it out'):
        sshfs_mount('192.0.2.10', KEY_DIR, 2222, OPTIONS + [option])


@pytest.mark.parametrize('args, message', [
    (('', KEY_DIR, 2222, OPTIONS), 'peer address'),
    ((None, KEY_DIR, 2222, OPTIONS), 'peer address'),
    (('[2001:db8::10]', KEY_DIR, 2222, OPTIONS), 'peer address'),
    (('root@192.0.2.10', KEY_DIR, 2222, OPTIONS), 'peer address'),
    (('192.0.2.10', 'etc/sshfs', 2222, OPTIONS), 'absolute'),
    (('192.0.2.10', '', 2222, OPTIONS), 'absolute'),
    (('192.0.2.10', KEY_DIR, 0, OPTIONS), 'TCP port'),
    (('192.0.2.10', KEY_DIR, 65536, OPTIONS), 'TCP port'),
    (('192.0.2.10', KEY_DIR, 'ssh', OPTIONS), 'TCP port'),
    (('192.0.2.10', KEY_DIR, 2222, 'reconnect,allow_other'), 'list of strings'),
    (('192.0.2.10', KEY_DIR, 2222, ['reconnect,allow_other']), 'without commas'),
    (('192.0.2.10', KEY_DIR, 2222, ['']), 'without commas'),
    (('192.0.2.10', KEY_DIR, 2222, [5]), 'without commas'),
])
def test_bad_arguments_are_refused(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        sshfs_mount(*args)


def test_a_user_with_a_separator_is_refused():
    with pytest.raises(AnsibleFilterError, match='user'):
        sshfs_mount('192.0.2.10', KEY_DIR, 2222, OPTIONS, user='root@evil')


def test_the_pin_names_the_endpoint_as_ssh_looks_it_up():
    # The line qtfs_client wrote before the filter, without the key's comment.
    assert sshfs_known_host(PUB, '172.30.77.10', 2222) == '[172.30.77.10]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Q=\n'
    assert sshfs_known_host(PUB, '2001:db8::10', '2222') == '[2001:db8::10]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Q=\n'
    # On port 22 ssh looks the bare address up: a bracketed pattern would never match.
    assert sshfs_known_host(PUB, '2001:db8::10', 22) == '2001:db8::10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Q=\n'


def test_no_key_yet_gives_no_line():
    assert sshfs_known_host('', '192.0.2.10', 2222) == ''
    assert sshfs_known_host(None, '192.0.2.10', 2222) == ''


@pytest.mark.parametrize('key', ['AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Q=', 'garbage here', 'ssh-ed25519'])
def test_what_is_not_a_public_key_is_refused(key):
    with pytest.raises(AnsibleFilterError, match='OpenSSH public key'):
        sshfs_known_host(key, '192.0.2.10', 2222)


def test_the_pin_needs_a_peer_and_a_port():
    with pytest.raises(AnsibleFilterError, match='peer address'):
        sshfs_known_host(PUB, '', 2222)
    with pytest.raises(AnsibleFilterError, match='TCP port'):
        sshfs_known_host(PUB, '192.0.2.10', -1)
