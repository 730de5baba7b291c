# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: the HOST directories of the shared-mount list, as file_set entries."""

from __future__ import annotations

import posixpath
import re

from ansible.errors import AnsibleFilterError

OCTAL = re.compile(r'^[0-7]{3,4}$')
# Where a directory lives on tmpfs on every systemd machine.
VOLATILE = ('/run/',)


def _mode(entry):
    mode = entry.get('mode')
    if isinstance(mode, int) and not isinstance(mode, bool):
        return mode
    if isinstance(mode, str) and OCTAL.match(mode):
        return mode
    raise AnsibleFilterError('shared mount %s needs the mode its directory has on the HOST (an octal string such as "0710"), '
                             'or pseudo: true for a pseudo file system; got mode %r' % (entry.get('path'), mode))


def shared_directories(shared, extra=None):
    """Return {path, mode} for every entry that is a directory on the HOST, then the extra ones.

    The pseudo file systems (pseudo: true, /proc and /sys) are the kernel's:
    nothing is made there. Other keys of an entry (opts, sshfs_opts,
    readonly) are for the mounts and the whitelist and are left out.
    """
    entries = []
    for entry in list(shared or []) + list(extra or []):
        if not isinstance(entry, dict):
            raise AnsibleFilterError('a shared mount must be a mapping, got %r' % (entry,))
        path = entry.get('path')
        if not isinstance(path, str) or not path.startswith('/') or posixpath.normpath(path) != path or path == '/':
            raise AnsibleFilterError('shared mount %r: the path must be absolute, canonical and not /' % (path,))
        if entry.get('pseudo'):
            continue
        entries.append({'path': path, 'mode': _mode(entry)})
    paths = [e['path'] for e in entries]
    twice = sorted(set(p for p in paths if paths.count(p) > 1))
    if twice:
        raise AnsibleFilterError('directory listed twice: %s' % ', '.join(twice))
    return entries


def disk_backed(directories, root):
    """The directories of a {path, mode} list that live on tmpfs (under /run),
    kept at root + path on disk instead: {dirs: file_set entries for the
    backing directories, binds: qtfs_mount entries that put them in place}."""
    root = posixpath.normpath(str(root or ''))
    if not root.startswith('/') or root == '/' or (root + '/').startswith(VOLATILE):
        raise AnsibleFilterError('the directory that keeps shared directories on disk must be an absolute directory '
                                 'on persistent storage (not /, not under %s), got %r' % (', '.join(VOLATILE), root))
    volatile = [entry for entry in directories or [] if entry['path'].startswith(VOLATILE)]
    return {
        'dirs': [{'path': root + entry['path'], 'mode': str(entry['mode'])} for entry in volatile],
        'binds': [{'path': entry['path'], 'src': root + entry['path'], 'opts': 'bind'} for entry in volatile],
    }


class FilterModule:
    """The shared-mount list's directories."""

    def filters(self):
        return {'shared_directories': shared_directories, 'disk_backed': disk_backed}
