# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import MountTable
from ansible_collections.dpu.offload.plugins.module_utils.mount_diff import affected_points, describe_points, predict_points
from ansible_collections.dpu.offload.plugins.module_utils.mount_plan import plan_mounted, plan_unmounted, symlink_problem
from ansible_collections.dpu.offload.plugins.module_utils.mount_spec import MountError
from ansible_collections.dpu.offload.tests.unit.plugins.module_utils.mount_samples import ALL_FS, FIXTURES, specs


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


def test_plan_mismatch_with_a_hint_names_the_callers_fix_once(crafted):
    # The peer's address changed since the deploy: its sshfs mounts are of the old one.
    s = specs({'path': '/another_rootfs/var/lib/docker/containers', 'fstype': 'fuse.sshfs',
               'src': 'root@[2001:db8::10]:/var/lib/docker/containers', 'opts': 'reconnect'},
              {'path': '/another_rootfs/local_proc', 'fstype': 'tmpfs'})
    hint = 'Run playbooks/teardown.yml --limit a,b, then deploy with the new address.'
    with pytest.raises(MountError) as exc:
        plan_mounted(s, crafted, filesystems=ALL_FS, mismatch_hint=hint)
    msg = str(exc.value)
    assert 'root@host:/var/lib/docker/containers' in msg and 'proc proc' in msg
    assert 'remount_on_mismatch' not in msg and 'unmount it' not in msg
    assert msg.endswith('. ' + hint) and msg.count(hint) == 1


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
