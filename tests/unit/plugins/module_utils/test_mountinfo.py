# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import (
    MountInfoError,
    MountTable,
    bind_identity,
    cgroup_controllers,
    escape,
    is_under,
    parse_line,
    parse_mountinfo,
    read_filesystems,
    read_mountinfo,
    unescape,
    unmount_order,
    vfs_option_mismatches,
)

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


def fixture(name):
    return os.path.join(FIXTURES, name)


@pytest.mark.parametrize('raw, decoded', [
    ('/plain', '/plain'),
    ('/a\\040b', '/a b'),
    ('/t\\011ab', '/t\tab'),
    ('/n\\012l', '/n\nl'),
    ('/back\\134slash', '/back\\slash'),
    ('/x\\040\\040y', '/x  y'),
    ('/not\\08escape', '/not\\08escape'),
])
def test_unescape(raw, decoded):
    assert unescape(raw) == decoded


def test_escape_roundtrip():
    text = '/odd dir/\ttab\nnl\\bs'
    assert unescape(escape(text)) == text
    assert ' ' not in escape(text)


def test_parse_line_fields():
    e = parse_line('36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue')
    assert (e.mount_id, e.parent_id, e.major, e.minor) == (36, 35, 98, 0)
    assert e.device == '98:0'
    assert e.root == '/mnt1'
    assert e.mountpoint == '/mnt2'
    assert e.mount_opts == 'rw,noatime'
    assert e.optional == ('master:1',)
    assert e.fstype == 'ext3'
    assert e.source == '/dev/root'
    assert e.super_opts == 'rw,errors=continue'
    assert e.to_dict()['path'] == '/mnt2'


def test_parse_line_no_optional_fields():
    e = parse_line('22 27 0:21 / /proc rw,relatime - proc proc rw')
    assert e.optional == ()
    assert e.fstype == 'proc'


def test_parse_line_several_optional_fields():
    e = parse_line('30 20 8:1 / /m rw shared:1 master:2 propagate_from:3 unbindable - ext4 /dev/x rw')
    assert e.optional == ('shared:1', 'master:2', 'propagate_from:3', 'unbindable')
    assert e.fstype == 'ext4'


@pytest.mark.parametrize('bad', [
    'garbage',
    '1 2 3:4 / /x rw shared:1',
    'a b 0:1 / /x rw - tmpfs tmpfs rw',
    '1 2 0:1 / /x rw -',
])
def test_parse_line_rejects_malformed(bad):
    with pytest.raises(MountInfoError):
        parse_line(bad)


def test_parse_real_sandbox_capture():
    entries = read_mountinfo(fixture('mountinfo_sandbox.txt'))
    assert len(entries) >= 15
    table = MountTable(entries)
    assert table.top('/').fstype == 'ext4'
    assert table.top('/proc').fstype == 'proc'
    # /dev/pts and /dev/shm are each mounted twice in this capture (stacked)
    pts = table.stack('/dev/pts')
    assert len(pts) == 2
    assert pts[1].parent_id == pts[0].mount_id
    assert table.top('/dev/pts') is pts[1]
    assert not table.visible(pts[0])
    cpu = table.top('/sys/fs/cgroup/cpu')
    assert cgroup_controllers(cpu.super_opt_list()) == set(['cpu'])
    systemd = table.top('/sys/fs/cgroup/systemd')
    assert cgroup_controllers(systemd.super_opt_list()) == set(['name=systemd'])
    assert table.top('/var/lib/docker').optional == ('shared:1',)


def test_parse_real_capture_with_escapes_binds_stacks():
    table = MountTable.from_file(fixture('mountinfo_sandbox_stacked.txt'))
    spaced = table.top('/tmp/mt/a b')
    assert spaced is not None and spaced.fstype == 'tmpfs'
    # a bind mount of /tmp/mt/src with a tmpfs stacked on top of it
    stack = table.stack('/tmp/mt/st')
    assert [e.fstype for e in stack] == ['ext4', 'tmpfs']
    assert stack[0].root == '/tmp/mt/src'
    assert table.top('/tmp/mt/st').fstype == 'tmpfs'
    assert 'nosuid' in table.top('/tmp/mt/st').mount_opt_list()


def test_crafted_escapes_and_shadowing():
    table = MountTable.from_file(fixture('mountinfo_crafted.txt'))
    assert table.top('/mnt/with space').root == '/srv/data dir'
    odd = table.top('/mnt/tab\tand\nnewline')
    assert odd.source == 'my\\tmp'
    assert odd.optional == ('propagate_from:3', 'unbindable')
    # qtfs /sys stacked on sysfs hides the cgroup mounts made below the sysfs
    assert table.top('/another_rootfs/sys').fstype == 'qtfs'
    assert [e.fstype for e in table.stack('/another_rootfs/sys')] == ['sysfs', 'qtfs']
    assert table.top('/another_rootfs/sys/fs/cgroup') is None
    assert table.top('/another_rootfs/sys/fs/cgroup/cpu,cpuacct') is None
    under = table.under('/another_rootfs')
    assert len(under) == 9
    assert len(table.under('/another_rootfs', include_hidden=False)) == 7
    sshfs = table.top('/another_rootfs/var/lib/docker/containers')
    assert sshfs.fstype == 'fuse.sshfs'
    assert sshfs.source == 'root@host:/var/lib/docker/containers'


def test_containing_and_bind_identity():
    table = MountTable.from_file(fixture('mountinfo_crafted.txt'))
    assert table.containing('/etc/passwd').mountpoint == '/'
    assert table.containing('/another_rootfs/etc/x').mountpoint == '/another_rootfs/etc'
    assert table.containing('/another_rootfs/nothing/here').mountpoint == '/another_rootfs'
    # /etc lives on the root mount (8:1? no: root is 0:1 here)
    assert bind_identity(table, '/etc') == ('0:1', '/etc')
    # a path inside a bind mount joins with that mount's root field
    assert bind_identity(table, '/mnt/with space/sub') == ('8:1', '/srv/data dir/sub')
    assert bind_identity(table, '/mnt/with space') == ('8:1', '/srv/data dir')


def test_bind_identity_real_capture():
    table = MountTable.from_file(fixture('mountinfo_sandbox_stacked.txt'))
    # /var/lib/docker is itself a bind of /var/lib/docker on 254:0
    assert bind_identity(table, '/var/lib/docker/volumes') == ('254:0', '/var/lib/docker/volumes')
    assert bind_identity(table, '/tmp/mt/src') == ('0:41', '/')


def test_stacked_queries_on_the_crafted_table():
    table = MountTable.from_file(fixture('mountinfo_crafted.txt'))
    root, sysfs = table.by_id[40], table.by_id[44]
    # two mounts at /another_rootfs/sys on two bases: below the root, and stacked on the sysfs
    assert [e.mount_id for e in table.mounted_on(root, '/another_rootfs/sys')] == [44]
    assert [e.mount_id for e in table.mounted_on(sysfs, '/another_rootfs/sys')] == [47]
    assert table.child_at(root, '/another_rootfs/sys').mount_id == 44
    assert table.child_at(root, '/another_rootfs/sys', exclude=(44,)) is None
    assert table.chain_top(sysfs).mount_id == 47
    assert table.chain_top(sysfs, exclude=(47,)) is sysfs
    # the sysfs's subtree: its cgroup mounts (hidden by the qtfs /sys) and the qtfs /sys
    assert [e.mount_id for e in table.subtree([44])] == [44, 45, 46, 47]
    assert table.subtree([]) == []


def test_leaves_and_unmount_order():
    table = MountTable.from_file(fixture('mountinfo_crafted.txt'))
    sub = table.subtree([40])
    # the hidden cgroup mounts cannot go before the qtfs /sys over them does
    assert sorted(e.mount_id for e in table.leaves(sub)) == [41, 42, 43, 47, 48]
    order = unmount_order(sub)
    assert order[:3] == ['/another_rootfs/var/lib/docker/containers', '/another_rootfs/sys/fs/cgroup/cpu,cpuacct',
                         '/another_rootfs/sys/fs/cgroup']
    assert order.count('/another_rootfs/sys') == 2 and order[-1] == '/another_rootfs'
    # at one depth the later mount goes first (as the containers mount above)
    assert unmount_order([table.by_id[42], table.by_id[41]]) == ['/another_rootfs/local_proc', '/another_rootfs/proc']


def test_lookup_point_resolves_symlinks(tmp_path):
    (tmp_path / 'real').mkdir()
    os.symlink(str(tmp_path / 'real'), str(tmp_path / 'link'))
    real = str(tmp_path / 'real')
    table = MountTable.from_text('1 0 0:1 / / rw - ext4 /dev/x rw\n'
                                 '2 1 0:2 / %s rw - tmpfs tmpfs rw\n' % escape(real))
    assert table.lookup_point(real) == real
    assert table.lookup_point(str(tmp_path / 'link')) == real
    assert table.lookup_point(str(tmp_path / 'missing')) == str(tmp_path / 'missing')


def test_read_filesystems(tmp_path):
    f = tmp_path / 'filesystems'
    f.write_text(u'nodev\tsysfs\n\text4\nnodev\tqtfs\n')
    assert read_filesystems(str(f)) == set(['sysfs', 'ext4', 'qtfs'])
    assert read_filesystems(str(tmp_path / 'missing')) is None


def test_is_under():
    assert is_under('/a/b', '/a')
    assert is_under('/a', '/a')
    assert not is_under('/ab', '/a')
    assert is_under('/anything', '/')


def test_vfs_option_mismatches():
    e = parse_line('1 0 0:1 / /x rw,nosuid,nodev,relatime - tmpfs tmpfs rw,size=10k')
    assert vfs_option_mismatches(['rw', 'nosuid', 'nodev', 'relatime'], e) == []
    assert vfs_option_mismatches(['size=20k', 'mode=0755', 'reconnect', 'IdentityFile=/k'], e) == []
    assert vfs_option_mismatches(['ro'], e) == ['ro']
    assert vfs_option_mismatches(['noexec', 'suid', 'exec'], e) == ['noexec', 'suid']
    assert vfs_option_mismatches(['strictatime'], e) == ['strictatime']


def test_cgroup_controllers():
    assert cgroup_controllers('rw,nosuid,nodev,noexec,relatime,net_cls,net_prio'.split(',')) == set(['net_cls', 'net_prio'])
    assert cgroup_controllers(['rw', 'name=systemd', 'release_agent=/x', 'xattr']) == set(['name=systemd'])
    assert cgroup_controllers(['rw', 'files']) == set(['files'])


def test_parse_mountinfo_skips_blank_lines():
    assert len(parse_mountinfo('\n22 27 0:21 / /proc rw - proc proc rw\n\n')) == 1
