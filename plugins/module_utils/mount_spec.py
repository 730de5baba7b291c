# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The requested mounts of dpu.offload.qtfs_mount, validated (the first step).

normalize_specs() turns the raw items (path, src, fstype, opts) into
MountSpecs, checking their shape only: nothing is read from the system. A
MountSpec knows the mount(8) command that makes it, which the module runs
and the dpu.offload.mount_commands filter writes into boot scripts.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import split_opts

# Types whose source field is only a label: it is not compared.
PSEUDO_FSTYPES = frozenset([
    'proc', 'sysfs', 'devtmpfs', 'tmpfs', 'cgroup', 'cgroup2', 'devpts',
    'mqueue', 'securityfs', 'debugfs', 'tracefs', 'hugetlbfs', 'pstore',
    'bpf', 'configfs', 'fusectl', 'binfmt_misc', 'ramfs', 'overlay',
])

# fstype values that mean "bind mount" when the options say bind.
BIND_FSTYPES = frozenset(['none', 'bind', ''])


class MountError(Exception):
    """A problem found while validating or planning; nothing was changed."""


def normalize_path(path):
    """Normalise an absolute path; collapse duplicate and trailing slashes."""
    path = os.path.normpath(path)
    if path.startswith('//'):
        path = '/' + path.lstrip('/')
    return path


class MountSpec:
    """One requested mount, validated and normalised."""

    def __init__(self, index, path, src, fstype, opts):
        self.index = index
        self.path = path
        self.src = src
        self.fstype = fstype
        self.opts = opts

    @property
    def is_bind(self):
        return 'bind' in self.opts or 'rbind' in self.opts

    @property
    def kind(self):
        if self.is_bind:
            return 'bind'
        if self.fstype == 'qtfs':
            return 'qtfs'
        if self.fstype.startswith('fuse.'):
            return 'fuse'
        if self.fstype == 'cgroup':
            return 'cgroup'
        if self.fstype in PSEUDO_FSTYPES:
            return 'pseudo'
        return 'other'

    def label(self):
        return 'item %d (%s)' % (self.index, self.path)

    def describe(self):
        if self.is_bind:
            text = 'bind %s' % self.src
        else:
            text = '%s %s' % (self.fstype, self.src)
        if self.opts:
            text += ' (%s)' % ','.join(self.opts)
        return text

    def mount_command(self, mount_bin='mount'):
        """Argument list for mount(8); never a shell string."""
        if self.is_bind:
            return [mount_bin, '-o', ','.join(self.opts), self.src, self.path]
        args = [mount_bin]
        if self.kind == 'qtfs':
            # The qtfs "device" is a path on the HOST: hand it to the kernel
            # exactly as given so mountinfo shows the same string.
            args.append('--no-canonicalize')
        args += ['-t', self.fstype]
        if self.opts:
            args += ['-o', ','.join(self.opts)]
        args += [self.src, self.path]
        return args

    def to_result(self):
        return {
            'path': self.path,
            'src': self.src,
            'fstype': 'none' if self.is_bind else self.fstype,
            'opts': ','.join(self.opts),
        }


def normalize_specs(items, default_fstype='qtfs', require_src=True):
    """Validate raw items (dicts with path/src/fstype/opts) into MountSpecs.

    Raises MountError listing every problem found.
    """
    problems = []
    specs = []
    seen = {}
    for index, raw in enumerate(items):
        path = raw.get('path')
        src = raw.get('src')
        fstype = raw.get('fstype')
        opts = split_opts(raw.get('opts'))
        where = 'item %d' % index
        if not path:
            problems.append('%s: path is required' % where)
            continue
        if not os.path.isabs(path):
            problems.append('%s: path %r is relative; give an absolute mount point' % (where, path))
            continue
        path = normalize_path(path)
        where = 'item %d (%s)' % (index, path)
        if path == '/':
            problems.append('%s: refusing to manage a mount on /' % where)
            continue
        seen[path] = index
        is_bind = 'bind' in opts or 'rbind' in opts
        if fstype is None:
            fstype = 'none' if is_bind else default_fstype
        if is_bind:
            if fstype not in BIND_FSTYPES:
                problems.append('%s: opts say bind but fstype is %r; use fstype none (or leave it out) '
                                'for a bind mount' % (where, fstype))
                continue
            fstype = 'none'
            if 'bind' in opts and 'rbind' in opts:
                problems.append('%s: give bind or rbind, not both' % where)
                continue
            # bind/rbind first, as mount(8) expects nothing special but it reads better
            flag = 'rbind' if 'rbind' in opts else 'bind'
            opts = [flag] + [o for o in opts if o not in ('bind', 'rbind')]
            if require_src and not src:
                problems.append('%s: a bind mount needs src (the directory or file to bind)' % where)
                continue
            if src and not os.path.isabs(src):
                problems.append('%s: bind source %r is relative; give an absolute path' % (where, src))
                continue
            if src:
                src = normalize_path(src)
        elif fstype in BIND_FSTYPES:
            problems.append('%s: fstype %r without opts bind; add opts: bind for a bind mount, '
                            'or name the filesystem type' % (where, fstype))
            continue
        else:
            if fstype == 'sshfs':
                fstype = 'fuse.sshfs'
            if not src:
                if fstype in PSEUDO_FSTYPES:
                    src = fstype
                elif require_src:
                    if fstype == 'qtfs':
                        hint = 'the absolute path on the HOST to share'
                    elif fstype.startswith('fuse.'):
                        hint = 'e.g. user@host:/path'
                    else:
                        hint = 'the device or remote path'
                    problems.append('%s: src is required for fstype %s (%s)' % (where, fstype, hint))
                    continue
            if fstype == 'qtfs' and src and not src.startswith('/'):
                problems.append('%s: a qtfs src is an absolute path on the HOST, got %r' % (where, src))
                continue
        specs.append(MountSpec(index, path, src, fstype, opts))
    if problems:
        raise MountError('; '.join(problems))
    return specs
