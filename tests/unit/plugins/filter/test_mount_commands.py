# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import shlex

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.mount_commands import mount_commands
from ansible_collections.dpu.offload.plugins.filter.rootfs_mounts import rootfs_mounts
from ansible_collections.dpu.offload.plugins.module_utils.mount_apply import apply_plan
from ansible_collections.dpu.offload.plugins.module_utils.mount_plan import plan_mounted
from ansible_collections.dpu.offload.plugins.module_utils.mount_spec import normalize_specs
from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import MountTable

SSHFS_OPTS = ('reconnect,ServerAliveInterval=5,ServerAliveCountMax=3,allow_other,StrictHostKeyChecking=yes,'
              'IdentityFile=/etc/dpu-offload/sshfs/id_ed25519,UserKnownHostsFile=/etc/dpu-offload/sshfs/known_hosts,port=2222')
# Items of the lab DPU's plan (rootfs_mounts for inventories/lab), and the qtfs items of the same plan.
LAB_PLAN = [
    {'path': '/another_rootfs', 'src': 'dpu-offload-root', 'fstype': 'overlay',
     'opts': 'lowerdir=/,upperdir=/var/lib/dpu-offload/rootfs/upper,workdir=/var/lib/dpu-offload/rootfs/work'},
    {'path': '/another_rootfs/local_proc', 'src': 'proc', 'fstype': 'proc', 'opts': ''},
    {'path': '/another_rootfs/run', 'src': '/run', 'fstype': 'none', 'opts': 'bind'},
    {'path': '/another_rootfs/sys/fs/cgroup/cpu,cpuacct', 'src': 'cgroup', 'fstype': 'cgroup',
     'opts': 'rw,nosuid,nodev,noexec,relatime,cpu,cpuacct'},
    {'path': '/another_rootfs/proc', 'src': 'root@172.30.77.10:/proc', 'fstype': 'fuse.sshfs', 'opts': SSHFS_OPTS + ',direct_io'},
]
QTFS_PLAN = [
    {'path': '/another_rootfs/proc', 'src': '/proc', 'fstype': 'qtfs', 'opts': 'proc'},
    {'path': '/another_rootfs/var/lib/docker/containers', 'src': '/var/lib/docker/containers', 'fstype': 'qtfs', 'opts': ''},
]


def test_lab_plan_argument_lists():
    assert mount_commands(LAB_PLAN) == [
        ['mount', '-t', 'overlay', '-o', LAB_PLAN[0]['opts'], 'dpu-offload-root', '/another_rootfs'],
        ['mount', '-t', 'proc', 'proc', '/another_rootfs/local_proc'],
        ['mount', '-o', 'bind', '/run', '/another_rootfs/run'],
        ['mount', '-t', 'cgroup', '-o', 'rw,nosuid,nodev,noexec,relatime,cpu,cpuacct', 'cgroup', '/another_rootfs/sys/fs/cgroup/cpu,cpuacct'],
        ['mount', '-t', 'fuse.sshfs', '-o', SSHFS_OPTS + ',direct_io', 'root@172.30.77.10:/proc', '/another_rootfs/proc'],
    ]


def test_qtfs_keeps_its_source_as_given():
    assert mount_commands(QTFS_PLAN, mount_bin='/usr/bin/mount') == [
        ['/usr/bin/mount', '--no-canonicalize', '-t', 'qtfs', '-o', 'proc', '/proc', '/another_rootfs/proc'],
        ['/usr/bin/mount', '--no-canonicalize', '-t', 'qtfs', '/var/lib/docker/containers', '/another_rootfs/var/lib/docker/containers'],
    ]


def test_shell_lines_quote_every_word():
    plan = QTFS_PLAN + [{'path': "/another_rootfs/a b/it's", 'src': 'tmpfs', 'fstype': 'tmpfs', 'opts': 'size=1m'}]
    lines = mount_commands(plan, shell=True)
    assert lines[0] == 'mount --no-canonicalize -t qtfs -o proc /proc /another_rootfs/proc'
    assert lines[2] == "mount -t tmpfs -o size=1m tmpfs '/another_rootfs/a b/it'\"'\"'s'"
    assert [shlex.split(line) for line in lines] == mount_commands(plan)


def test_items_are_normalised_as_the_module_does():
    commands = mount_commands([
        {'path': '/r/etc/', 'src': '/etc//', 'opts': 'ro,bind', 'readonly': True, 'mode': '0755'},
        {'path': '/r/c', 'src': 'u@h:/x', 'fstype': 'sshfs'},
        {'path': '/r/dev', 'fstype': 'devtmpfs'},
        {'path': '/r/var', 'src': '/var'},
    ])
    assert commands == [
        ['mount', '-o', 'bind,ro', '/etc', '/r/etc'],
        ['mount', '-t', 'fuse.sshfs', 'u@h:/x', '/r/c'],
        ['mount', '-t', 'devtmpfs', 'devtmpfs', '/r/dev'],
        ['mount', '--no-canonicalize', '-t', 'qtfs', '/var', '/r/var'],
    ]


def test_the_module_runs_the_same_commands(tmp_path):
    """The rootfs plan under a scratch root, carried out by the module's own
    planning and apply steps with a runner that only records."""
    root = str(tmp_path / 'root')
    plan = rootfs_mounts([{'path': '/proc', 'opts': 'proc'}, {'path': '/var/lib/docker/containers'}], root, 'qtfs',
                         local_mounts=[{'path': 'local_proc', 'src': 'proc', 'fstype': 'proc'},
                                       {'path': 'etc', 'src': '/etc', 'opts': 'bind'}],
                         cgroup_hierarchies=['cpu,cpuacct'], cgroup_opts='rw,nosuid')
    calls = []

    def run(args):
        calls.append(args)
        return 0, '', ''
    table = MountTable.from_text('1 0 8:1 / / rw - ext4 /dev/sda1 rw\n')
    actions, dummy = plan_mounted(normalize_specs(plan), table, filesystems=set(['qtfs', 'proc', 'cgroup']))
    apply_plan(actions, run)
    assert len(calls) == len(plan) == 5
    assert calls == mount_commands(plan)


@pytest.mark.parametrize('mounts, message', [
    ({'path': '/x'}, 'expects a list'),
    (['/x'], 'expects a list'),
    ([{'path': 'rel', 'fstype': 'proc'}], 'relative'),
    ([{'path': '/x', 'fstype': 'qtfs'}], 'src is required'),
    ([{'path': '/x', 'src': '/y', 'fstype': 'tmpfs', 'opts': 'bind'}], 'fstype none'),
])
def test_bad_items_are_refused_with_the_modules_words(mounts, message):
    with pytest.raises(AnsibleFilterError, match=message):
        mount_commands(mounts)
