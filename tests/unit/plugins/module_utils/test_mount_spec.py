# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.dpu.offload.plugins.module_utils.mount_spec import MountError
from ansible_collections.dpu.offload.tests.unit.plugins.module_utils.mount_samples import specs


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
