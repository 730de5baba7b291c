# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess

import pytest

from ansible.module_utils import basic

from ansible_collections.dpu.offload.plugins.modules import offload_facts
from ansible_collections.dpu.offload.tests.unit.plugins.modules.module_harness import (
    can_mount,
    run_module,
    unmount_all_below,
)


def test_facts_on_this_machine(tmp_path):
    result, dummy = run_module(offload_facts.main, {'offload_root': str(tmp_path)}, check_mode=True)
    assert result['changed'] is False
    facts = result['ansible_facts']['dpu_offload']
    assert facts['offload_root'] == str(tmp_path)
    assert facts['loadable_modules_supported'] is os.path.exists('/proc/modules')
    assert set(facts['kernel_modules']) == set(['qtfs', 'qtfs_server'])
    assert facts['rexec']['state'] in ('unknown', 'not-found', 'inactive', 'active', 'failed')
    assert [w['path'] for w in facts['wrappers']] == list(offload_facts.ARGUMENT_SPEC['wrappers']['default'])
    assert facts['mounts'] == []


def test_facts_list_mounts_under_root(tmp_path):
    ok, reason = can_mount(tmp_path)
    if not ok:
        pytest.skip(reason)
    point = tmp_path / 'proc'
    point.mkdir()
    subprocess.check_call(['mount', '-t', 'proc', 'proc', str(point)])
    try:
        result, dummy = run_module(offload_facts.main, {'offload_root': str(tmp_path) + '/'})
    finally:
        unmount_all_below(str(tmp_path))
    mounts = result['ansible_facts']['dpu_offload']['mounts']
    assert [(m['path'], m['fstype'], m['visible']) for m in mounts] == [(str(point), 'proc', True)]


def test_rexec_from_systemctl(tmp_path, monkeypatch):
    def get_bin_path(self, name, required=False, opt_dirs=None):
        return '/bin/systemctl' if name == 'systemctl' else None

    def run_command(self, args, **kw):
        assert args[-1] == 'rexec' and args[1] == 'show'
        return 0, 'LoadState=loaded\nActiveState=active\nMainPID=42\nEnvironment=CMD_NET_ADDR=tcp://0.0.0.0:7777\n', ''

    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', get_bin_path)
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', run_command)
    result, dummy = run_module(offload_facts.main, {'offload_root': str(tmp_path)})
    rexec = result['ansible_facts']['dpu_offload']['rexec']
    assert rexec == {'state': 'active', 'main_pid': 42, 'listen': 'tcp://0.0.0.0:7777',
                     'listen_source': 'systemd', 'load_state': 'loaded'}
