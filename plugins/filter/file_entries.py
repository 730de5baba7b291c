# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: dpu.offload.file_set entries that render one template per item."""

from __future__ import annotations

import posixpath

from ansible.errors import AnsibleFilterError


def _path(directory, file_name):
    """DIRECTORY/NAME for a file name; an absolute path goes below DIRECTORY as below a root."""
    if file_name.startswith('/'):
        if posixpath.normpath(file_name) != file_name or '..' in file_name.split('/') or file_name == '/':
            raise AnsibleFilterError('file_entries: %r is not a canonical absolute path' % file_name)
        return file_name if directory == '/' else directory + file_name
    if '/' in file_name or file_name in ('.', '..'):
        raise AnsibleFilterError('file_entries: %r is not a file name' % file_name)
    return posixpath.join(directory, file_name)


def file_entries(items, directory, template, name='name', mode='0644', var='item', parents=False, file_name=None):
    """One file_set entry per item: DIRECTORY/<item[name]>, rendered from TEMPLATE with `var` set to the item.

    item[name] is a file name, or an absolute path placed below DIRECTORY
    as below a root (a wrapper's /usr/sbin/modprobe in an offload root).
    With file_name, item[name] names a directory and the file is
    DIRECTORY/<item[name]>/FILE_NAME (containerd's certs.d/HOST/hosts.toml).
    """
    if file_name is not None and (not file_name or '/' in str(file_name) or file_name in ('.', '..')):
        raise AnsibleFilterError('file_entries: file_name %r is not a file name' % (file_name,))
    directory = str(directory)
    if not directory.startswith('/'):
        raise AnsibleFilterError('file_entries needs an absolute directory, got %r' % (directory,))
    directory = posixpath.normpath(directory)
    entries = []
    for item in items or []:
        if not isinstance(item, dict) or not item.get(name):
            raise AnsibleFilterError('file_entries: every item needs %r, got %r' % (name, item))
        path = _path(directory, str(item[name]))
        if file_name is not None:
            path = posixpath.join(path, str(file_name))
        entry = {'path': path, 'template': template, 'mode': mode, 'template_vars': {var: item}}
        if parents:
            entry['parents'] = True
        entries.append(entry)
    return entries


class FilterModule:
    """file_set helpers."""

    def filters(self):
        return {'file_entries': file_entries}
