# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Read-only helpers for dpu.offload.offload_facts: plain functions over
paths and command output so tests can feed fake trees and texts."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shlex

from ansible_collections.dpu.offload.plugins.module_utils.kmod import (
    loadable_modules_supported,
    module_state,
)
from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import (
    FILESYSTEMS_PATH,
    is_under,
    read_filesystems,
)

DEFAULT_WRAPPERS = ('usr/local/bin/containerd-shim', 'usr/local/bin/remote_kill', 'usr/sbin/modprobe')


def parse_systemctl_show(text):
    """KEY=VALUE lines of `systemctl show` into a dict (first '=' splits)."""
    props = {}
    for line in text.splitlines():
        key, sep, value = line.partition('=')
        if sep:
            props[key.strip()] = value
    return props


def environment_value(environment, key):
    """Value of key in a systemd Environment= property text, or None.

    systemd prints the assignments separated by blanks, quoting those that
    contain blanks; shlex undoes that quoting.
    """
    if not environment:
        return None
    try:
        words = shlex.split(environment)
    except ValueError:
        words = environment.split()
    value = None
    for word in words:
        k, sep, v = word.partition('=')
        if sep and k == key:
            value = v  # the last assignment wins, as in systemd
    return value


def filesystem_registered(fstype, filesystems_path=FILESYSTEMS_PATH):
    types = read_filesystems(filesystems_path)
    return types is not None and fstype in types


def kernel_modules(names, sys_root='/sys'):
    """Loaded state and parameters of each named module."""
    info = {}
    for name in names:
        st = module_state(name, sys_root)
        info[name] = {
            'loaded': st['present'],
            'builtin': st['builtin'],
            'params': st['params'],
            'refcnt': st['refcnt'],
            'holders': st['holders'],
        }
    return info


def mounts_under(table, root):
    """Mounts at or below root, in mountinfo order, as dicts."""
    result = []
    for e in table.entries:
        if is_under(e.mountpoint, root):
            result.append({
                'path': e.mountpoint,
                'fstype': e.fstype,
                'src': e.source,
                'opts': e.mount_opts,
                'super_opts': e.super_opts,
                'root': e.root,
                'device': e.device,
                'visible': table.visible(e),
            })
    return result


def wrapper_status(root, rel_paths):
    """exists/executable for each wrapper path, relative to root."""
    result = []
    for rel in rel_paths:
        full = os.path.join(root, rel.lstrip('/'))
        exists = os.path.isfile(full)
        result.append({
            'path': rel,
            'full_path': full,
            'exists': exists,
            'executable': exists and os.access(full, os.X_OK),
        })
    return result


def rexec_state_from_show(props, listen_override=None):
    """Service facts from `systemctl show` properties."""
    state = props.get('ActiveState') or 'unknown'
    if props.get('LoadState') == 'not-found':
        state = 'not-found'
    pid = props.get('MainPID')
    try:
        pid = int(pid) if pid else None
    except ValueError:
        pid = None
    if pid == 0:
        pid = None
    listen = listen_override
    source = 'option' if listen_override else 'none'
    if not listen:
        listen = environment_value(props.get('Environment', ''), 'CMD_NET_ADDR')
        source = 'systemd' if listen else 'none'
    return {'state': state, 'main_pid': pid, 'listen': listen, 'listen_source': source,
            'load_state': props.get('LoadState')}


def unknown_rexec(listen_override=None):
    return {'state': 'unknown', 'main_pid': None, 'listen': listen_override or None,
            'listen_source': 'option' if listen_override else 'none', 'load_state': None}


def gather(table, offload_root, wrappers, module_names, sys_root='/sys', proc_root='/proc'):
    """Everything except the service facts (which need a command runner)."""
    return {
        'offload_root': offload_root,
        'offload_root_exists': os.path.isdir(offload_root),
        'loadable_modules_supported': loadable_modules_supported(proc_root),
        'qtfs_registered': filesystem_registered('qtfs', os.path.join(proc_root, 'filesystems')),
        'kernel_modules': kernel_modules(module_names, sys_root),
        'mounts': mounts_under(table, offload_root),
        'wrappers': wrapper_status(offload_root, wrappers),
    }
