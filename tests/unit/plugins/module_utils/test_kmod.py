# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.dpu.offload.plugins.module_utils.kmod import (
    KmodError,
    compare_params,
    describe_state,
    module_name_from_path,
    module_state,
    param_args,
    param_equal,
    plan,
    predicted_state,
)
from ansible_collections.dpu.offload.tests.unit.plugins.module_utils.sysfs_tree import add_module, make_proc

QTFS_PARAMS = {'qtfs_server_ip': '192.0.2.10', 'qtfs_server_port': '12345', 'qtfs_log_level': 'INFO',
               'qtfs_conn_max_conn': '16', 'qtfs_conn_type': 'socket'}


@pytest.fixture
def roots(tmp_path):
    sys_root = tmp_path / 'sys'
    proc_root = tmp_path / 'proc'
    (sys_root / 'module').mkdir(parents=True)
    make_proc(proc_root)
    ko = tmp_path / 'qtfs.ko'
    ko.write_bytes(b'\x7fELF')
    return str(sys_root), str(proc_root), str(ko)


@pytest.mark.parametrize('path, name', [
    ('/x/qtfs.ko', 'qtfs'), ('/x/qtfs_server.ko', 'qtfs_server'),
    ('/x/my-mod.ko.xz', 'my_mod'), ('/x/plain', 'plain'),
])
def test_module_name_from_path(path, name):
    assert module_name_from_path(path) == name


@pytest.mark.parametrize('requested, running, equal', [
    ('INFO', 'INFO\n', True), (12345, '12345', True), (True, 'Y', True), ('yes', 'Y', True),
    ('off', 'N', True), (False, 'Y', False), ('1', 'Y', True), ('1', '1', True),
    ('INFO', 'ERROR', False), ('  a ', 'a', True),
])
def test_param_equal(requested, running, equal):
    assert param_equal(requested, running) is equal


def test_param_args_quotes_blanks():
    assert param_args({'b': 'x y', 'a': 1, 'c': True}) == ['a=1', 'b="x y"', 'c=Y']


def test_module_state_reads_tree(roots):
    sys_root = roots[0]
    add_module(sys_root, 'qtfs', QTFS_PARAMS, refcnt=3, holders=['other'])
    st = module_state('qtfs', sys_root)
    assert st['present'] and not st['builtin']
    assert st['refcnt'] == 3 and st['holders'] == ['other']
    assert st['params']['qtfs_log_level'] == 'INFO'
    assert module_state('qtfs', sys_root, params=['qtfs_log_level', 'nope'])['params'] == {'qtfs_log_level': 'INFO'}
    assert not module_state('absent_mod', sys_root)['present']
    text = describe_state(st)
    assert 'module qtfs: loaded' in text and 'qtfs_log_level=INFO' in text


def test_plan_load_by_path(roots):
    sys_root, proc_root, ko = roots
    d = plan(path=ko, params={'qtfs_server_ip': '192.0.2.10', 'qtfs_log_level': 'INFO'},
             sys_root=sys_root, proc_root=proc_root)
    assert d['name'] == 'qtfs' and d['action'] == 'load'
    assert d['commands'] == [['insmod', ko, 'qtfs_log_level=INFO', 'qtfs_server_ip=192.0.2.10']]
    after = predicted_state(d, {'qtfs_log_level': 'INFO'})
    assert after['present'] and after['params'] == {'qtfs_log_level': 'INFO'}


def test_plan_load_by_name_uses_modprobe(roots):
    sys_root, proc_root, dummy = roots
    d = plan(name='overlay', sys_root=sys_root, proc_root=proc_root)
    assert d['commands'] == [['modprobe', 'overlay']]


def test_plan_missing_ko(roots, tmp_path):
    sys_root, proc_root, dummy = roots
    with pytest.raises(KmodError) as exc:
        plan(path=str(tmp_path / 'nope.ko'), sys_root=sys_root, proc_root=proc_root)
    assert 'not found' in str(exc.value)


def test_plan_relative_path(roots):
    with pytest.raises(KmodError) as exc:
        plan(path='qtfs.ko', sys_root=roots[0], proc_root=roots[1])
    assert 'relative' in str(exc.value)


def test_plan_no_module_support(tmp_path):
    sys_root = tmp_path / 'sys'
    (sys_root / 'module').mkdir(parents=True)
    make_proc(tmp_path / 'proc', modules=False)
    ko = tmp_path / 'qtfs.ko'
    ko.write_bytes(b'')
    with pytest.raises(KmodError) as exc:
        plan(path=str(ko), sys_root=str(sys_root), proc_root=str(tmp_path / 'proc'))
    msg = str(exc.value)
    assert 'without loadable module support' in msg
    assert '/proc/modules is missing' in msg.replace(str(tmp_path), '')
    assert 'qtfs.ko cannot be loaded here' in msg and 'sshfs' in msg


def test_plan_loaded_same_params_unchanged(roots):
    sys_root, proc_root, ko = roots
    add_module(sys_root, 'qtfs', QTFS_PARAMS)
    d = plan(path=ko, params={'qtfs_log_level': 'INFO', 'qtfs_server_port': 12345},
             sys_root=sys_root, proc_root=proc_root)
    assert d['action'] == 'unchanged' and d['warnings'] == []


def test_plan_loaded_other_params_fails_naming_them(roots):
    sys_root, proc_root, ko = roots
    add_module(sys_root, 'qtfs', QTFS_PARAMS)
    with pytest.raises(KmodError) as exc:
        plan(path=ko, params={'qtfs_log_level': 'DEBUG', 'qtfs_server_ip': '192.0.2.10'},
             sys_root=sys_root, proc_root=proc_root)
    msg = str(exc.value)
    assert "qtfs_log_level (requested 'DEBUG', running 'INFO')" in msg
    assert 'qtfs_server_ip' not in msg
    assert 'reload_on_change' in msg


def test_plan_reload_on_change(roots):
    sys_root, proc_root, ko = roots
    add_module(sys_root, 'qtfs', QTFS_PARAMS)
    d = plan(path=ko, params={'qtfs_log_level': 'DEBUG'}, reload_on_change=True,
             sys_root=sys_root, proc_root=proc_root)
    assert d['action'] == 'reload'
    assert d['commands'] == [['rmmod', 'qtfs'], ['insmod', ko, 'qtfs_log_level=DEBUG']]
    assert d['mismatches'] == [('qtfs_log_level', 'DEBUG', 'INFO')]


def test_plan_reload_refused_when_in_use(roots):
    sys_root, proc_root, ko = roots
    add_module(sys_root, 'qtfs', QTFS_PARAMS, refcnt=2, holders=['qtfs_helper'])
    with pytest.raises(KmodError) as exc:
        plan(path=ko, params={'qtfs_log_level': 'DEBUG'}, reload_on_change=True,
             sys_root=sys_root, proc_root=proc_root)
    assert 'refcnt 2, holders: qtfs_helper' in str(exc.value)


def test_plan_hidden_parameter_warns(roots):
    sys_root, proc_root, ko = roots
    add_module(sys_root, 'qtfs', QTFS_PARAMS, hidden=['qtfs_server_ip'])
    d = plan(path=ko, params={'qtfs_server_ip': '198.51.100.1'}, sys_root=sys_root, proc_root=proc_root)
    assert d['action'] == 'unchanged'
    assert 'qtfs_server_ip' in d['warnings'][0] and 'cannot be checked' in d['warnings'][0]


def test_plan_absent(roots):
    sys_root, proc_root, dummy = roots
    assert plan(name='qtfs', state='absent', sys_root=sys_root, proc_root=proc_root)['action'] == 'unchanged'
    add_module(sys_root, 'qtfs', QTFS_PARAMS)
    d = plan(name='qtfs', state='absent', sys_root=sys_root, proc_root=proc_root)
    assert d['action'] == 'unload' and d['commands'] == [['rmmod', 'qtfs']]
    assert not predicted_state(d, {})['present']


def test_plan_absent_in_use(roots):
    sys_root, proc_root, dummy = roots
    add_module(sys_root, 'qtfs', QTFS_PARAMS, refcnt=4)
    with pytest.raises(KmodError) as exc:
        plan(name='qtfs', state='absent', sys_root=sys_root, proc_root=proc_root)
    assert 'in use (refcnt 4, holders: none)' in str(exc.value)


def test_plan_builtin(roots):
    sys_root, proc_root, dummy = roots
    add_module(sys_root, 'fuse', {'max_user_bgreq': '1024'}, builtin=True)
    with pytest.raises(KmodError) as exc:
        plan(name='fuse', state='absent', sys_root=sys_root, proc_root=proc_root)
    assert 'built into the kernel' in str(exc.value)
    assert plan(name='fuse', params={'max_user_bgreq': 1024}, sys_root=sys_root,
                proc_root=proc_root)['action'] == 'unchanged'


def test_compare_params_unchecked():
    mism, unchecked = compare_params({'a': 1, 'b': 2, 'c': 3}, {'a': '1', 'b': None})
    assert mism == [] and unchecked == ['b', 'c']


def test_unreadable_parameter_file(roots):
    sys_root = roots[0]
    mdir = add_module(sys_root, 'qtfs', {})
    os.makedirs(os.path.join(mdir, 'parameters', 'weird'))  # reading a directory fails
    st = module_state('qtfs', sys_root)
    assert st['params'] == {'weird': None}
