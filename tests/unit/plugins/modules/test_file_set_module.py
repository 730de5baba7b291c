# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.dpu.offload.plugins.modules import file_set
from ansible_collections.dpu.offload.tests.unit.plugins.modules.module_harness import run_module


def args(tmp_path, **extra):
    root = str(tmp_path)
    base = dict(owner=str(os.getuid()), group=str(os.getgid()), entries=[
        {'path': root + '/etc', 'mode': '0755'},
        {'path': root + '/etc/app.conf', 'content': 'port = 1\n', 'mode': '0644'},
        {'path': root + '/app.conf', 'src': root + '/etc/app.conf'},
    ])
    base.update(extra)
    return base


def test_changed_is_exact(tmp_path):
    result, _w = run_module(file_set.main, args(tmp_path))
    assert result['changed'] is True
    assert result['changed_paths'] == [str(tmp_path / 'etc'), str(tmp_path / 'etc' / 'app.conf'), str(tmp_path / 'app.conf')]
    again, _w = run_module(file_set.main, args(tmp_path))
    assert again['changed'] is False and again['changed_paths'] == []
    assert [e['actions'] for e in again['entries']] == [[], [], []]


def test_check_mode_changes_nothing_and_shows_a_diff(tmp_path):
    result, _w = run_module(file_set.main, args(tmp_path), check_mode=True, diff=True)
    assert result['changed'] is True
    assert os.listdir(str(tmp_path)) == []
    assert [d['after_header'] for d in result['diff']] == result['changed_paths']
    assert result['diff'][1]['after'] == 'port = 1\n'


def test_a_failing_check_leaves_the_set_as_it_was(tmp_path):
    a = args(tmp_path)
    a['entries'][1]['validate'] = 'sh -c "exit 3" %s'
    result, _w = run_module(file_set.main, a, expect_fail=True)
    assert 'fails its check' in result['msg'] and 'rc 3' in result['msg']
    assert os.listdir(str(tmp_path)) == []
    a['entries'][1]['validate'] = 'grep -q port %s'
    result, _w = run_module(file_set.main, a)
    assert result['changed'] is True


def test_template_and_copy_need_the_action_plugin(tmp_path):
    a = args(tmp_path)
    a['entries'][1] = {'path': str(tmp_path / 'etc' / 'app.conf'), 'template': 'app.conf.j2'}
    result, _w = run_module(file_set.main, a, expect_fail=True)
    assert 'action plugin' in result['msg']
    assert os.listdir(str(tmp_path)) == []
