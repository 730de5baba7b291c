# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil

import pytest

from ansible.module_utils import basic

from ansible_collections.dpu.offload.plugins.modules import kmod
from ansible_collections.dpu.offload.tests.unit.plugins.modules.module_harness import run_module
from ansible_collections.dpu.offload.tests.unit.plugins.module_utils.sysfs_tree import add_module, make_proc


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Point the module at a fake /sys and /proc and fake insmod/rmmod."""
    sys_root = tmp_path / 'sys'
    (sys_root / 'module').mkdir(parents=True)
    make_proc(tmp_path / 'proc')
    ko = tmp_path / 'qtfs.ko'
    ko.write_bytes(b'')
    calls = []

    def run_command(self, args, **kw):
        calls.append(list(args))
        prog = os.path.basename(args[0])
        if prog in ('insmod', 'modprobe'):
            name = 'qtfs' if prog == 'insmod' else args[1]
            params = dict(a.split('=', 1) for a in args[2:])
            add_module(str(sys_root), name, params)
        elif prog == 'rmmod':
            shutil.rmtree(str(sys_root / 'module' / args[1]))
        return 0, '', ''

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return '/sbin/' + name

    orig = kmod.run_kmod
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', run_command)
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', get_bin_path)
    monkeypatch.setattr(kmod, 'run_kmod',
                        lambda module: orig(module, sys_root=str(sys_root), proc_root=str(tmp_path / 'proc')))
    return {'sys': str(sys_root), 'ko': str(ko), 'calls': calls}


def test_load_then_unchanged_then_mismatch_then_reload(fake):
    args = {'path': fake['ko'], 'params': {'qtfs_server_ip': '192.0.2.10', 'qtfs_log_level': 'INFO'}}
    result, dummy = run_module(kmod.main, args, diff=True)
    assert result['changed'] and result['action'] == 'loaded'
    assert result['params'] == {'qtfs_server_ip': '192.0.2.10', 'qtfs_log_level': 'INFO'}
    assert fake['calls'] == [['/sbin/insmod', fake['ko'], 'qtfs_log_level=INFO', 'qtfs_server_ip=192.0.2.10']]
    assert 'not loaded' in result['diff']['before'] and 'qtfs_log_level=INFO' in result['diff']['after']

    result, dummy = run_module(kmod.main, args)
    assert not result['changed'] and result['action'] == 'unchanged'

    args['params']['qtfs_log_level'] = 'DEBUG'
    result, dummy = run_module(kmod.main, args, expect_fail=True)
    assert "qtfs_log_level (requested 'DEBUG', running 'INFO')" in result['msg']
    assert result['mismatches'] == [{'name': 'qtfs_log_level', 'requested': 'DEBUG', 'running': 'INFO'}]

    args['reload_on_change'] = True
    result, dummy = run_module(kmod.main, args, check_mode=True)
    assert result['changed'] and result['action'] == 'would_reload'
    assert len(fake['calls']) == 1
    result, dummy = run_module(kmod.main, args)
    assert result['action'] == 'reloaded' and result['params']['qtfs_log_level'] == 'DEBUG'
    assert [c[0] for c in fake['calls'][1:]] == ['/sbin/rmmod', '/sbin/insmod']


def test_unload(fake):
    add_module(fake['sys'], 'qtfs', {'qtfs_log_level': 'INFO'})
    result, dummy = run_module(kmod.main, {'name': 'qtfs', 'state': 'absent'}, check_mode=True)
    assert result['action'] == 'would_unload' and fake['calls'] == []
    result, dummy = run_module(kmod.main, {'name': 'qtfs', 'state': 'absent'})
    assert result['action'] == 'unloaded' and fake['calls'] == [['/sbin/rmmod', 'qtfs']]
    result, dummy = run_module(kmod.main, {'name': 'qtfs', 'state': 'absent'})
    assert not result['changed']


def test_unload_in_use_names_holders(fake):
    add_module(fake['sys'], 'qtfs', {}, refcnt=5, holders=['qtfs_helper'])
    result, dummy = run_module(kmod.main, {'name': 'qtfs', 'state': 'absent'}, expect_fail=True)
    assert 'refcnt 5, holders: qtfs_helper' in result['msg']
    assert fake['calls'] == []


def test_hidden_param_warns(fake):
    add_module(fake['sys'], 'qtfs', {'qtfs_log_level': 'INFO'})
    result, warnings = run_module(kmod.main, {'name': 'qtfs', 'params': {'secret': 'x'}})
    assert not result['changed']
    assert any('secret' in w for w in warnings)


def test_missing_ko(fake, tmp_path):
    result, dummy = run_module(kmod.main, {'path': str(tmp_path / 'absent.ko')}, expect_fail=True)
    assert 'not found' in result['msg']


def test_needs_name_or_path():
    result, dummy = run_module(kmod.main, {}, expect_fail=True)
    assert 'name' in result['msg'] and 'path' in result['msg']


@pytest.mark.skipif(os.path.exists('/proc/modules'), reason='this kernel supports loadable modules')
def test_this_kernel_without_module_support(tmp_path):
    ko = tmp_path / 'qtfs.ko'
    ko.write_bytes(b'')
    result, dummy = run_module(kmod.main, {'path': str(ko)}, expect_fail=True)
    assert result['msg'].startswith('this kernel was built without loadable module support '
                                    '(/proc/modules is missing); qtfs.ko cannot be loaded here')
