# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import MountTable
from ansible_collections.dpu.offload.plugins.module_utils.mount_plan import (
    ApplyError,
    MountError,
    affected_points,
    apply_plan,
    compare,
    describe_points,
    normalize_remote_source,
    normalize_specs,
    plan_mounted,
    plan_unmounted,
    predict_points,
    read_filesystems,
    symlink_problem,
    system_changed,
)

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
ALL_FS = set(['qtfs', 'proc', 'sysfs', 'tmpfs', 'cgroup', 'fuse', 'devtmpfs'])


@pytest.fixture
def crafted():
    return MountTable.from_file(os.path.join(FIXTURES, 'mountinfo_crafted.txt'))


def specs(*items, **kw):
    return normalize_specs(list(items), **kw)


# ---------------------------------------------------------------- input checks

def test_normalize_defaults():
    s = specs({'path': '/r/proc/', 'src': '/proc', 'opts': 'proc'},
              {'path': '/r/etc', 'src': '/etc', 'opts': 'ro,bind'},
              {'path': '/r/lp', 'fstype': 'proc'},
              {'path': '/r/c', 'src': 'u@h:/x', 'fstype': 'sshfs'})
    assert (s[0].path, s[0].fstype, s[0].kind) == ('/r/proc', 'qtfs', 'qtfs')
    assert (s[1].fstype, s[1].kind, s[1].opts) == ('none', 'bind', ['bind', 'ro'])
    assert (s[2].src, s[2].kind) == ('proc', 'pseudo')
    assert (s[3].fstype, s[3].kind) == ('fuse.sshfs', 'fuse')


@pytest.mark.parametrize('item, words', [
    ({'path': 'rel/dir', 'fstype': 'proc'}, 'relative'),
    ({'path': '/x', 'fstype': 'qtfs'}, 'src is required'),
    ({'path': '/x', 'src': 'proc', 'fstype': 'qtfs'}, 'absolute path on the HOST'),
    ({'path': '/x', 'opts': 'bind'}, 'needs src'),
    ({'path': '/x', 'src': 'rel', 'opts': 'bind'}, 'relative'),
    ({'path': '/x', 'src': '/y', 'fstype': 'tmpfs', 'opts': 'bind'}, 'fstype none'),
    ({'path': '/x', 'src': '/y', 'fstype': 'none'}, 'without opts bind'),
    ({'path': '/', 'fstype': 'tmpfs'}, 'refusing'),
])
def test_normalize_rejects(item, words):
    with pytest.raises(MountError) as exc:
        specs(item)
    assert words in str(exc.value)


def test_normalize_reports_all_problems():
    with pytest.raises(MountError) as exc:
        specs({'path': 'a', 'fstype': 'proc'}, {'path': '/b', 'fstype': 'proc'},
              {'path': '/c', 'fstype': 'qtfs'})
    text = str(exc.value)
    assert 'item 0' in text and 'item 2' in text and 'item 1' not in text


def test_mount_commands_are_argument_lists():
    s = specs({'path': '/r/proc', 'src': '/proc', 'opts': 'proc'},
              {'path': '/r/e', 'src': '/e', 'opts': 'bind,ro'},
              {'path': '/r/c g', 'fstype': 'cgroup', 'opts': 'rw,cpu'})
    assert s[0].mount_command('mount') == ['mount', '--no-canonicalize', '-t', 'qtfs', '-o', 'proc', '/proc', '/r/proc']
    assert s[1].mount_command('mount') == ['mount', '-o', 'bind,ro', '/e', '/r/e']
    assert s[2].mount_command('mount') == ['mount', '-t', 'cgroup', '-o', 'rw,cpu', 'cgroup', '/r/c g']


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
    table = MountTable.from_file(os.path.join(FIXTURES, 'mountinfo_sandbox.txt'))
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


# ---------------------------------------------------------------- plan mounted

def test_plan_all_unchanged(crafted):
    s = specs({'path': '/another_rootfs/proc', 'src': '/proc', 'opts': 'proc'},
              {'path': '/another_rootfs/local_proc', 'fstype': 'proc', 'opts': 'nosuid,nodev,noexec'},
              {'path': '/another_rootfs/sys', 'src': '/sys'},
              {'path': '/another_rootfs/var/lib/docker/containers', 'fstype': 'fuse.sshfs',
               'src': 'root@host:/var/lib/docker/containers', 'opts': 'reconnect'})

    def no_fs():
        raise AssertionError('/proc/filesystems read although nothing is mounted')
    actions, warnings = plan_mounted(s, crafted, filesystems=no_fs)
    assert [a.action for a in actions] == ['unchanged'] * 4
    assert warnings == []
    assert affected_points(actions) == []


def test_plan_mismatch_fails_naming_what_is_there(crafted):
    s = specs({'path': '/another_rootfs/local_proc', 'fstype': 'tmpfs'})
    with pytest.raises(MountError) as exc:
        plan_mounted(s, crafted, filesystems=ALL_FS)
    msg = str(exc.value)
    assert 'proc proc' in msg and 'remount_on_mismatch' in msg


def test_plan_remount_on_mismatch_unmounts_stack_and_hidden(crafted):
    s = specs({'path': '/another_rootfs/sys', 'fstype': 'sysfs'})
    actions, dummy = plan_mounted(s, crafted, filesystems=ALL_FS, remount_on_mismatch=True)
    act = actions[0]
    assert act.action == 'remount'
    assert [e.mount_id for e in act.unmount_roots] == [44]
    assert act.unmount[0] == '/another_rootfs/sys/fs/cgroup/cpu,cpuacct'
    assert act.unmount.count('/another_rootfs/sys') == 2
    res = act.result(check_mode=True)
    assert res['action'] == 'would_remount'
    assert len(res['previous']) == 2
    after = predict_points(crafted, actions, affected_points(actions))
    assert '/another_rootfs/sys: sysfs sysfs' in after
    assert '/another_rootfs/sys/fs/cgroup: not mounted' in after
    before = describe_points(crafted, ['/another_rootfs/sys'])
    assert before.count('/another_rootfs/sys:') == 2


def test_plan_qtfs_needs_registered_filesystem(crafted, tmp_path):
    s = specs({'path': str(tmp_path / 'p'), 'src': '/proc', 'opts': 'proc'})
    with pytest.raises(MountError) as exc:
        plan_mounted(s, crafted, filesystems=set(['proc']))
    assert 'qtfs.ko must be loaded first' in str(exc.value)
    assert 'dpu.offload.kmod' in str(exc.value)
    actions, warnings = plan_mounted(s, crafted, filesystems=set(['proc']), check_mode=True)
    assert actions[0].action == 'mount'
    assert 'qtfs.ko' in warnings[0]


def test_plan_bind_source_missing(crafted, tmp_path):
    s = specs({'path': str(tmp_path / 'm'), 'src': str(tmp_path / 'nope'), 'opts': 'bind'})
    with pytest.raises(MountError) as exc:
        plan_mounted(s, crafted, filesystems=ALL_FS)
    assert 'does not exist' in str(exc.value)


def test_plan_bind_file_source_makes_file_mount_point(tmp_path):
    table = MountTable.from_file('/proc/self/mountinfo')
    src = tmp_path / 'f.conf'
    src.write_text(u'x')
    s = specs({'path': str(tmp_path / 'sub' / 'f.conf'), 'src': str(src), 'opts': 'bind'})
    actions, dummy = plan_mounted(s, table, filesystems=ALL_FS)
    assert actions[0].make == 'file'


def test_plan_create_path_false(tmp_path, crafted):
    s = specs({'path': str(tmp_path / 'missing'), 'fstype': 'tmpfs'})
    with pytest.raises(MountError) as exc:
        plan_mounted(s, crafted, filesystems=ALL_FS, create_path=False)
    assert 'create_path is false' in str(exc.value)


def test_plan_refuses_symlinked_mount_point(tmp_path, crafted):
    (tmp_path / 'real').mkdir()
    os.symlink(str(tmp_path / 'real'), str(tmp_path / 'link'))
    s = specs({'path': str(tmp_path / 'link' / 'run'), 'fstype': 'tmpfs'})
    with pytest.raises(MountError) as exc:
        plan_mounted(s, crafted, filesystems=ALL_FS)
    assert 'symlink' in str(exc.value)
    assert symlink_problem(str(tmp_path / 'real' / 'x' / 'y')) is None


def test_plan_later_item_must_not_hide_earlier(crafted, tmp_path):
    s = specs({'path': str(tmp_path / 'a' / 'b'), 'fstype': 'tmpfs'},
              {'path': str(tmp_path / 'a'), 'fstype': 'tmpfs'})
    with pytest.raises(MountError) as exc:
        plan_mounted(s, crafted, filesystems=ALL_FS)
    assert 'would hide' in str(exc.value)


def test_plan_children_of_fresh_mount_are_deferred(crafted, tmp_path):
    s = specs({'path': str(tmp_path / 'a'), 'fstype': 'tmpfs'},
              {'path': str(tmp_path / 'a' / 'proc'), 'fstype': 'proc'})
    actions, dummy = plan_mounted(s, crafted, filesystems=ALL_FS)
    assert [a.action for a in actions] == ['mount', 'mount']
    assert actions[1].deferred and 'made by this call' in actions[1].reason


# ---------------------------------------------------------------- plan unmounted

def test_plan_unmounted_reverse_order_and_layers(crafted):
    s = specs({'path': '/another_rootfs/proc'}, {'path': '/another_rootfs/sys'},
              {'path': '/another_rootfs/sys/fs/cgroup'}, {'path': '/another_rootfs/sys/fs/cgroup/cpu,cpuacct'},
              {'path': '/nothing/here'}, require_src=False)
    actions, dummy = plan_unmounted(s, crafted)
    assert [a.spec.path for a in actions] == ['/nothing/here', '/another_rootfs/sys/fs/cgroup/cpu,cpuacct',
                                              '/another_rootfs/sys/fs/cgroup', '/another_rootfs/sys',
                                              '/another_rootfs/proc']
    assert [a.action for a in actions] == ['unchanged', 'unmount', 'unmount', 'unmount', 'unmount']
    # the nested cgroup mounts are hidden by the qtfs layer but still found by their parent
    assert actions[3].unmount == ['/another_rootfs/sys', '/another_rootfs/sys']
    with pytest.raises(MountError) as exc:
        plan_unmounted(specs({'path': '/another_rootfs/sys'}, require_src=False), crafted)
    assert 'cgroup' in str(exc.value) and 'recursive: true' in str(exc.value)


def test_plan_stacked_list_matches_hidden_layers(crafted):
    s = specs({'path': '/another_rootfs', 'fstype': 'tmpfs'},
              {'path': '/another_rootfs/sys', 'fstype': 'sysfs'},
              {'path': '/another_rootfs/sys/fs/cgroup', 'fstype': 'tmpfs'},
              {'path': '/another_rootfs/sys/fs/cgroup/cpu,cpuacct', 'fstype': 'cgroup', 'opts': 'cpu,cpuacct'},
              {'path': '/another_rootfs/sys', 'src': '/sys'})
    actions, dummy = plan_mounted(s, crafted, filesystems=ALL_FS)
    assert [a.action for a in actions] == ['unchanged'] * 5
    assert [e.mount_id for e in actions[1].existing] == [44]
    assert [e.mount_id for e in actions[4].existing] == [47]
    # a missing hidden item: its place is covered by the later layer
    table = MountTable.from_text('\n'.join(
        l for l in open(os.path.join(FIXTURES, 'mountinfo_crafted.txt')).read().splitlines()
        if not l.startswith('46 ')))
    with pytest.raises(MountError) as exc:
        plan_mounted(s, table, filesystems=ALL_FS)
    assert 'covered by qtfs /sys' in str(exc.value)
    actions, dummy = plan_mounted(s, table, filesystems=ALL_FS, remount_on_mismatch=True)
    assert [a.action for a in actions] == ['unchanged', 'unchanged', 'unchanged', 'mount', 'mount']
    assert [e.mount_id for e in actions[3].unmount_roots] == [47] and actions[3].unmount == ['/another_rootfs/sys']


def test_plan_unmounted_nested_needs_recursive(crafted):
    s = specs({'path': '/another_rootfs'}, require_src=False)
    with pytest.raises(MountError) as exc:
        plan_unmounted(s, crafted)
    assert 'recursive: true' in str(exc.value)
    # listing the nested ones after the parent is enough
    nested = [{'path': '/another_rootfs'}] + [{'path': p} for p in (
        '/another_rootfs/proc', '/another_rootfs/local_proc', '/another_rootfs/etc',
        '/another_rootfs/sys', '/another_rootfs/sys/fs/cgroup', '/another_rootfs/sys/fs/cgroup/cpu,cpuacct',
        '/another_rootfs/var/lib/docker/containers')]
    actions, dummy = plan_unmounted(specs(*nested, require_src=False), crafted)
    assert actions[-1].spec.path == '/another_rootfs'
    actions, dummy = plan_unmounted(s, crafted, recursive=True)
    assert actions[0].recursive == '/another_rootfs'
    assert actions[0].unmount[-1] == '/another_rootfs'
    assert len(actions[0].unmount) == 9
    # a stacked list: the top layer is found on the layer listed before it
    stacked = specs({'path': '/another_rootfs/sys'}, {'path': '/another_rootfs/sys/fs/cgroup'},
                    {'path': '/another_rootfs/sys/fs/cgroup/cpu,cpuacct'}, {'path': '/another_rootfs/sys'},
                    require_src=False)
    actions, dummy = plan_unmounted(stacked, crafted)
    assert [a.action for a in actions] == ['unmount'] * 4
    assert [[e.mount_id for e in a.unmount_roots] for a in actions] == [[47], [46], [45], [44]]


# ---------------------------------------------------------------- apply with a fake runner

class FakeRunner:
    def __init__(self, fail_on=None):
        self.calls = []
        self.fail_on = fail_on

    def __call__(self, args):
        self.calls.append(args)
        if self.fail_on and self.fail_on in args:
            return 32, '', 'mount: %s: wrong fs type, bad option' % args[-1]
        return 0, '', ''


def test_apply_rolls_back_in_reverse_order(tmp_path, crafted):
    s = specs({'path': str(tmp_path / 'a'), 'fstype': 'tmpfs'},
              {'path': str(tmp_path / 'b'), 'fstype': 'tmpfs'},
              {'path': str(tmp_path / 'c'), 'fstype': 'tmpfs', 'opts': 'bogus'},
              {'path': str(tmp_path / 'd'), 'fstype': 'tmpfs'})
    actions, dummy = plan_mounted(s, crafted, filesystems=ALL_FS)
    run = FakeRunner(fail_on='bogus')
    with pytest.raises(ApplyError) as exc:
        apply_plan(actions, run)
    msg = exc.value.msg
    assert 'item 2' in msg and 'wrong fs type' in msg and 'rolled back' in msg
    assert run.calls[-2:] == [['umount', str(tmp_path / 'b')], ['umount', str(tmp_path / 'a')]]
    assert [a.outcome for a in actions] == ['rolled_back', 'rolled_back', 'failed', None]
    assert [a.result()['action'] for a in actions] == ['rolled_back', 'rolled_back', 'failed', 'skipped']
    assert not system_changed(actions)


def test_read_filesystems(tmp_path):
    f = tmp_path / 'filesystems'
    f.write_text(u'nodev\tsysfs\n\text4\nnodev\tqtfs\n')
    assert read_filesystems(str(f)) == set(['sysfs', 'ext4', 'qtfs'])
    assert read_filesystems(str(tmp_path / 'missing')) is None


def test_apply_names_what_keeps_a_mount_busy(crafted):
    actions, dummy = plan_unmounted(specs({'path': '/another_rootfs/proc'}, require_src=False), crafted)
    tables = [crafted]

    def busy(args):
        return 32, '', 'umount: %s: target is busy.' % args[-1]
    with pytest.raises(ApplyError) as exc:
        apply_plan(actions, busy, read_table=lambda: tables[0],
                   explain_busy=lambda point: ' (in use by pid 9 (sleep) below %s)' % point)
    assert 'target is busy. (in use by pid 9 (sleep) below /another_rootfs/proc)' in exc.value.msg

    def refused(args):
        return 1, '', 'umount: %s: not mounted.' % args[-1]
    with pytest.raises(ApplyError) as exc:
        apply_plan(actions, refused, read_table=lambda: tables[0], explain_busy=lambda point: ' HINT')
    assert 'HINT' not in exc.value.msg
