# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import MountTable
from ansible_collections.dpu.offload.plugins.module_utils.mount_compare import compare, normalize_remote_source
from ansible_collections.dpu.offload.tests.unit.plugins.module_utils.mount_samples import fixture_table, specs


def test_normalize_remote_source():
    assert normalize_remote_source('/var/run/docker/containerd/') == '/var/run/docker/containerd'
    assert normalize_remote_source('u@h:/x/') == 'u@h:/x'
    assert normalize_remote_source('u@h:/') == 'u@h:/'
    assert normalize_remote_source('h:') == 'h:'


# ---------------------------------------------------------------- comparison

def test_compare_qtfs_and_sshfs(crafted):
    s = specs({'path': '/another_rootfs/proc', 'src': '/proc/', 'opts': 'proc'},
              {'path': '/another_rootfs/var/lib/docker/containers', 'fstype': 'fuse.sshfs',
               'src': 'root@host:/var/lib/docker/containers/', 'opts': 'reconnect,IdentityFile=/k,nodev'})
    assert compare(s[0], crafted.top(s[0].path), crafted) == []
    assert compare(s[1], crafted.top(s[1].path), crafted) == []
    other = specs({'path': '/another_rootfs/proc', 'src': '/sys'})[0]
    assert 'source /proc' in compare(other, crafted.top(other.path), crafted)[0]


def test_compare_qtfs_proc_flag_only_when_reported():
    table = MountTable.from_text('1 0 0:1 / / rw - ext4 /dev/x rw\n'
                                 '2 1 0:2 / /p rw - qtfs /proc rw,proc\n')
    plain = specs({'path': '/p', 'src': '/proc'})[0]
    assert compare(plain, table.top('/p'), table) == ['qtfs mounted with proc, not requested']
    withproc = specs({'path': '/p', 'src': '/proc', 'opts': 'proc'})[0]
    assert compare(withproc, table.top('/p'), table) == []


def test_compare_cgroup_controllers_and_vfs(crafted):
    table = fixture_table('mountinfo_sandbox.txt')
    same = specs({'path': '/sys/fs/cgroup/cpu', 'fstype': 'cgroup', 'opts': 'rw,relatime,cpu'})[0]
    assert compare(same, table.top(same.path), table) == []
    other = specs({'path': '/sys/fs/cgroup/cpu', 'fstype': 'cgroup', 'opts': 'rw,cpu,cpuacct'})[0]
    assert 'controllers cpu' in compare(other, table.top(other.path), table)[0]
    strict = specs({'path': '/sys/fs/cgroup/cpu', 'fstype': 'cgroup', 'opts': 'nosuid,cpu'})[0]
    assert 'nosuid' in compare(strict, table.top(strict.path), table)[0]
    wrongtype = specs({'path': '/sys/fs/cgroup/cpu', 'fstype': 'tmpfs'})[0]
    assert 'fstype cgroup' in compare(wrongtype, table.top(wrongtype.path), table)[0]


def test_compare_bind_by_device_and_root(crafted):
    ok = specs({'path': '/another_rootfs/etc', 'src': '/etc', 'opts': 'bind'})[0]
    # /etc of the crafted table lives on the root mount 0:1; the bind shows 8:1 /etc
    diffs = compare(ok, crafted.top(ok.path), crafted, realpath=lambda p: p)
    assert diffs and 'expected device 0:1 root /etc' in diffs[0]
    table = MountTable.from_text(
        '1 0 8:1 / / rw - ext4 /dev/sda1 rw\n'
        '2 1 8:1 /etc /r/etc rw,relatime - ext4 /dev/sda1 rw\n'
        '3 1 8:1 /srv/d /mnt/d rw - ext4 /dev/sda1 rw\n'
        '4 1 8:1 /srv/d/sub /r/sub ro,relatime - ext4 /dev/sda1 rw\n')
    assert compare(ok, table.top('/r/etc'), table, realpath=lambda p: p) == []
    # the source is inside another bind: root = that mount's root + relative path
    sub = specs({'path': '/r/sub', 'src': '/mnt/d/sub', 'opts': 'bind,ro'})[0]
    assert compare(sub, table.top('/r/sub'), table, realpath=lambda p: p) == []
    rw = specs({'path': '/r/sub', 'src': '/mnt/d/sub', 'opts': 'bind,rw'})[0]
    assert 'options rw' in compare(rw, table.top('/r/sub'), table, realpath=lambda p: p)[0]
