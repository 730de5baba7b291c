# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.rootfs_mounts import rootfs_mounts

SHARED = [{'path': '/proc', 'opts': 'proc', 'sshfs_opts': 'direct_io'}, {'path': '/sys'}, {'path': '/var/lib/docker/containers'}]
LOCAL = [
    {'path': 'local_proc', 'src': 'proc', 'fstype': 'proc'},
    {'path': 'run', 'src': '/run', 'opts': 'bind'},
    {'path': 'sys', 'src': 'sysfs', 'fstype': 'sysfs'},
    {'path': 'sys/fs/cgroup', 'src': 'tmpfs', 'fstype': 'tmpfs'},
]


def test_qtfs_plan_order_and_items():
    plan = rootfs_mounts(SHARED, '/another_rootfs', 'qtfs', local_mounts=LOCAL, overlay_dir='/var/lib/o',
                         cgroup_hierarchies=['cpu,cpuacct', 'memory'], cgroup_opts='rw,nosuid')
    paths = [m['path'] for m in plan]
    assert paths == ['/another_rootfs', '/another_rootfs/local_proc', '/another_rootfs/run', '/another_rootfs/sys',
                     '/another_rootfs/sys/fs/cgroup', '/another_rootfs/sys/fs/cgroup/cpu,cpuacct',
                     '/another_rootfs/sys/fs/cgroup/memory', '/another_rootfs/proc', '/another_rootfs/sys',
                     '/another_rootfs/var/lib/docker/containers']
    assert plan[0] == {'path': '/another_rootfs', 'src': 'dpu-offload-root', 'fstype': 'overlay',
                       'opts': 'lowerdir=/,upperdir=/var/lib/o/upper,workdir=/var/lib/o/work'}
    assert plan[2]['fstype'] == 'none' and plan[2]['opts'] == 'bind'
    assert plan[5] == {'path': '/another_rootfs/sys/fs/cgroup/cpu,cpuacct', 'src': 'cgroup', 'fstype': 'cgroup',
                       'opts': 'rw,nosuid,cpu,cpuacct'}
    assert plan[7] == {'path': '/another_rootfs/proc', 'src': '/proc', 'fstype': 'qtfs', 'opts': 'proc'}


def test_sshfs_plan_uses_the_host_and_options():
    plan = rootfs_mounts(SHARED, '/r', 'sshfs', sshfs_source='root@10.0.0.1', sshfs_opts='reconnect')
    assert plan == [
        {'path': '/r/proc', 'src': 'root@10.0.0.1:/proc', 'fstype': 'fuse.sshfs', 'opts': 'reconnect,direct_io'},
        {'path': '/r/sys', 'src': 'root@10.0.0.1:/sys', 'fstype': 'fuse.sshfs', 'opts': 'reconnect'},
        {'path': '/r/var/lib/docker/containers', 'src': 'root@10.0.0.1:/var/lib/docker/containers',
         'fstype': 'fuse.sshfs', 'opts': 'reconnect'},
    ]


@pytest.mark.parametrize('kwargs, message', [
    ({'root': '/', 'transport': 'qtfs'}, 'other than /'),
    ({'root': 'rel', 'transport': 'qtfs'}, 'absolute path'),
    ({'root': '/r', 'transport': 'nfs'}, 'transport must be'),
    ({'root': '/r', 'transport': 'sshfs'}, 'needs sshfs_source'),
    ({'root': '/r', 'transport': 'qtfs', 'local_mounts': [{'path': '../etc', 'src': '/etc', 'opts': 'bind'}]}, 'leaves the offload root'),
    ({'root': '/r', 'transport': 'qtfs', 'local_mounts': [{'path': 'x', 'src': 'y'}]}, 'needs an fstype'),
    ({'root': '/r', 'transport': 'qtfs', 'local_mounts': [{'path': 'd', 'src': 'tmpfs', 'fstype': 'tmpfs'}] * 2}, 'listed twice'),
])
def test_bad_input_is_refused_with_the_fix(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        rootfs_mounts(SHARED, **kwargs)


def test_shared_paths_must_be_absolute():
    with pytest.raises(AnsibleFilterError, match='absolute HOST path'):
        rootfs_mounts([{'path': 'proc'}], '/r', 'qtfs')


def test_same_paths_plans_shared_directories_at_their_own_paths():
    shared = [{'path': '/var/lib/containerd/io.containerd.snapshotter.v1.native'},
              {'path': '/run/containerd/fifo', 'sshfs_opts': 'dir_cache=no', 'mode': '0700', 'fifos': '*'}]
    plan = rootfs_mounts(shared, '/', 'sshfs', same_paths=True, sshfs_source='root@10.0.0.1', sshfs_opts='reconnect')
    assert plan == [
        {'path': '/var/lib/containerd/io.containerd.snapshotter.v1.native', 'fstype': 'fuse.sshfs',
         'src': 'root@10.0.0.1:/var/lib/containerd/io.containerd.snapshotter.v1.native', 'opts': 'reconnect'},
        {'path': '/run/containerd/fifo', 'src': 'root@10.0.0.1:/run/containerd/fifo', 'fstype': 'fuse.sshfs',
         'opts': 'reconnect,dir_cache=no'},
    ]
    assert rootfs_mounts([{'path': '/run/x'}], '/', 'qtfs', same_paths=True) == [
        {'path': '/run/x', 'src': '/run/x', 'fstype': 'qtfs', 'opts': ''}]


@pytest.mark.parametrize('kwargs, message', [
    ({'root': '/r'}, 'root must be /'),
    ({'root': '/', 'overlay_dir': '/o'}, 'takes no overlay_dir'),
    ({'root': '/', 'local_mounts': LOCAL}, 'takes no overlay_dir'),
    ({'root': '/', 'cgroup_hierarchies': ['cpu']}, 'takes no overlay_dir'),
])
def test_same_paths_refuses_a_root_plan(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        rootfs_mounts(SHARED, transport='qtfs', same_paths=True, **kwargs)
