# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.dpu.offload.plugins.module_utils.mount_apply import ApplyError, apply_plan, system_changed
from ansible_collections.dpu.offload.plugins.module_utils.mount_plan import plan_mounted, plan_unmounted
from ansible_collections.dpu.offload.tests.unit.plugins.module_utils.mount_samples import ALL_FS, specs


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
