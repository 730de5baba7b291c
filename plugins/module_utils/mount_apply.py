# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Carrying out the actions mount_plan decided (the last step).

apply_plan() runs mount/umount through a runner callable, rolling back the
mounts made by this call when a later item fails; system_changed() tells
whether the system differs afterwards.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import unmount_order
from ansible_collections.dpu.offload.plugins.module_utils.mount_plan import symlink_problem


class ApplyError(Exception):
    """A command failed while the actions were carried out; failed_index is
    the item's index (None when no single item is to blame)."""

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
        leaves = table.leaves(alive)
        if not leaves:
            raise ApplyError('mounts of %s are hidden by a mount outside it and cannot be unmounted: %s'
                             % (what, ', '.join(e.mountpoint for e in alive)), None)
        for mp in unmount_order(leaves):
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
        chosen = table.subtree(ids) if ids else []
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
