# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Deciding the mount changes of dpu.offload.qtfs_mount (the third step).

plan_mounted() and plan_unmounted() take the MountSpecs (mount_spec) and one
MountTable (mountinfo) and decide an Action per item, comparing with
mount_compare. Every check that can fail is made here, before anything is
touched; mount_apply carries the actions out.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import is_under, unmount_order
from ansible_collections.dpu.offload.plugins.module_utils.mount_compare import compare
from ansible_collections.dpu.offload.plugins.module_utils.mount_spec import MountError

# Where mount(8) looks for /sbin/mount.<type> helpers.
MOUNT_HELPER_DIRS = ('/sbin', '/sbin/fs.d', '/sbin/fs', '/usr/sbin')


def find_mount_helper(fstype, dirs=MOUNT_HELPER_DIRS):
    for d in dirs:
        candidate = os.path.join(d, 'mount.' + fstype)
        if os.path.exists(candidate):
            return candidate
    return None


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
                 check_mode=False, realpath=os.path.realpath, mismatch_hint=None):
    """Decide what state=mounted does for each spec, in list order.

    Items at the same path stack in list order (the HOST's /sys over the
    DPU's sysfs); items below a lower layer sit under that layer even when a
    later layer hides them. Returns (actions, warnings); raises MountError
    naming every blocking problem. With mismatch_hint, a point where
    something else is mounted names only what is there, and the hint (the
    caller's fix) ends the message once.
    """
    problems = []
    mismatched = []
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
        sub = table.subtree([e.mount_id for e in entries_root])
        removed.update(e.mount_id for e in sub)
        return list(entries_root), unmount_order(sub)

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

        first = table.child_at(base, path, removed) if base is not None else None
        entry = None
        if first is not None:
            entry = table.chain_top(first, removed) if last else first
        layers = []
        if first is not None:
            layers = [first]
            while layers[-1] is not entry and len(layers) < 64:
                nxt = table.child_at(layers[-1], path, removed)
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
                found = '%s: %s is mounted there (%s), not the requested %s' % (
                    spec.label(), entry.describe(), '; '.join(diffs), spec.describe())
                mismatched.append(found)
                problems.append(found if mismatch_hint else
                                found + '; unmount it or set remount_on_mismatch: true to replace it')
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
                found = ('%s: not mounted, and the place it goes is covered by %s at %s (mounted over %s at %s)'
                         % (spec.label(), cover.describe(), cover.mountpoint, base.describe(), base.mountpoint))
                mismatched.append(found)
                problems.append(found if mismatch_hint else
                                found + '; unmount the covering mount first, or set remount_on_mismatch: true to '
                                'unmount it and mount both again')
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
        raise MountError('; '.join(problems) + ('. %s' % mismatch_hint if mismatched and mismatch_hint else ''))
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
            entry = table.child_at(base, spec.path, set())
        if entry is None and spec.path not in view:
            # not where a clean run would put it: take the bottom reachable layer at the point
            point = table.lookup_point(spec.path)
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
            claimed.update(x.mount_id for x in table.subtree([e.mount_id]) if x.mountpoint == e.mountpoint)
    for spec, entry in reversed(found):
        if recursive:
            point = table.lookup_point(spec.path)
            entries = table.under(point)
            if entry is not None:
                entries = entries + [e for e in table.subtree([entry.mount_id]) if e not in entries]
            if not entries:
                actions.append(Action(spec, 'unchanged', reason='nothing mounted at or below'))
                continue
            act = Action(spec, 'unmount', reason='recursive', existing=table.stack(point),
                         unmount=unmount_order(entries))
            act.recursive = point
            if entry is not None:
                act.unmount_roots = [entry]
            actions.append(act)
            continue
        if entry is None:
            actions.append(Action(spec, 'unchanged', reason='not mounted'))
            continue
        sub = table.subtree([entry.mount_id])
        layers = [e for e in sub if e.mountpoint == entry.mountpoint]
        nested = [e for e in sub if e.mountpoint != entry.mountpoint and e.mount_id not in claimed]
        if nested:
            problems.append('%s: mounts below it would keep it busy: %s; list them too, after it, '
                            'or set recursive: true'
                            % (spec.label(), ', '.join(sorted(set(e.mountpoint for e in nested)))))
            continue
        act = Action(spec, 'unmount', reason='%d layer(s)' % len(layers), existing=layers,
                     unmount=unmount_order([e for e in sub if e.mountpoint == entry.mountpoint]))
        act.unmount_roots = [entry]
        actions.append(act)
    if problems:
        raise MountError('; '.join(problems))
    return actions, []
