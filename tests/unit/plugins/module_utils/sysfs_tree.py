# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build fake /sys/module and /proc trees for tests."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os


def add_module(sys_root, name, params=None, refcnt=0, holders=(), builtin=False, hidden=()):
    mdir = os.path.join(str(sys_root), 'module', name)
    pdir = os.path.join(mdir, 'parameters')
    os.makedirs(pdir)
    if not builtin:
        with open(os.path.join(mdir, 'initstate'), 'w') as f:
            f.write('live\n')
        with open(os.path.join(mdir, 'refcnt'), 'w') as f:
            f.write('%d\n' % refcnt)
        os.makedirs(os.path.join(mdir, 'holders'))
        for h in holders:
            os.makedirs(os.path.join(mdir, 'holders', h))
    for key, value in (params or {}).items():
        if key in hidden:
            continue
        with open(os.path.join(pdir, key), 'w') as f:
            f.write('%s\n' % value)
    return mdir


def make_proc(proc_root, modules=True, filesystems=('sysfs', 'proc', 'tmpfs')):
    os.makedirs(str(proc_root))
    if modules:
        with open(os.path.join(str(proc_root), 'modules'), 'w') as f:
            f.write('')
    with open(os.path.join(str(proc_root), 'filesystems'), 'w') as f:
        for fs in filesystems:
            f.write('nodev\t%s\n' % fs)
