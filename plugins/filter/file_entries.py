# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: dpu.offload.file_set entries that render one template per item."""

from __future__ import annotations

import posixpath

from ansible.errors import AnsibleFilterError


def file_entries(items, directory, template, name='name', mode='0644'):
    """One file_set entry per item: DIRECTORY/<item[name]>, rendered from TEMPLATE with `item` set."""
    if not str(directory).startswith('/'):
        raise AnsibleFilterError('file_entries needs an absolute directory, got %r' % (directory,))
    entries = []
    for item in items or []:
        if not isinstance(item, dict) or not item.get(name):
            raise AnsibleFilterError('file_entries: every item needs %r, got %r' % (name, item))
        file_name = str(item[name])
        if '/' in file_name or file_name in ('.', '..'):
            raise AnsibleFilterError('file_entries: %r is not a file name' % file_name)
        entries.append({'path': posixpath.join(str(directory), file_name), 'template': template,
                        'mode': mode, 'template_vars': {'item': item}})
    return entries


class FilterModule:
    """file_set helpers."""

    def filters(self):
        return {'file_entries': file_entries}
