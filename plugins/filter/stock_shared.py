# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: what one node of a stock-mode pair shares, owns, mounts and relays."""

from __future__ import annotations

import posixpath

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.shared_directories import disk_backed

TRANSPORTS = ('qtfs', 'sshfs')
KEYS = {'path', 'mode', 'fifos', 'sshfs_opts', 'readonly', 'engine', 'bundles', 'submounts'}


def _check(entry):
    if not isinstance(entry, dict):
        raise AnsibleFilterError('a shared directory must be a mapping, got %r' % (entry,))
    unknown = set(entry) - KEYS
    if unknown:
        raise AnsibleFilterError('shared directory %s: unknown keys %s (known: %s)'
                                 % (entry.get('path'), ', '.join(sorted(unknown)), ', '.join(sorted(KEYS))))
    path = entry.get('path', '')
    if not isinstance(path, str) or not path.startswith('/') or posixpath.normpath(path) != path or path == '/':
        raise AnsibleFilterError('shared directory %r: the path must be absolute, canonical and not /' % (path,))
    if not str(entry.get('mode', '')).isdigit():
        raise AnsibleFilterError('shared directory %s needs an octal mode, e.g. "0700"' % path)
    fifos = entry.get('fifos') or ''
    if fifos.startswith('/') or '..' in fifos.split('/'):
        raise AnsibleFilterError('shared directory %s: fifos is a pattern below the directory, got %r' % (path, fifos))
    submounts = entry.get('submounts')
    if submounts is not None and (not isinstance(submounts, str) or posixpath.normpath(submounts) != submounts
                                  or not (path == submounts or path.startswith(submounts.rstrip('/') + '/'))
                                  or submounts == '/'):
        raise AnsibleFilterError('shared directory %s: submounts is the directory itself or an ancestor of it '
                                 '(not /), got %r' % (path, submounts))


def stock_shared(shared, transport, is_host, engines=None, persist_root=''):
    """Return the plan of one node: the directories it creates, mounts and relays.

    With persist_root, the owner keeps each owned directory that lives on a
    tmpfs (/run/...) at persist_root + its path and binds it in place
    (persist_here), so bundles and fifo nodes outlive a reboot of the owner
    while the peer's shims still run.

    Under sshfs every directory is the DPU's and the HOST mounts it: SFTP
    cannot make fifos, and its chown follows symlinks, so image layers must
    never be unpacked through an SFTP mount of a HOST directory. Under qtfs
    the HOST owns them and the DPU mounts them (the guide's direction).
    Entries with an engine (e.g. docker) count only when that engine is in
    engines.
    """
    if transport not in TRANSPORTS:
        raise AnsibleFilterError('transport must be one of %s, got %r' % (', '.join(TRANSPORTS), transport))
    engines = set(engines or [])
    entries = []
    for entry in shared or []:
        _check(entry)
        if entry.get('engine') and entry['engine'] not in engines:
            continue
        readonly = bool(entry.get('readonly'))
        # The mounting side mounts a read-only entry read-only too.
        sshfs_opts = ','.join(o for o in (entry.get('sshfs_opts') or '', 'ro' if readonly else '') if o)
        entries.append(dict(entry, fifos=entry.get('fifos') or '', readonly=readonly, sshfs_opts=sshfs_opts))
    paths = [e['path'] for e in entries]
    if len(set(paths)) != len(paths):
        raise AnsibleFilterError('a shared directory is listed twice: %s' % ', '.join(sorted({p for p in paths if paths.count(p) > 1})))
    bundles = [e['path'] for e in entries if e.get('bundles')]
    if len(bundles) != 1:
        raise AnsibleFilterError('exactly one shared directory must be the bundles (bundles: true), found %d' % len(bundles))
    owner = 'dpu' if transport == 'sshfs' else 'host'
    owns = (owner == 'host') == bool(is_host)
    persisted = disk_backed([e for e in entries if owns], persist_root) if persist_root else {'dirs': [], 'binds': []}
    fifo_globs = [posixpath.join(e['path'], e['fifos']) for e in entries if e['fifos']]
    # Mounts the owner's daemons make below such a directory later (kubelet's
    # tmpfs volumes) reach the peer's view only from a shared mount.
    roots = list(dict.fromkeys(e['submounts'] for e in entries if e.get('submounts')))
    return {
        'owner': owner,
        'dirs': entries,
        'owned_here': entries if owns else [],
        'mounted_here': [] if owns else entries,
        # dpu.offload.file_set entries for the directories this node makes.
        'create_here': [{'path': e['path'], 'mode': str(e['mode'])} for e in entries] if owns else [],
        # Fifo nodes live on the owner's disk, where their inode numbers are
        # real: the relay runs there (sshfs makes them up from the path).
        'fifo_globs': fifo_globs,
        'relay_here': owns and bool(fifo_globs),
        'bundles': bundles[0],
        # The backing directories (file_set entries) and the binds that put them in place, in that order.
        'persist_dirs': persisted['dirs'],
        'persist_here': persisted['binds'],
        # Each submounts directory made a shared mount of its own, before it is shared.
        'shared_roots_here': [{'path': r, 'src': r, 'fstype': 'none', 'opts': 'bind,rshared'} for r in roots] if owns else [],
        # The mounting side made those directories as its mount points' parents: its teardown removes them when empty.
        'parents_here': [] if owns else [{'path': r, 'state': 'absent', 'if_empty': True} for r in roots],
    }


def sftp_binds(dirs, chroot):
    """Bind mounts that put each directory at its own path inside the SFTP endpoint's chroot."""
    chroot = posixpath.normpath(str(chroot or ''))
    if not chroot.startswith('/') or chroot == '/':
        raise AnsibleFilterError('the SFTP chroot must be an absolute directory other than /, got %r' % (chroot,))
    # A read-only entry is read-only in the chroot too: the peer cannot write
    # it even with the transport's key.
    # With submounts, rbind from the shared mount: the copy joins its peer group
    # and the owner's later mounts below appear in the chroot too.
    return [{'path': chroot + e['path'], 'src': e['path'], 'fstype': 'none',
             'opts': ('rbind' if e.get('submounts') else 'bind') + (',ro' if e.get('readonly') else '')} for e in dirs]


class FilterModule:
    """The stock engine mode's sharing plan."""

    def filters(self):
        return {'stock_shared': stock_shared, 'sftp_binds': sftp_binds}
