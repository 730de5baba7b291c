# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What dpu.offload.qtfs_mount shows in diff mode: the mounts on the points a
plan touches, before and (predicted, in check mode) after."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


def _listing(path, stack):
    if not stack:
        return ['%s: not mounted' % path]
    return ['%s: %s' % (path, e.describe()) for e in stack]


def _text(lines):
    return '\n'.join(lines) + ('\n' if lines else '')


def describe_points(table, paths):
    """Text listing of what is mounted on each path (stack bottom first)."""
    lines = []
    for path in paths:
        lines += _listing(path, table.stack(path))
    return _text(lines)


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
        else:
            lines += _listing(path, [] if path in removed else table.stack(path))
    return _text(lines)


def affected_points(actions):
    """Mount points the actions change, in order, each once."""
    points = []
    for act in actions:
        if act.action == 'unchanged':
            continue
        for p in [act.spec.path] + list(act.unmount):
            if p not in points:
                points.append(p)
    return points
