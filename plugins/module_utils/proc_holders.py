# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Which processes keep a mount busy.

umount(8) only says "target is busy". What holds a mount is a process whose
working directory, root, executable or an open file lies below it; this
reads those links under /proc (a directory tests replace with a tree of
their own) and names the processes, so that an error can say what to stop.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

PROC = '/proc'
_LINKS = ('cwd', 'root', 'exe')


def _below(target, point):
    target = target[:-len(' (deleted)')] if target.endswith(' (deleted)') else target
    return target == point or target.startswith(point.rstrip('/') + '/')


def _links(proc_dir):
    for name in _LINKS:
        yield os.path.join(proc_dir, name)
    fd_dir = os.path.join(proc_dir, 'fd')
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return
    for name in names:
        yield os.path.join(fd_dir, name)


def _comm(proc_dir):
    try:
        with open(os.path.join(proc_dir, 'comm')) as f:
            return f.read().strip()
    except (IOError, OSError):
        return '?'


def holders(point, proc=PROC, limit=10):
    """[(pid, comm)] of the processes that use something at or below point,
    lowest pid first, at most limit of them. Processes that vanish or that
    cannot be read are skipped."""
    found = []
    try:
        pids = sorted(int(n) for n in os.listdir(proc) if n.isdigit())
    except OSError:
        return found
    for pid in pids:
        proc_dir = os.path.join(proc, str(pid))
        for link in _links(proc_dir):
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if _below(target, point):
                found.append((pid, _comm(proc_dir)))
                break
        if len(found) >= limit:
            break
    return found


def describe_holders(point, proc=PROC):
    """' (in use by pid 12 (sleep), ...)' for an error message, or '' when no holder is seen."""
    found = holders(point, proc=proc)
    if not found:
        return ''
    return ' (in use by %s; stop them first)' % ', '.join('pid %d (%s)' % item for item in found)
