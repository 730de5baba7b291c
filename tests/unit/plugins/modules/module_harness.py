# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's main() in-process and catch its exit_json/fail_json."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess

import pytest

from ansible.module_utils import basic

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19
    import contextlib
    import json

    from ansible.module_utils.common.text.converters import to_bytes

    @contextlib.contextmanager
    def patch_module_args(args=None):
        old = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args or {}}))
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = old

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import MountTable


class ModuleExit(Exception):
    def __init__(self, result, failed):
        super(ModuleExit, self).__init__(result)
        self.result = result
        self.failed = failed


def _exit_json(self, **kwargs):
    kwargs.setdefault('changed', False)
    raise ModuleExit(kwargs, False)


def _fail_json(self, msg, **kwargs):
    kwargs['msg'] = msg
    kwargs['failed'] = True
    raise ModuleExit(kwargs, True)


def _warn(self, warning):
    self._test_warnings.append(warning)


def run_module(main, args, check_mode=False, diff=False, expect_fail=False):
    """Call main() with args; return (result dict, warnings)."""
    args = dict(args)
    if check_mode:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    warnings = []
    orig_init = basic.AnsibleModule.__init__

    def init(self, *a, **kw):
        self._test_warnings = warnings
        orig_init(self, *a, **kw)

    with patch_module_args(args):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(basic.AnsibleModule, '__init__', init)
            mp.setattr(basic.AnsibleModule, 'exit_json', _exit_json)
            mp.setattr(basic.AnsibleModule, 'fail_json', _fail_json)
            mp.setattr(basic.AnsibleModule, 'warn', _warn)
            try:
                main()
            except ModuleExit as e:
                if e.failed != expect_fail:
                    raise AssertionError('module %s unexpectedly: %r' % ('failed' if e.failed else 'succeeded', e.result))
                return e.result, warnings
    raise AssertionError('module returned without exit_json/fail_json')


def can_mount(probe_dir):
    """(True, '') when this process may mount a tmpfs, else (False, reason)."""
    if os.geteuid() != 0:
        return False, 'needs root to mount'
    target = os.path.join(str(probe_dir), 'probe')
    os.mkdir(target)
    try:
        proc = subprocess.run(['mount', '-t', 'tmpfs', 'tmpfs', target],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except OSError as e:
        return False, 'cannot run mount: %s' % e
    if proc.returncode != 0:
        return False, 'mounting a tmpfs is not permitted here: %s' % proc.stderr.decode().strip()
    subprocess.run(['umount', target], check=False)
    os.rmdir(target)
    return True, ''


def mounts_below(path):
    return MountTable.from_file().under(path)


def unmount_all_below(path):
    """Best-effort cleanup: unmount everything at or below path."""
    for dummy in range(100):
        table = MountTable.from_file()
        left = table.under(path)
        if not left:
            return
        # only a visible leaf can be unmounted by its path
        leaves = table.leaves(left) or left
        for e in leaves:
            subprocess.run(['umount', '-l', e.mountpoint], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
