# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import MountTable
from ansible_collections.dpu.offload.plugins.module_utils.offload_state import (
    DEFAULT_WRAPPERS,
    environment_value,
    gather,
    parse_systemctl_show,
    rexec_state_from_show,
    unknown_rexec,
)
from ansible_collections.dpu.offload.tests.unit.plugins.module_utils.sysfs_tree import add_module, make_proc

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')

SHOW = """LoadState=loaded
ActiveState=active
MainPID=812
Environment=CMD_NET_ADDR=tcp://0.0.0.0:7777 "NOTE=a b"
"""


def test_parse_show_and_environment():
    props = parse_systemctl_show(SHOW)
    assert props['MainPID'] == '812'
    assert environment_value(props['Environment'], 'CMD_NET_ADDR') == 'tcp://0.0.0.0:7777'
    assert environment_value(props['Environment'], 'NOTE') == 'a b'
    assert environment_value('', 'X') is None
    assert environment_value('A=1 A=2', 'A') == '2'


def test_rexec_state():
    st = rexec_state_from_show(parse_systemctl_show(SHOW))
    assert st == {'state': 'active', 'main_pid': 812, 'listen': 'tcp://0.0.0.0:7777',
                  'listen_source': 'systemd', 'load_state': 'loaded'}
    missing = rexec_state_from_show({'LoadState': 'not-found', 'ActiveState': 'inactive', 'MainPID': '0'})
    assert missing['state'] == 'not-found' and missing['main_pid'] is None and missing['listen'] is None
    override = rexec_state_from_show(parse_systemctl_show(SHOW), 'tcp://10.0.0.1:7777')
    assert override['listen'] == 'tcp://10.0.0.1:7777' and override['listen_source'] == 'option'
    assert unknown_rexec()['state'] == 'unknown'


def test_gather(tmp_path):
    sys_root = tmp_path / 'sys'
    (sys_root / 'module').mkdir(parents=True)
    add_module(str(sys_root), 'qtfs', {'qtfs_log_level': 'INFO'}, refcnt=2)
    make_proc(tmp_path / 'proc', modules=True, filesystems=('proc', 'qtfs'))
    root = tmp_path / 'another_rootfs'
    (root / 'usr' / 'local' / 'bin').mkdir(parents=True)
    shim = root / 'usr' / 'local' / 'bin' / 'containerd-shim'
    shim.write_text(u'#!/bin/sh\n')
    shim.chmod(0o755)
    (root / 'usr' / 'local' / 'bin' / 'remote_kill').write_text(u'#!/bin/sh\n')
    table = MountTable.from_file(os.path.join(FIXTURES, 'mountinfo_crafted.txt'))
    facts = gather(table, '/another_rootfs', DEFAULT_WRAPPERS, ['qtfs', 'qtfs_server'],
                   sys_root=str(sys_root), proc_root=str(tmp_path / 'proc'))
    assert facts['loadable_modules_supported'] and facts['qtfs_registered']
    assert facts['kernel_modules']['qtfs'] == {'loaded': True, 'builtin': False,
                                               'params': {'qtfs_log_level': 'INFO'}, 'refcnt': 2, 'holders': []}
    assert not facts['kernel_modules']['qtfs_server']['loaded']
    assert len(facts['mounts']) == 9
    assert [m['visible'] for m in facts['mounts']].count(False) == 3
    # wrappers are looked up under the real offload_root given
    facts = gather(table, str(root), DEFAULT_WRAPPERS, [], sys_root=str(sys_root), proc_root=str(tmp_path / 'proc'))
    w = dict((x['path'], x) for x in facts['wrappers'])
    assert w['usr/local/bin/containerd-shim']['executable']
    assert w['usr/local/bin/remote_kill']['exists'] and not w['usr/local/bin/remote_kill']['executable']
    assert not w['usr/sbin/modprobe']['exists']
