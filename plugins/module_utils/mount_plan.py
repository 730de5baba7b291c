# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Deciding and carrying out mount changes for dpu.offload.qtfs_mount.

The work is split in three steps, all plain functions or small classes
with no AnsibleModule in sight, so tests drive them directly:

1. normalize_specs(): validate the requested items (shape only).
2. plan_mounted() / plan_unmounted(): compare with one MountTable read from
   mountinfo and decide an action per item; all checks that can fail are
   made here, before anything is touched.
3. apply_plan(): run mount/umount through a runner callable, rolling back
   the mounts made by this call when a later item fails.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import re

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import (
    MountTable,
    bind_identity,
    cgroup_controllers,
    is_under,
    split_opts,
    vfs_option_mismatches,
)

FILESYSTEMS_PATH = '/proc/filesystems'

# Types whose source field is only a label: it is not compared.
PSEUDO_FSTYPES = frozenset([
    'proc', 'sysfs', 'devtmpfs', 'tmpfs', 'cgroup', 'cgroup2', 'devpts',
    'mqueue', 'securityfs', 'debugfs', 'tracefs', 'hugetlbfs', 'pstore',
    'bpf', 'configfs', 'fusectl', 'binfmt_misc', 'ramfs', 'overlay',
])

# fstype values that mean "bind mount" when the options say bind.
BIND_FSTYPES = frozenset(['none', 'bind', ''])

# Where mount(8) looks for /sbin/mount.<type> helpers.
MOUNT_HELPER_DIRS = ('/sbin', '/sbin/fs.d', '/sbin/fs', '/usr/sbin')


class MountError(Exception):
    """A problem found while validating or planning; nothing was changed."""


def normalize_path(path):
    """Normalise an absolute path; collapse duplicate and trailing slashes."""
    path = os.path.normpath(path)
    if path.startswith('//'):
        path = '/' + path.lstrip('/')
    return path


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


def read_filesystems(path=FILESYSTEMS_PATH):
    """Filesystem types registered in the kernel, from /proc/filesystems."""
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


def find_mount_helper(fstype, dirs=MOUNT_HELPER_DIRS):
    for d in dirs:
        candidate = os.path.join(d, 'mount.' + fstype)
        if os.path.exists(candidate):
            return candidate
    return None


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


def _existing_ancestor(path):
    probe = path
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return probe


def symlink_problem(path):
    """Message when path (or a parent of it) is a symlink, else None.

    mount(8) follows symlinks in the target; a symlink inside a chroot tree
    such as /another_rootfs/var/run -> /run would land the mount on the
    machine's own /run.
    """
    anchor = _existing_ancestor(path)
    real = os.path.realpath(anchor)
    if real != anchor:
        return ('mount point %s resolves through a symlink (%s -> %s); mount would follow it. '
                'Give the resolved path, or replace the symlink with a directory'
                % (path, anchor, real))
    return None


class Action:
    """The decision for one item."""

    def __init__(self, spec, action, reason='', existing=None, make=None, unmount=None):
        self.spec = spec
        self.action = action          # mount | remount | unchanged | unmount
        self.reason = reason
        self.existing = existing or []  # MountEntry list this item finds (bottom first)
        self.make = make              # None | 'dir' | 'file': mount point to create
        self.unmount = unmount or []  # mount points predicted to be unmounted, in order
        self.unmount_roots = []       # MountEntry list whose whole subtrees go first
        self.recursive = None         # path whose whole subtree is unmounted (state=unmounted)
        self.deferred = False         # checks postponed: the parent is mounted by this call
        self.touched = False          # some command of this action succeeded
        self.outcome = None
        self.detail = None

    @property
    def changes(self):
        return self.action != 'unchanged'

    def result(self, check_mode=False):
        res = self.spec.to_result()
        outcome = self.outcome
        if outcome is None:
            if self.action == 'unchanged':
                outcome = 'unchanged'
            elif check_mode:
                outcome = 'would_' + self.action
            else:
                outcome = 'skipped'
        res['action'] = outcome
        res['previous'] = [e.describe() for e in self.existing]
        res['unmounted'] = list(self.unmount)
        res['reason'] = self.reason
        if self.detail:
            res['detail'] = self.detail
        return res


def _subtree(table, root_ids):
    """Entries whose parent chain (including themselves) holds one of root_ids."""
    roots = set(root_ids)
    result = []
    for e in table.entries:
        seen = set()
        cur = e
        while cur is not None and cur.mount_id not in seen:
            if cur.mount_id in roots:
                result.append(e)
                break
            seen.add(cur.mount_id)
            cur = table.by_id.get(cur.parent_id)
    return result


def _leaves_first(entries):
    return [e.mountpoint for e in sorted(entries, key=lambda e: (-e.mountpoint.count('/'), -e.index))]


def _stacked_child(table, base, path, removed):
    """The entry mounted at path directly on base (stacked on it, or below it)."""
    found = [e for e in table.by_point.get(path, ())
             if e.parent_id == base.mount_id and e is not base and e.mount_id not in removed]
    return max(found, key=lambda e: e.index) if found else None


def _chain_top(table, entry, removed):
    """Follow mounts stacked on entry at its own mount point up to the top."""
    top = entry
    while True:
        nxt = _stacked_child(table, top, top.mountpoint, removed)
        if nxt is None:
            return top
        top = nxt


def _match(specs, table, removed_ids=None):
    """Walk the items in list order the way a clean run would mount them and
    find, for each, the base mount it goes on.

    Yields (spec, base, last) where base is a MountEntry, the string 'pending'
    (the base is mounted by this call) or None (no mount holds the path), and
    last is True for the last item at its mount point. The caller records what
    it decided in view[path] (a MountEntry or 'pending').
    """
    last_index = {}
    for spec in specs:
        last_index[spec.path] = spec.index
    view = {}
    for spec in specs:
        path = spec.path
        if path in view:
            base = view[path]
        else:
            anc = [p for p in view if is_under(path, p) and p != path]
            if anc:
                base = view[max(anc, key=len)]
            else:
                base = table.containing(os.path.dirname(path))
        yield spec, base, last_index[path] == spec.index, view


def plan_mounted(specs, table, filesystems=None, create_path=True, remount_on_mismatch=False,
                 check_mode=False, realpath=os.path.realpath):
    """Decide what state=mounted does for each spec, in list order.

    Items at the same path stack in list order (the HOST's /sys over the
    DPU's sysfs); items below a lower layer sit under that layer even when a
    later layer hides them. Returns (actions, warnings); raises MountError
    naming every blocking problem.
    """
    problems = []
    warnings = []
    actions = []
    removed = set()  # ids unmounted by planned actions

    fs_cache = {}

    def registered():
        if 'types' not in fs_cache:
            fs_cache['types'] = filesystems() if callable(filesystems) else filesystems
        return fs_cache['types']

    def not_mountable(spec):
        """Problem text when spec cannot be mounted (checked only when a mount is needed)."""
        kind = spec.kind
        if kind not in ('qtfs', 'fuse'):
            return None
        types = registered()
        base = 'fuse' if kind == 'fuse' else spec.fstype
        msg = None
        if types is not None and base not in types:
            if kind == 'qtfs':
                msg = ('%s: filesystem type qtfs is not registered in /proc/filesystems; '
                       'qtfs.ko must be loaded first (for example with dpu.offload.kmod)'
                       % spec.label())
            else:
                msg = ('%s: filesystem type fuse is not registered in /proc/filesystems'
                       % spec.label())
        elif kind == 'fuse' and find_mount_helper(spec.fstype) is None:
            msg = ('%s: no mount helper /sbin/mount.%s; install the package that provides it '
                   '(sshfs for fuse.sshfs)' % (spec.label(), spec.fstype))
        if msg and check_mode:
            warnings.append(msg + ' (check mode: assuming an earlier task provides it)')
            return None
        return msg

    def bind_source_problem(spec, entry_exists):
        if not spec.is_bind or os.path.exists(spec.src):
            return None
        msg = '%s: bind source %s does not exist' % (spec.label(), spec.src)
        if check_mode and not entry_exists:
            warnings.append(msg + ' (check mode: assuming an earlier task creates it)')
            return None
        return msg

    def removal(entries_root):
        sub = _subtree(table, [e.mount_id for e in entries_root])
        removed.update(e.mount_id for e in sub)
        return list(entries_root), _leaves_first(sub)

    # A later item may hide earlier ones only by stacking on a listed layer
    # (the HOST's /sys over the DPU's sysfs and what was mounted below it).
    for i, earlier in enumerate(specs):
        for later in specs[i + 1:]:
            if is_under(earlier.path, later.path) and earlier.path != later.path \
                    and not any(s.path == later.path for s in specs[:i]):
                problems.append('%s would hide %s listed before it; list parent mount points '
                                'before the mounts below them' % (later.label(), earlier.label()))
    if problems:
        raise MountError('; '.join(problems))

    for spec, base, last, view in _match(specs, table):
        path = spec.path
        if base == 'pending':
            act = Action(spec, 'mount', reason='the mount below it is made by this call', make='dir')
            act.deferred = True
            src_pending = spec.is_bind and any(
                v == 'pending' and is_under(spec.src, p) for p, v in view.items())
            if spec.is_bind and not src_pending:
                problem = bind_source_problem(spec, False)
                if problem:
                    problems.append(problem)
                    continue
                if os.path.exists(spec.src):
                    act.make = 'dir' if os.path.isdir(spec.src) else 'file'
            if not create_path:
                act.make = None
            problem = not_mountable(spec)
            if problem:
                problems.append(problem)
                continue
            actions.append(act)
            view[path] = 'pending'
            continue

        first = _stacked_child(table, base, path, removed) if base is not None else None
        entry = None
        if first is not None:
            entry = _chain_top(table, first, removed) if last else first
        layers = []
        if first is not None:
            layers = [first]
            while layers[-1] is not entry and len(layers) < 64:
                nxt = _stacked_child(table, layers[-1], path, removed)
                if nxt is None:
                    break
                layers.append(nxt)

        if entry is not None:
            problem = bind_source_problem(spec, True)
            if problem:
                problems.append(problem)
                continue
            diffs = compare(spec, entry, table, realpath=realpath)
            if not diffs:
                actions.append(Action(spec, 'unchanged', existing=layers))
                view[path] = entry
                continue
            if not remount_on_mismatch:
                problems.append('%s: %s is mounted there (%s), not the requested %s; unmount it '
                                'or set remount_on_mismatch: true to replace it'
                                % (spec.label(), entry.describe(), '; '.join(diffs), spec.describe()))
                continue
            problem = not_mountable(spec)
            if problem:
                problems.append(problem)
                continue
            roots, order = removal([first])
            act = Action(spec, 'remount', reason='; '.join(diffs), existing=layers, unmount=order)
            act.unmount_roots = roots
            actions.append(act)
            view[path] = 'pending'
            continue

        # Nothing of ours there. Would a mount at path land on base?
        visible = table.containing(os.path.dirname(path))
        cover = None
        stacking = path in view  # an earlier item mounted at this very point
        if not stacking and base is not None and visible is not None \
                and visible.mount_id != base.mount_id and visible.mount_id not in removed:
            cover = visible
            # the layer that hides base: walk up from visible to base's level
            probe = visible
            while probe is not None and probe.parent_id != base.mount_id:
                probe = table.by_id.get(probe.parent_id)
            if probe is not None:
                cover = probe
        unmount_roots = []
        order = []
        if cover is not None:
            if not remount_on_mismatch:
                problems.append('%s: not mounted, and the place it goes is covered by %s at %s '
                                '(mounted over %s at %s); unmount the covering mount first, or set '
                                'remount_on_mismatch: true to unmount it and mount both again'
                                % (spec.label(), cover.describe(), cover.mountpoint,
                                   base.describe(), base.mountpoint))
                continue
            unmount_roots, order = removal([cover])
        else:
            problem = symlink_problem(path)
            if problem:
                problems.append('%s: %s' % (spec.label(), problem))
                continue
        make = None
        problem = bind_source_problem(spec, False)
        if problem:
            problems.append(problem)
            continue
        if cover is None and not os.path.lexists(path):
            if not create_path:
                problems.append('%s: mount point does not exist and create_path is false' % spec.label())
                continue
            make = 'dir'
            if spec.is_bind and os.path.exists(spec.src) and not os.path.isdir(spec.src):
                make = 'file'
        elif cover is None and spec.is_bind and os.path.exists(spec.src):
            if os.path.isdir(spec.src) != os.path.isdir(path):
                problems.append('%s: bind source %s is a %s but the mount point is a %s'
                                % (spec.label(), spec.src,
                                   'directory' if os.path.isdir(spec.src) else 'file',
                                   'directory' if os.path.isdir(path) else 'file'))
                continue
        elif cover is not None:
            make = 'dir'
        problem = not_mountable(spec)
        if problem:
            problems.append(problem)
            continue
        if cover is None:
            hidden = [e.mountpoint for e in table.under(path, include_hidden=False)
                      if e.mountpoint != path and table.visible(e) and e.mount_id not in removed]
            if hidden:
                warnings.append('%s: mounting hides mounts already below it: %s'
                                % (spec.label(), ', '.join(sorted(set(hidden)))))
        act = Action(spec, 'mount', reason='not mounted' if cover is None else
                     'not mounted; unmounting %s which covers its place' % cover.mountpoint,
                     make=make, unmount=order)
        act.unmount_roots = unmount_roots
        act.deferred = cover is not None
        actions.append(act)
        view[path] = 'pending'

    if problems:
        raise MountError('; '.join(problems))
    return actions, warnings


def plan_unmounted(specs, table, recursive=False):
    """Decide what state=unmounted does, processing items in reverse order.

    Each item's mount is found as plan_mounted would (so layers stacked in the
    list are told apart); the item's mount goes with every layer stacked on it.
    Returns (actions, warnings); raises MountError when a mount has mounts
    below it that nothing in the request unmounts first (unless recursive).
    """
    found = []
    for spec, base, last, view in _match(specs, table):
        entry = None
        if base not in (None, 'pending'):
            entry = _stacked_child(table, base, spec.path, set())
        if entry is None and spec.path not in view:
            # not where a clean run would put it: take the bottom reachable layer at the point
            point = _lookup_point(table, spec.path)
            stack = table.stack(point)
            entry = stack[0] if stack else None
        view[spec.path] = entry if entry is not None else 'pending'
        found.append((spec, entry))

    problems = []
    actions = []
    claimed = set()
    for dummy, e in found:
        if e is not None:
            # the item's mount and every layer stacked on it at the same point
            claimed.update(x.mount_id for x in _subtree(table, [e.mount_id]) if x.mountpoint == e.mountpoint)
    for spec, entry in reversed(found):
        if recursive:
            point = _lookup_point(table, spec.path)
            entries = table.under(point)
            if entry is not None:
                entries = entries + [e for e in _subtree(table, [entry.mount_id]) if e not in entries]
            if not entries:
                actions.append(Action(spec, 'unchanged', reason='nothing mounted at or below'))
                continue
            act = Action(spec, 'unmount', reason='recursive', existing=table.stack(point),
                         unmount=_leaves_first(entries))
            act.recursive = point
            if entry is not None:
                act.unmount_roots = [entry]
            actions.append(act)
            continue
        if entry is None:
            actions.append(Action(spec, 'unchanged', reason='not mounted'))
            continue
        sub = _subtree(table, [entry.mount_id])
        layers = [e for e in sub if e.mountpoint == entry.mountpoint]
        nested = [e for e in sub if e.mountpoint != entry.mountpoint and e.mount_id not in claimed]
        if nested:
            problems.append('%s: mounts below it would keep it busy: %s; list them too, after it, '
                            'or set recursive: true'
                            % (spec.label(), ', '.join(sorted(set(e.mountpoint for e in nested)))))
            continue
        act = Action(spec, 'unmount', reason='%d layer(s)' % len(layers), existing=layers,
                     unmount=_leaves_first([e for e in sub if e.mountpoint == entry.mountpoint]))
        act.unmount_roots = [entry]
        actions.append(act)
    if problems:
        raise MountError('; '.join(problems))
    return actions, []


def _lookup_point(table, path):
    """Mount point string as the table knows it (resolving symlinks if needed)."""
    if path in table.by_point:
        return path
    if os.path.lexists(path):
        real = os.path.realpath(path)
        if real in table.by_point:
            return real
    return path


class ApplyError(Exception):
    def __init__(self, msg, failed_index):
        super(ApplyError, self).__init__(msg)
        self.msg = msg
        self.failed_index = failed_index


def _make_mount_point(path, make, mode=0o755):
    if make is None or os.path.lexists(path):
        return
    if make == 'file':
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent, mode)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
    else:
        try:
            os.makedirs(path, mode)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise


def _command_error(args, rc, out, err):
    text = (err or '').strip() or (out or '').strip() or 'no output'
    return '%s failed (rc=%d): %s' % (' '.join(args), rc, text)


def _unmount_rounds(select, run, read_table, umount_bin, limit, done, what, explain_busy=None):
    """Unmount the entries select(table) returns, leaves first, re-reading the
    table after each round so layers revealed by an unmount are seen too.
    Unmounted points are appended to done."""
    for dummy in range(limit):
        table = read_table()
        alive = select(table)
        if not alive:
            return
        parents = set(e.parent_id for e in table.entries)
        leaves = [e for e in alive if table.visible(e) and e.mount_id not in parents]
        if not leaves:
            raise ApplyError('mounts of %s are hidden by a mount outside it and cannot be unmounted: %s'
                             % (what, ', '.join(e.mountpoint for e in alive)), None)
        for mp in _leaves_first(leaves):
            args = [umount_bin, mp]
            rc, out, err = run(args)
            if rc != 0:
                hint = explain_busy(mp) if explain_busy and 'busy' in (err or '') + (out or '') else ''
                raise ApplyError(_command_error(args, rc, out, err) + hint + (
                    '; already unmounted: %s' % ', '.join(done) if done else ''), None)
            done.append(mp)
    raise ApplyError('mounts of %s remain after %d rounds of unmounting' % (what, limit), None)


def _identity(entry):
    return (entry.mount_id, entry.mountpoint, entry.major, entry.minor, entry.root)


def _selector(roots, point):
    """select(table) for _unmount_rounds: the subtrees of the root entries,
    and everything at or below point when given.

    Roots are recognised by id, mount point, device and root together: the
    kernel reuses the id of an unmounted mount for the next mount anywhere.
    """
    wanted = set(_identity(e) for e in roots)

    def select(table):
        ids = [e.mount_id for e in table.entries if _identity(e) in wanted]
        chosen = _subtree(table, ids) if ids else []
        if point is not None:
            chosen += [e for e in table.under(point) if e not in chosen]
        return chosen
    return select


def apply_plan(actions, run, mount_bin='mount', umount_bin='umount', create_mode=0o755,
               rollback=True, read_table=None, explain_busy=None):
    """Carry out the planned actions in order.

    run(args) -> (rc, stdout, stderr); read_table() -> MountTable (needed when
    something is unmounted); explain_busy(point) -> text added to the error of
    an unmount that fails as busy. Every action gets an outcome. On a failure the
    mounts this call made are unmounted again in reverse order and ApplyError
    is raised.
    """
    mounted_here = []  # actions whose mount is in place thanks to this call
    for act in actions:
        if act.action == 'unchanged':
            act.outcome = 'unchanged'
            continue
        try:
            if act.unmount_roots or act.recursive is not None:
                if read_table is None:
                    raise ApplyError('internal error: unmounting needs read_table', act.spec.index)
                done = []
                try:
                    _unmount_rounds(_selector(act.unmount_roots, act.recursive), run, read_table, umount_bin,
                                    limit=len(act.unmount) + 3, done=done,
                                    what=act.recursive or act.spec.path, explain_busy=explain_busy)
                except ApplyError as e:
                    raise ApplyError(e.msg, act.spec.index)
                finally:
                    act.unmount = done
                    act.touched = act.touched or bool(done)
            if act.action in ('mount', 'remount'):
                spec = act.spec
                if act.deferred:
                    problem = symlink_problem(spec.path)
                    if problem:
                        raise ApplyError(problem, spec.index)
                    if spec.is_bind and not os.path.exists(spec.src):
                        raise ApplyError('bind source %s does not exist' % spec.src, spec.index)
                    if act.make and spec.is_bind and not os.path.isdir(spec.src):
                        act.make = 'file'
                if act.make is None and not os.path.lexists(spec.path):
                    raise ApplyError('mount point %s does not exist and create_path is false'
                                     % spec.path, spec.index)
                try:
                    _make_mount_point(spec.path, act.make, create_mode)
                except (IOError, OSError) as e:
                    raise ApplyError('cannot create mount point %s: %s' % (spec.path, e), spec.index)
                args = spec.mount_command(mount_bin)
                rc, out, err = run(args)
                if rc != 0:
                    raise ApplyError(_command_error(args, rc, out, err), spec.index)
                act.touched = True
                mounted_here.append(act)
            act.outcome = {'mount': 'mounted', 'remount': 'remounted', 'unmount': 'unmounted'}[act.action]
        except ApplyError as e:
            act.outcome = 'failed'
            act.detail = e.msg
            notes = []
            if rollback:
                for done_act in reversed(mounted_here):
                    args = [umount_bin, done_act.spec.path]
                    rc, out, err = run(args)
                    if rc == 0:
                        done_act.outcome = 'rolled_back'
                        if done_act.unmount:
                            done_act.detail = ('new mount removed; what it replaced (%s) was not restored'
                                               % ', '.join(done_act.unmount))
                    else:
                        done_act.detail = 'rollback failed: ' + _command_error(args, rc, out, err)
                        notes.append(done_act.spec.path)
            msg = '%s: %s' % (act.spec.label(), e.msg)
            if mounted_here and rollback:
                msg += '; rolled back the mounts made by this call: %s' % ', '.join(
                    d.spec.path for d in reversed(mounted_here) if d.outcome == 'rolled_back')
                if notes:
                    msg += '; could NOT roll back: %s' % ', '.join(notes)
            finished = [d.spec.path for d in actions if d.outcome == 'unmounted']
            if finished:
                msg += '; already unmounted by this call: %s' % ', '.join(finished)
            raise ApplyError(msg, e.failed_index)
    return actions


def describe_points(table, paths):
    """Text listing of what is mounted on each path (stack bottom first)."""
    lines = []
    for path in paths:
        stack = table.stack(path)
        if not stack:
            lines.append('%s: not mounted' % path)
        for e in stack:
            lines.append('%s: %s' % (path, e.describe()))
    return '\n'.join(lines) + ('\n' if lines else '')


def predict_points(table, actions, paths):
    """Text listing as describe_points would give after the actions (check mode)."""
    planned = {}
    removed = set()
    for act in actions:
        if act.action in ('unmount', 'remount'):
            removed.update(act.unmount)
        if act.action in ('mount', 'remount'):
            planned[act.spec.path] = act.spec
    lines = []
    for path in paths:
        if path in planned:
            lines.append('%s: %s' % (path, planned[path].describe()))
            continue
        stack = [] if path in removed else table.stack(path)
        if not stack:
            lines.append('%s: not mounted' % path)
        for e in stack:
            lines.append('%s: %s' % (path, e.describe()))
    return '\n'.join(lines) + ('\n' if lines else '')


def affected_points(actions):
    points = []
    for act in actions:
        if act.action == 'unchanged':
            continue
        for p in [act.spec.path] + list(act.unmount):
            if p not in points:
                points.append(p)
    return points


def load_table(path=None):
    return MountTable.from_file(path) if path else MountTable.from_file()


def system_changed(actions):
    """True when the system differs from before apply_plan (exact, after rollbacks)."""
    for act in actions:
        if act.outcome == 'rolled_back':
            if act.unmount:
                return True
            continue
        if act.touched:
            return True
    return False
