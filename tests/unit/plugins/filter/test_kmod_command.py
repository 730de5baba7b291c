# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import shlex

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.kmod_commands import kmod_command
from ansible_collections.dpu.offload.plugins.module_utils.kmod import plan


def test_the_line_has_the_modules_own_arguments(tmp_path):
    params = {'qtfs_server_port': 12345, 'qtfs_server_ip': '192.0.2.10', 'debug': True}
    module = tmp_path / 'qtfs.ko'
    module.write_bytes(b'\x7fELF')
    (tmp_path / 'modules').write_text('')
    line = kmod_command(str(module), params)
    assert line == 'insmod %s debug=Y qtfs_server_ip=192.0.2.10 qtfs_server_port=12345' % module
    # What dpu.offload.kmod itself runs for a module that is not loaded.
    planned = plan(path=str(module), params=params, state='present', sys_root=str(tmp_path), proc_root=str(tmp_path))
    assert shlex.split(line) == planned['commands'][0]


def test_blanks_and_shell_characters_stay_one_argument_each():
    line = kmod_command('/opt/my modules/x.ko', {'names': 'a b', 'mark': "it's $HOME"})
    assert shlex.split(line) == ['insmod', '/opt/my modules/x.ko', "mark=\"it's $HOME\"", 'names="a b"']


def test_a_unit_gets_dollars_and_percents_doubled():
    assert kmod_command('/x.ko', {'v': '$a%b'}, systemd=True) == "insmod /x.ko 'v=$$a%%b'"


@pytest.mark.parametrize('path, params', [('x.ko', {}), ('/x.ko', {'a=b': 1}), ('/x.ko', {'': 1}), ('/x.ko', ['a'])])
def test_bad_input_is_refused(path, params):
    with pytest.raises(AnsibleFilterError):
        kmod_command(path, params)
