# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""End-to-end tests of dpu.offload.qtfs_mount: these really mount tmpfs,
proc, cgroup and bind mounts below a temporary directory (root only)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess

import pytest

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import read_filesystems
from ansible_collections.dpu.offload.plugins.modules import qtfs_mount
from ansible_collections.dpu.offload.tests.unit.plugins.modules.module_harness import (
    can_mount,
    mounts_below,
    run_module,
    unmount_all_below,
)


@pytest.fixture
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp('qtfs_mount')
    ok, reason = can_mount(base)
    if not ok:
        pytest.skip(reason)
    yield str(base)
    unmount_all_below(str(base))


def run(args, **kw):
    return run_module(qtfs_mount.main, args, **kw)


def actions(result):
    return [m['action'] for m in result['mounts']]


def tree(root):
    src = os.path.join(root, 'src')
    os.makedirs(os.path.join(src, 'sub'))
    with open(os.path.join(src, 'file.conf'), 'w') as f:
        f.write('x\n')
    r = os.path.join(root, 'rootfs')
    return [
        {'path': r, 'fstype': 'tmpfs', 'opts': 'mode=0755,size=4m'},
        {'path': r + '/local_proc', 'fstype': 'proc', 'opts': 'nosuid,nodev,noexec'},
        {'path': r + '/etc', 'src': src, 'opts': 'bind'},
        {'path': r + '/data', 'src': src + '/sub', 'opts': 'bind,ro'},
        {'path': r + '/etc.conf', 'src': src + '/file.conf', 'opts': 'bind'},
        {'path': r + '/dir with space', 'fstype': 'tmpfs', 'opts': 'nosuid'},
    ]


def test_mounted_then_unchanged_then_unmounted(root):
    items = tree(root)
    result, warnings = run({'mounts': items}, diff=True)
    assert result['changed'] is True
    assert actions(result) == ['mounted'] * len(items)
    assert len(mounts_below(root)) == len(items)
    assert 'not mounted' in result['diff']['before']
    assert 'bind' not in result['diff']['after'] and 'tmpfs tmpfs' in result['diff']['after']
    assert os.path.isfile(os.path.join(root, 'rootfs', 'etc.conf'))
    assert os.path.isfile(os.path.join(root, 'rootfs', 'etc', 'file.conf'))

    again, dummy = run({'mounts': items}, diff=True)
    assert again['changed'] is False
    assert actions(again) == ['unchanged'] * len(items)
    assert again['diff'] == {'before': '', 'after': ''}
    assert len(mounts_below(root)) == len(items)

    gone, dummy = run({'mounts': items, 'state': 'unmounted'})
    assert gone['changed'] is True
    assert actions(gone) == ['unmounted'] * len(items)
    assert mounts_below(root) == []
    again, dummy = run({'mounts': items, 'state': 'unmounted'})
    assert again['changed'] is False and actions(again) == ['unchanged'] * len(items)


def test_check_mode_predicts_without_touching(root):
    items = tree(root)
    result, dummy = run({'mounts': items}, check_mode=True, diff=True)
    assert result['changed'] is True
    assert actions(result) == ['would_mount'] * len(items)
    assert mounts_below(root) == []
    assert not os.path.exists(os.path.join(root, 'rootfs'))
    assert result['diff']['after'].count('bind ') == 3
    run({'mounts': items})
    result, dummy = run({'mounts': items, 'state': 'unmounted'}, check_mode=True)
    assert actions(result) == ['would_unmount'] * len(items)
    assert len(mounts_below(root)) == len(items)


def test_single_mount_options(root):
    path = os.path.join(root, 'one')
    result, dummy = run({'path': path, 'fstype': 'tmpfs', 'opts': 'size=1m,nodev'})
    assert result['changed'] and result['mounts'][0]['action'] == 'mounted'
    # the kernel prints size=1024k; size is not compared, so this stays unchanged
    result, dummy = run({'path': path, 'fstype': 'tmpfs', 'opts': 'size=1m,nodev'})
    assert not result['changed']
    # a requested VFS flag that is not in effect is a mismatch
    result, dummy = run({'path': path, 'fstype': 'tmpfs', 'opts': 'ro'}, expect_fail=True)
    assert 'ro not in effect' in result['msg'] or 'options ro' in result['msg']


def test_mismatch_fails_then_remount(root):
    path = os.path.join(root, 'point')
    run({'path': path, 'fstype': 'tmpfs'})
    result, dummy = run({'path': path, 'fstype': 'proc'}, expect_fail=True)
    assert 'tmpfs tmpfs' in result['msg'] and 'remount_on_mismatch' in result['msg']
    assert mounts_below(root)[0].fstype == 'tmpfs'
    result, dummy = run({'path': path, 'fstype': 'proc', 'remount_on_mismatch': True})
    assert result['changed'] and result['mounts'][0]['action'] == 'remounted'
    assert [e.fstype for e in mounts_below(root)] == ['proc']


def test_bind_identity_not_source_column(root):
    a = os.path.join(root, 'a')
    b = os.path.join(root, 'b')
    os.makedirs(a)
    os.makedirs(b)
    target = os.path.join(root, 't')
    run({'path': target, 'src': a, 'opts': 'bind'})
    result, dummy = run({'path': target, 'src': a + '/', 'opts': 'bind'})
    assert not result['changed']
    result, dummy = run({'path': target, 'src': b, 'opts': 'bind'}, expect_fail=True)
    assert 'expected device' in result['msg']
    # a bind reached through a symlinked source is the same mount
    os.symlink(a, os.path.join(root, 'alink'))
    result, dummy = run({'path': target, 'src': os.path.join(root, 'alink'), 'opts': 'bind'})
    assert not result['changed']


def test_stacked_layers_unmounted(root):
    path = os.path.join(root, 'stack')
    os.makedirs(path)
    for dummy in range(3):
        subprocess.check_call(['mount', '-t', 'tmpfs', 'tmpfs', path])
    result, dummy = run({'path': path, 'fstype': 'tmpfs'})
    assert not result['changed']
    assert len(result['mounts'][0]['previous']) == 3
    result, dummy = run({'path': path, 'state': 'unmounted'})
    assert result['changed'] and result['mounts'][0]['unmounted'] == [path] * 3
    assert mounts_below(root) == []


def test_recursive_teardown(root):
    items = tree(root)
    run({'mounts': items})
    # add something nobody listed, and a stacked layer
    extra = os.path.join(root, 'rootfs', 'extra')
    os.makedirs(extra)
    subprocess.check_call(['mount', '-t', 'tmpfs', 'tmpfs', extra])
    subprocess.check_call(['mount', '-t', 'tmpfs', 'tmpfs', extra])
    result, dummy = run({'path': os.path.join(root, 'rootfs'), 'state': 'unmounted'}, expect_fail=True)
    assert 'recursive: true' in result['msg']
    assert len(mounts_below(root)) == len(items) + 2
    result, dummy = run({'path': os.path.join(root, 'rootfs'), 'state': 'unmounted', 'recursive': True})
    assert result['changed']
    assert len(result['mounts'][0]['unmounted']) == len(items) + 2
    assert mounts_below(root) == []


def test_rollback_on_failing_item(root):
    r = os.path.join(root, 'rb')
    items = [
        {'path': r + '/a', 'fstype': 'tmpfs'},
        {'path': r + '/b', 'fstype': 'proc'},
        {'path': r + '/c', 'fstype': 'tmpfs', 'opts': 'size=notanumber'},
        {'path': r + '/d', 'fstype': 'tmpfs'},
    ]
    result, dummy = run({'mounts': items}, expect_fail=True)
    assert 'item 2 (%s/c)' % r in result['msg']
    assert 'rolled back' in result['msg']
    assert actions(result) == ['rolled_back', 'rolled_back', 'failed', 'skipped']
    assert 'rc=' in result['mounts'][2]['detail']
    assert result['changed'] is False
    assert mounts_below(root) == []


def test_validation_before_touching(root):
    r = os.path.join(root, 'v')
    items = [
        {'path': r + '/a', 'fstype': 'tmpfs'},
        {'path': r + '/b', 'src': r + '/missing', 'opts': 'bind'},
    ]
    result, dummy = run({'mounts': items}, expect_fail=True)
    assert 'item 1' in result['msg'] and 'does not exist' in result['msg']
    assert mounts_below(root) == [] and not os.path.exists(r)
    result, dummy = run({'path': 'relative/dir', 'fstype': 'tmpfs'}, expect_fail=True)
    assert 'relative' in result['msg']


@pytest.mark.skipif('qtfs' in (read_filesystems() or ()), reason='qtfs is registered on this kernel')
def test_qtfs_not_registered(root):
    result, dummy = run({'path': os.path.join(root, 'q'), 'src': '/proc', 'opts': 'proc'}, expect_fail=True)
    assert 'qtfs.ko must be loaded first' in result['msg']
    assert not os.path.exists(os.path.join(root, 'q'))


def test_symlinked_mount_point_refused(root):
    real = os.path.join(root, 'real')
    os.makedirs(real)
    os.symlink(real, os.path.join(root, 'run'))
    result, dummy = run({'path': os.path.join(root, 'run'), 'fstype': 'tmpfs'}, expect_fail=True)
    assert 'symlink' in result['msg']
    assert mounts_below(root) == []


def test_cgroup_v1_controller(root):
    if 'cgroup' not in (read_filesystems() or ()):
        pytest.skip('cgroup v1 is not available on this kernel')
    path = os.path.join(root, 'cg', 'pids')
    try:
        result, dummy = run({'path': path, 'fstype': 'cgroup', 'opts': 'rw,nosuid,nodev,noexec,relatime,pids'})
    except AssertionError as e:
        pytest.skip('cannot mount a cgroup v1 hierarchy here: %s' % e)
    assert result['changed']
    result, dummy = run({'path': path, 'fstype': 'cgroup', 'opts': 'rw,nosuid,nodev,noexec,relatime,pids'})
    assert not result['changed']
    result, dummy = run({'path': path, 'fstype': 'cgroup', 'opts': 'rw,memory'}, expect_fail=True)
    assert 'controllers pids' in result['msg']


def test_namespace_file_bind(root):
    """The HOST binds /proc/1/ns/net on /run/docker/netns/default: such a bind
    shows up as nsfs with root 'net:[inode]' and must compare as unchanged."""
    target = os.path.join(root, 'netns', 'default')
    args = {'path': target, 'src': '/proc/self/ns/net', 'opts': 'bind'}
    result, dummy = run(args)
    assert result['changed'] and os.path.isfile(target)
    entry = mounts_below(root)[0]
    assert entry.fstype == 'nsfs' and entry.root == os.readlink('/proc/self/ns/net')
    result, dummy = run(args)
    assert not result['changed'], result
    result, dummy = run({'path': target, 'src': '/proc/self/ns/uts', 'opts': 'bind'}, expect_fail=True)
    assert 'expected the namespace uts:[' in result['msg']


def guide_like_stack(root):
    """The guide's shape: the DPU's sysfs with a tmpfs and a mount below it,
    then the HOST's /sys stacked on the same point (a tmpfs stands in for qtfs)."""
    r = os.path.join(root, 'rootfs')
    return [
        {'path': r, 'fstype': 'tmpfs'},
        {'path': r + '/sys', 'fstype': 'sysfs'},
        {'path': r + '/sys/fs/cgroup', 'fstype': 'tmpfs', 'opts': 'mode=755'},
        {'path': r + '/sys/fs/cgroup/stand-in', 'fstype': 'proc'},
        {'path': r + '/sys', 'fstype': 'tmpfs', 'opts': 'nodev'},
    ]


def test_stacked_list_like_the_guide(root):
    items = guide_like_stack(root)
    result, dummy = run({'mounts': items})
    assert actions(result) == ['mounted'] * 5
    assert [e.fstype for e in mounts_below(root)] == ['tmpfs', 'sysfs', 'tmpfs', 'proc', 'tmpfs']
    result, dummy = run({'mounts': items})
    assert actions(result) == ['unchanged'] * 5, result
    result, dummy = run({'mounts': items, 'state': 'unmounted'})
    assert actions(result) == ['unmounted'] * 5
    assert mounts_below(root) == []


def test_stacked_list_repairs_a_covered_item(root):
    items = guide_like_stack(root)
    run({'mounts': items[:3] + items[4:]})
    assert len(mounts_below(root)) == 4
    result, dummy = run({'mounts': items}, expect_fail=True)
    assert 'covered by tmpfs tmpfs' in result['msg'] and 'remount_on_mismatch' in result['msg']
    result, dummy = run({'mounts': items, 'remount_on_mismatch': True})
    assert actions(result) == ['unchanged', 'unchanged', 'unchanged', 'mounted', 'mounted']
    assert result['mounts'][3]['unmounted'] == [items[4]['path']]
    result, dummy = run({'mounts': items})
    assert actions(result) == ['unchanged'] * 5
