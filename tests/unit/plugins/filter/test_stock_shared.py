# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.file_entries import file_entries
from ansible_collections.dpu.offload.plugins.filter.stock_shared import sftp_binds, stock_shared

FRESH = 'dir_cache=no,entry_timeout=0'
SHARED = [
    {'path': '/var/lib/containerd/io.containerd.snapshotter.v1.native', 'mode': '0700'},
    {'path': '/run/containerd/io.containerd.runtime.v2.task', 'mode': '0711', 'fifos': '*/*', 'bundles': True,
     'sshfs_opts': FRESH},
    {'path': '/run/containerd/fifo', 'mode': '0700', 'fifos': '*', 'sshfs_opts': FRESH},
    {'path': '/var/lib/docker/vfs', 'mode': '0710', 'engine': 'docker'},
    {'path': '/var/lib/docker/containers', 'mode': '0710', 'engine': 'docker', 'readonly': True},
    {'path': '/run/docker/containerd', 'mode': '0700', 'fifos': '*', 'engine': 'docker', 'sshfs_opts': FRESH},
]


def _paths(entries):
    return [e['path'] for e in entries]


def test_sshfs_the_dpu_owns_everything_and_the_host_mounts_it():
    dpu = stock_shared(SHARED, 'sshfs', False, ['docker'])
    host = stock_shared(SHARED, 'sshfs', True, ['docker'])
    assert dpu['owner'] == host['owner'] == 'dpu'
    assert _paths(dpu['owned_here']) == _paths(SHARED) and dpu['mounted_here'] == []
    assert host['owned_here'] == [] and _paths(host['mounted_here']) == _paths(SHARED)
    assert dpu['create_here'][1] == {'path': '/run/containerd/io.containerd.runtime.v2.task', 'mode': '0711'}
    assert host['create_here'] == []
    # The relay runs where the fifos' inode numbers are real.
    assert dpu['relay_here'] is True and host['relay_here'] is False


def test_the_owner_keeps_its_tmpfs_directories_on_disk_across_a_reboot():
    dpu = stock_shared(SHARED, 'sshfs', False, ['docker'], persist_root='/var/lib/keep/')
    assert dpu['persist_dirs'] == [
        {'path': '/var/lib/keep/run/containerd/io.containerd.runtime.v2.task', 'mode': '0711'},
        {'path': '/var/lib/keep/run/containerd/fifo', 'mode': '0700'},
        {'path': '/var/lib/keep/run/docker/containerd', 'mode': '0700'},
    ]
    assert dpu['persist_here'][0] == {'path': '/run/containerd/io.containerd.runtime.v2.task',
                                      'src': '/var/lib/keep/run/containerd/io.containerd.runtime.v2.task', 'opts': 'bind'}
    assert _paths(dpu['persist_here']) == ['/run/containerd/io.containerd.runtime.v2.task', '/run/containerd/fifo',
                                           '/run/docker/containerd']
    # The mounting side, and a node without persist_root, keep nothing.
    host = stock_shared(SHARED, 'sshfs', True, ['docker'], persist_root='/var/lib/keep')
    assert host['persist_dirs'] == host['persist_here'] == []
    assert stock_shared(SHARED, 'sshfs', False, ['docker'])['persist_here'] == []


@pytest.mark.parametrize('root', ['relative/dir', '/', '/run/keep'])
def test_persist_root_must_be_on_persistent_storage(root):
    with pytest.raises(AnsibleFilterError, match='must be an absolute directory on persistent storage'):
        stock_shared(SHARED, 'sshfs', False, ['docker'], persist_root=root)


def test_qtfs_the_host_owns_everything():
    host = stock_shared(SHARED, 'qtfs', True, [])
    dpu = stock_shared(SHARED, 'qtfs', False, [])
    assert host['owner'] == 'host' and host['relay_here'] and not dpu['relay_here']
    assert _paths(dpu['mounted_here']) == _paths(SHARED[:3])


def test_engine_entries_only_with_that_engine():
    without = stock_shared(SHARED, 'sshfs', False, [])
    assert _paths(without['dirs']) == _paths(SHARED[:3])
    assert without['fifo_globs'] == ['/run/containerd/io.containerd.runtime.v2.task/*/*', '/run/containerd/fifo/*']
    with_docker = stock_shared(SHARED, 'sshfs', False, ['docker'])
    assert with_docker['fifo_globs'][-1] == '/run/docker/containerd/*'
    assert with_docker['bundles'] == '/run/containerd/io.containerd.runtime.v2.task'


def test_readonly_entries_are_mounted_read_only():
    plan = stock_shared(SHARED, 'sshfs', True, ['docker'])
    by_path = {e['path']: e for e in plan['mounted_here']}
    assert by_path['/var/lib/docker/containers']['sshfs_opts'] == 'ro'
    assert by_path['/run/docker/containerd']['sshfs_opts'] == FRESH
    assert by_path['/var/lib/docker/vfs']['sshfs_opts'] == ''


def test_sftp_binds_put_each_directory_at_its_own_path_in_the_chroot():
    plan = stock_shared(SHARED, 'sshfs', False, ['docker'])
    binds = sftp_binds(plan['owned_here'], '/var/lib/dpu-offload/sftp-root/')
    assert binds[0] == {'path': '/var/lib/dpu-offload/sftp-root/var/lib/containerd/io.containerd.snapshotter.v1.native',
                        'src': '/var/lib/containerd/io.containerd.snapshotter.v1.native', 'fstype': 'none', 'opts': 'bind'}
    assert binds[4]['opts'] == 'bind,ro'
    with pytest.raises(AnsibleFilterError, match='chroot'):
        sftp_binds(plan['owned_here'], '/')


@pytest.mark.parametrize('entry, message', [
    ({'path': 'relative', 'mode': '0700'}, 'absolute'),
    ({'path': '/run/x/', 'mode': '0700'}, 'canonical'),
    ({'path': '/run/x'}, 'octal mode'),
    ({'path': '/run/x', 'mode': '0700', 'fifos': '../*'}, 'pattern below'),
    ({'path': '/run/x', 'mode': '0700', 'colour': 'red'}, 'unknown keys colour'),
])
def test_bad_entries_are_refused_with_a_reason(entry, message):
    with pytest.raises(AnsibleFilterError, match=message):
        stock_shared(SHARED + [entry], 'sshfs', False, [])


def test_one_bundle_directory_and_no_duplicates():
    with pytest.raises(AnsibleFilterError, match='exactly one'):
        stock_shared(SHARED[:1], 'sshfs', False, [])
    with pytest.raises(AnsibleFilterError, match='listed twice'):
        stock_shared(SHARED + SHARED[:1], 'sshfs', False, [])
    with pytest.raises(AnsibleFilterError, match='transport'):
        stock_shared(SHARED, 'nfs', False, [])


def test_file_entries_render_one_template_per_item():
    items = [{'name': 'a.service', 'argv': ['x']}, {'name': 'b.service'}]
    assert file_entries(items, '/etc/systemd/system', 'relay.service.j2') == [
        {'path': '/etc/systemd/system/a.service', 'template': 'relay.service.j2', 'mode': '0644',
         'template_vars': {'item': items[0]}},
        {'path': '/etc/systemd/system/b.service', 'template': 'relay.service.j2', 'mode': '0644',
         'template_vars': {'item': items[1]}},
    ]
    for bad in ([{'name': '../x'}], [{'argv': []}]):
        with pytest.raises(AnsibleFilterError):
            file_entries(bad, '/etc', 't.j2')
    with pytest.raises(AnsibleFilterError, match='absolute'):
        file_entries([], 'etc', 't.j2')


KUBELET = {'path': '/var/lib/kubelet/pods', 'mode': '0750', 'engine': 'kubelet', 'readonly': True,
           'submounts': '/var/lib/kubelet'}


def test_submounts_make_a_shared_root_on_the_owner_and_a_recursive_chroot_bind():
    shared = [dict(e) for e in SHARED] + [KUBELET]
    dpu = stock_shared(shared, 'sshfs', False, ['kubelet'])
    assert dpu['shared_roots_here'] == [{'path': '/var/lib/kubelet', 'src': '/var/lib/kubelet', 'fstype': 'none',
                                         'opts': 'bind,rshared'}]
    host = stock_shared(shared, 'sshfs', True, ['kubelet'])
    assert host['shared_roots_here'] == [] and dpu['parents_here'] == []
    assert host['parents_here'] == [{'path': '/var/lib/kubelet', 'state': 'absent', 'if_empty': True}]
    assert stock_shared(shared, 'sshfs', False, [])['shared_roots_here'] == []
    binds = {b['path']: b['opts'] for b in sftp_binds(dpu['owned_here'], '/srv/chroot')}
    assert binds['/srv/chroot/var/lib/kubelet/pods'] == 'rbind,ro'


@pytest.mark.parametrize('submounts', ['/var/lib/kube', '/var/lib/kubelet/pods/x', '/', 'var/lib/kubelet', '/var/lib/kubelet/'])
def test_submounts_must_be_the_directory_or_an_ancestor(submounts):
    with pytest.raises(AnsibleFilterError, match='submounts'):
        stock_shared([dict(e) for e in SHARED] + [dict(KUBELET, submounts=submounts)], 'sshfs', False, ['kubelet'])
