# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Comparing a requested mount with what mountinfo shows (the second step).

compare() returns the differences between a MountSpec and a MountEntry,
empty when the mount in place is the one requested.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import (
    bind_identity,
    cgroup_controllers,
    vfs_option_mismatches,
)
from ansible_collections.dpu.offload.plugins.module_utils.mount_spec import normalize_path


def normalize_remote_source(src):
    """Normalise a qtfs/sshfs source for comparison: trailing slashes go."""
    if src is None:
        return None
    if ':' in src and not src.startswith('/'):
        host, _sep, rpath = src.partition(':')
        if rpath not in ('', '/'):
            rpath = rpath.rstrip('/') or '/'
        return host + ':' + rpath
    if src.startswith('/'):
        return normalize_path(src)
    return src


_NS_LINK = re.compile(r'^[a-z_]+:\[[0-9]+\]$')


def namespace_link(path):
    """The link text (e.g. 'net:[4026531840]') when path is a namespace file, else None."""
    try:
        target = os.readlink(path)
    except (IOError, OSError):
        return None
    return target if _NS_LINK.match(target) else None


def compare(spec, entry, table, realpath=os.path.realpath):
    """Differences between the requested spec and the mount entry (empty when same)."""
    diffs = []
    kind = spec.kind
    if kind == 'bind':
        ns_link = namespace_link(spec.src)
        if ns_link is not None:
            # A namespace file (/proc/<pid>/ns/net...): the bind shows up as
            # fstype nsfs with the link text ("net:[4026531840]") as its root.
            if entry.fstype != 'nsfs' or entry.root != ns_link:
                diffs.append('%s %s, expected the namespace %s of %s'
                             % (entry.fstype, entry.root, ns_link, spec.src))
            bad = vfs_option_mismatches(spec.opts, entry)
            if bad:
                diffs.append('options %s not in effect (mount options %s)' % (','.join(bad), entry.mount_opts))
            return diffs
        try:
            wanted = bind_identity(table, realpath(spec.src))
        except (IOError, OSError) as e:
            return ['cannot resolve bind source %s: %s' % (spec.src, e)]
        have = (entry.device, entry.root)
        if wanted is None:
            diffs.append('cannot find the mount holding %s' % spec.src)
        elif wanted != have:
            diffs.append('bind of device %s root %s, expected device %s root %s (from %s)'
                         % (have[0], have[1], wanted[0], wanted[1], spec.src))
    else:
        if entry.fstype != spec.fstype:
            diffs.append('fstype %s, expected %s' % (entry.fstype, spec.fstype))
        elif kind in ('qtfs', 'fuse'):
            if normalize_remote_source(entry.source) != normalize_remote_source(spec.src):
                diffs.append('source %s, expected %s' % (entry.source, spec.src))
        elif kind == 'cgroup':
            wanted = cgroup_controllers(spec.opts)
            if wanted:
                have = cgroup_controllers(entry.super_opt_list())
                if have != wanted:
                    diffs.append('cgroup controllers %s, expected %s'
                                 % (','.join(sorted(have)) or '(none)', ','.join(sorted(wanted))))
        elif kind == 'other' and spec.src and spec.src.startswith('/'):
            if normalize_path(realpath(spec.src)) != normalize_path(realpath(entry.source)) \
                    and entry.source != spec.src:
                diffs.append('source %s, expected %s' % (entry.source, spec.src))
        if kind == 'qtfs' and not diffs:
            # qtfs does not print its "proc" flag today; compare only when the
            # kernel reports it, so an unreported flag never causes churn.
            if 'proc' in entry.super_opt_list() and 'proc' not in spec.opts:
                diffs.append('qtfs mounted with proc, not requested')
    bad = vfs_option_mismatches(spec.opts, entry)
    if bad:
        diffs.append('options %s not in effect (mount options %s)' % (','.join(bad), entry.mount_opts))
    return diffs
