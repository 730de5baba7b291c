# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: dpu.offload.file_set entries that install a directory of a role's files as it is."""

from __future__ import annotations

import os
import posixpath
import stat

from ansible.errors import AnsibleFilterError

# Left out: what Python writes beside its modules when they run from a checkout.
SKIPPED_DIRS = ('__pycache__',)
SKIPPED_SUFFIXES = ('.pyc', '.pyo')


def tree_entries(tree, files_dir, dest):
    """Entries that make DEST/<path> of every directory and file below FILES_DIR/TREE, parents first, sorted.

    A directory gets mode 0755, a file its content (copy, relative to
    FILES_DIR, the role's files/ directory, so file_set finds it there) and
    mode 0755 when the source has an execute bit, else 0644.  DEST itself is
    not listed: an earlier entry makes it.
    """
    tree, files_dir, dest = str(tree), str(files_dir), str(dest)
    if not dest.startswith('/'):
        raise AnsibleFilterError('tree_entries needs an absolute destination, got %r' % (dest,))
    if tree.startswith('/') or '..' in tree.split('/') or not tree.strip('/.'):
        raise AnsibleFilterError('tree_entries: %r is not a directory below the files directory' % (tree,))
    dest = posixpath.normpath(dest)
    root = os.path.join(files_dir, tree)
    if not os.path.isdir(root):
        raise AnsibleFilterError('tree_entries: %s is not a directory' % (root,))
    entries = []
    files = 0
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(name for name in dirs if name not in SKIPPED_DIRS)
        relative = os.path.relpath(directory, root)
        if relative != '.':
            entries.append({'path': posixpath.join(dest, relative), 'mode': '0755'})
        for name in sorted(names):
            if name.endswith(SKIPPED_SUFFIXES):
                continue
            source = os.path.join(directory, name)
            st = os.lstat(source)
            if not stat.S_ISREG(st.st_mode):
                raise AnsibleFilterError('tree_entries: %s is not a regular file' % (source,))
            path = name if relative == '.' else posixpath.join(relative, name)
            entries.append({'path': posixpath.join(dest, path), 'copy': posixpath.join(tree.strip('/'), path),
                            'mode': '0755' if st.st_mode & 0o111 else '0644'})
            files += 1
    if not files:
        raise AnsibleFilterError('tree_entries: %s holds no files' % (root,))
    return entries


class FilterModule:
    """file_set helpers."""

    def filters(self):
        return {'tree_entries': tree_entries}
