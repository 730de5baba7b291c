# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reading the kernel's table of mounts (/proc/<pid>/mountinfo) and its list
of filesystem types (/proc/filesystems).

Everything here is a plain function over text or a file path, so tests can
feed recorded tables. A line of mountinfo has the fields (see proc(5)):

  id parent major:minor root mount-point mount-options [optional...] - fstype source super-options

Paths and the source are escaped by the kernel: space, tab, newline and
backslash appear as the octal escapes \\040, \\011, \\012 and \\134.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

MOUNTINFO_PATH = '/proc/self/mountinfo'
FILESYSTEMS_PATH = '/proc/filesystems'

_OCTAL_ESCAPE = re.compile(r'\\([0-7]{3})')

# Flags the VFS keeps per mount and prints in the sixth field (mount options).
# Each maps to (flag that must be present, flags that must be absent).
VFS_FLAG_CHECKS = {
    'ro': (('ro',), ()),
    'rw': (('rw',), ()),
    'nosuid': (('nosuid',), ()),
    'suid': ((), ('nosuid',)),
    'nodev': (('nodev',), ()),
    'dev': ((), ('nodev',)),
    'noexec': (('noexec',), ()),
    'exec': ((), ('noexec',)),
    'noatime': (('noatime',), ()),
    'relatime': (('relatime',), ()),
    'strictatime': ((), ('noatime', 'relatime')),
    'nodiratime': (('nodiratime',), ()),
    'nosymfollow': (('nosymfollow',), ()),
}

# Options that steer mount(8) itself or fstab handling and never reach the
# kernel's table; they are never compared.
MOUNT_COMMAND_OPTIONS = frozenset([
    'defaults', 'auto', 'noauto', 'user', 'nouser', 'users', 'owner', 'group',
    'nofail', '_netdev', 'bind', 'rbind', 'remount', 'move', 'loud', 'silent',
    'norelatime', 'diratime', 'async', 'sync', 'lazytime', 'nolazytime',
    'mand', 'nomand', 'iversion', 'noiversion', 'dirsync',
    # Propagation changes mount(8) makes after the mount (mountinfo's optional fields, not its options).
    'shared', 'rshared', 'slave', 'rslave', 'private', 'rprivate', 'unbindable', 'runbindable',
])

# Words that may appear in the super options of a cgroup v1 mount and are
# not controller names.
CGROUP_NON_CONTROLLER_OPTIONS = frozenset([
    'rw', 'ro', 'none', 'noprefix', 'xattr', 'clone_children',
    'cpuset_v2_mode', 'favordynmods', 'all',
])


def unescape(field):
    """Decode the kernel's octal escapes (\\040 and friends) in one field."""
    if '\\' not in field:
        return field
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def escape(text):
    """Escape a string the way the kernel does in mountinfo (for display and tests)."""
    return (text.replace('\\', '\\134').replace(' ', '\\040')
            .replace('\t', '\\011').replace('\n', '\\012'))


class MountInfoError(Exception):
    """A mountinfo line that cannot be parsed."""


class MountEntry:
    """One line of mountinfo, decoded."""

    __slots__ = ('mount_id', 'parent_id', 'major', 'minor', 'root', 'mountpoint',
                 'mount_opts', 'optional', 'fstype', 'source', 'super_opts', 'index')

    def __init__(self, mount_id, parent_id, major, minor, root, mountpoint,
                 mount_opts, optional, fstype, source, super_opts, index=0):
        self.mount_id = mount_id
        self.parent_id = parent_id
        self.major = major
        self.minor = minor
        self.root = root
        self.mountpoint = mountpoint
        self.mount_opts = mount_opts
        self.optional = optional
        self.fstype = fstype
        self.source = source
        self.super_opts = super_opts
        self.index = index

    @property
    def device(self):
        return '%d:%d' % (self.major, self.minor)

    def mount_opt_list(self):
        return self.mount_opts.split(',') if self.mount_opts else []

    def super_opt_list(self):
        return self.super_opts.split(',') if self.super_opts else []

    def describe(self):
        """Short human text, e.g. 'tmpfs tmpfs (rw,relatime)'."""
        text = '%s %s' % (self.fstype, self.source)
        if self.root != '/':
            text += ' [root %s on %s]' % (self.root, self.device)
        return '%s (%s; %s)' % (text, self.mount_opts, self.super_opts)

    def to_dict(self):
        return {
            'id': self.mount_id,
            'parent_id': self.parent_id,
            'device': self.device,
            'root': self.root,
            'path': self.mountpoint,
            'opts': self.mount_opts,
            'optional_fields': list(self.optional),
            'fstype': self.fstype,
            'src': self.source,
            'super_opts': self.super_opts,
        }

    def __repr__(self):
        return 'MountEntry(%d %s %s)' % (self.mount_id, self.mountpoint, self.fstype)


def parse_line(line, index=0):
    """Parse one mountinfo line into a MountEntry."""
    fields = line.split(' ')
    try:
        sep = fields.index('-', 6)
    except ValueError:
        raise MountInfoError('no "-" separator in mountinfo line: %r' % line)
    if len(fields) < sep + 3:
        raise MountInfoError('too few fields in mountinfo line: %r' % line)
    try:
        major, minor = fields[2].split(':', 1)
        return MountEntry(
            mount_id=int(fields[0]),
            parent_id=int(fields[1]),
            major=int(major),
            minor=int(minor),
            root=unescape(fields[3]),
            mountpoint=unescape(fields[4]),
            mount_opts=fields[5],
            optional=tuple(fields[6:sep]),
            fstype=unescape(fields[sep + 1]),
            source=unescape(fields[sep + 2]),
            super_opts=unescape(' '.join(fields[sep + 3:])) if len(fields) > sep + 3 else '',
            index=index,
        )
    except (ValueError, IndexError):
        raise MountInfoError('malformed mountinfo line: %r' % line)


def parse_mountinfo(text):
    """Parse the whole text of a mountinfo file into a list of MountEntry."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        entries.append(parse_line(line, len(entries)))
    return entries


def read_mountinfo(path=MOUNTINFO_PATH):
    """Read and parse a mountinfo file (one read)."""
    with open(path, 'rb') as f:
        data = f.read()
    return parse_mountinfo(data.decode('utf-8', 'surrogateescape'))


def read_filesystems(path=FILESYSTEMS_PATH):
    """Filesystem types registered in the kernel (the last word of each line),
    or None when the file cannot be read."""
    types = set()
    try:
        with open(path) as f:
            for line in f:
                words = line.split()
                if words:
                    types.add(words[-1])
    except (IOError, OSError):
        return None
    return types


def is_under(path, top):
    """True when path equals top or lies below it (both normalised, absolute)."""
    if top == '/':
        return True
    return path == top or path.startswith(top + '/')


class MountTable:
    """Indexes over a list of MountEntry, built once per module run."""

    def __init__(self, entries):
        self.entries = list(entries)
        self.by_id = {}
        self.by_point = {}
        for e in self.entries:
            self.by_id[e.mount_id] = e
            self.by_point.setdefault(e.mountpoint, []).append(e)
        self._visible = {}
        self._reach = {}

    @classmethod
    def from_text(cls, text):
        return cls(parse_mountinfo(text))

    @classmethod
    def from_file(cls, path=MOUNTINFO_PATH):
        return cls(read_mountinfo(path))

    def mounted_on(self, base, path, exclude=()):
        """Entries mounted at path directly on base: stacked on it when path is
        base's own mount point, else below it. Ids in exclude are left out."""
        return [e for e in self.by_point.get(path, ())
                if e.parent_id == base.mount_id and e is not base and e.mount_id not in exclude]

    def child_at(self, base, path, exclude=()):
        """The mount at path directly on base that a lookup through base finds
        (the latest in mountinfo order), or None."""
        found = self.mounted_on(base, path, exclude)
        return max(found, key=lambda e: e.index) if found else None

    def chain_top(self, entry, exclude=()):
        """The last mount of the chain stacked on entry at its own mount point
        (entry itself when nothing is stacked on it)."""
        top = entry
        while True:
            nxt = self.child_at(top, top.mountpoint, exclude)
            if nxt is None:
                return top
            top = nxt

    def subtree(self, root_ids):
        """Entries whose parent chain (themselves included) holds one of
        root_ids, in mountinfo order."""
        roots = set(root_ids)
        result = []
        for e in self.entries:
            seen = set()
            cur = e
            while cur is not None and cur.mount_id not in seen:
                if cur.mount_id in roots:
                    result.append(e)
                    break
                seen.add(cur.mount_id)
                cur = self.by_id.get(cur.parent_id)
        return result

    def leaves(self, entries):
        """The entries a lookup reaches with no mount of the table on them or
        below them: the ones umount can take now."""
        parents = set(e.parent_id for e in self.entries)
        return [e for e in entries if self.visible(e) and e.mount_id not in parents]

    def reachable(self, entry):
        """True when entry sits in the stack at its mount point that path
        lookups reach (its parent chain is not hidden by another mount)."""
        key = entry.mount_id
        if key in self._reach:
            return self._reach[key]
        self._reach[key] = False  # guards against cycles in broken tables
        parent = self.by_id.get(entry.parent_id)
        if parent is None or parent is entry:
            result = True
        elif parent.mountpoint == entry.mountpoint:
            result = self.reachable(parent)
        else:
            result = self.visible(parent)
        self._reach[key] = result
        return result

    def visible(self, entry):
        """True when entry is what a lookup of its mount point finds: reachable
        and nothing stacked on top of it."""
        key = entry.mount_id
        if key not in self._visible:
            self._visible[key] = self.reachable(entry) and not self.mounted_on(entry, entry.mountpoint)
        return self._visible[key]

    def stack(self, path):
        """Reachable mounts at exactly path, bottom first (the last one is the top)."""
        candidates = [e for e in self.by_point.get(path, ()) if self.reachable(e)]
        if len(candidates) < 2:
            return candidates
        # Order by parent chain: start from the one whose parent is not in the stack.
        ids = set(e.mount_id for e in candidates)
        children = {}
        bottoms = []
        for e in candidates:
            if e.parent_id in ids and e.parent_id != e.mount_id:
                children.setdefault(e.parent_id, []).append(e)
            else:
                bottoms.append(e)
        ordered = []
        todo = sorted(bottoms, key=lambda e: e.index)
        while todo:
            e = todo.pop(0)
            ordered.append(e)
            todo = sorted(children.get(e.mount_id, []), key=lambda c: c.index) + todo
        return ordered

    def top(self, path):
        """The mount a lookup of path finds at that exact point, or None.

        With stacked mounts this is the last of the chain; when the chain is
        ambiguous the entry latest in mountinfo order wins.
        """
        entries = self.by_point.get(path)
        if not entries:
            return None
        if len(entries) == 1:
            e = entries[0]
            return e if self.reachable(e) else None
        visible = [e for e in entries if self.visible(e)]
        if visible:
            return max(visible, key=lambda e: e.index)
        return None

    def under(self, path, include_hidden=True):
        """Mounts at or below path, in mountinfo order."""
        result = []
        for e in self.entries:
            if is_under(e.mountpoint, path):
                if include_hidden or self.reachable(e):
                    result.append(e)
        return result

    def containing(self, path):
        """The visible mount whose tree holds path (longest visible mount point
        that is path or an ancestor of it)."""
        probe = path
        while True:
            e = self.top(probe)
            if e is not None:
                return e
            if probe == '/':
                return None
            probe = os.path.dirname(probe) or '/'

    def lookup_point(self, path):
        """The mount point as the table names it: path itself, else the
        resolved path when that is a mount point (path leads through a symlink)."""
        if path in self.by_point:
            return path
        if os.path.lexists(path):
            real = os.path.realpath(path)
            if real in self.by_point:
                return real
        return path


def unmount_order(entries):
    """Mount points of entries in an order umount can take them: deepest
    first, and at one depth the later mount before the earlier."""
    return [e.mountpoint for e in sorted(entries, key=lambda e: (-e.mountpoint.count('/'), -e.index))]


def bind_identity(table, real_src):
    """(device, root) a bind mount of real_src would show in mountinfo.

    real_src must be canonical (os.path.realpath). The mount holding it is
    found in the table; the source's path relative to that mount point is
    joined to that mount's root field.
    """
    holder = table.containing(real_src)
    if holder is None:
        return None
    rel = os.path.relpath(real_src, holder.mountpoint)
    if rel == '.':
        root = holder.root
    else:
        root = os.path.normpath(os.path.join(holder.root, rel))
    return holder.device, root


def split_opts(opts):
    """Split a comma separated option string, dropping empty words."""
    if not opts:
        return []
    return [o.strip() for o in opts.split(',') if o.strip()]


def vfs_option_mismatches(requested, entry):
    """Requested per-mount VFS flags that the entry does not carry.

    Only flags the kernel prints in the mount options field are checked;
    everything else (fs specific options, mount(8) options) is ignored here.
    """
    have = set(entry.mount_opt_list())
    bad = []
    for opt in requested:
        check = VFS_FLAG_CHECKS.get(opt)
        if check is None:
            continue
        must, must_not = check
        if any(m not in have for m in must) or any(m in have for m in must_not):
            bad.append(opt)
    return bad


def cgroup_controllers(options):
    """Controller names (and name=X) among cgroup v1 options."""
    result = set()
    for opt in options:
        if opt in CGROUP_NON_CONTROLLER_OPTIONS or opt in VFS_FLAG_CHECKS or opt in MOUNT_COMMAND_OPTIONS:
            continue
        if '=' in opt and not opt.startswith('name='):
            continue
        result.add(opt)
    return result
