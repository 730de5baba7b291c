# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: the command that loads a kernel module as dpu.offload.kmod does, for scripts and units."""

from __future__ import annotations

import shlex

from ansible.errors import AnsibleFilterError

from ansible_collections.dpu.offload.plugins.module_utils.kmod import param_args


def kmod_command(path, params=None, systemd=False):
    """`insmod PATH k=v ...` as one shell-quoted line, with the parameters the module passes (sorted, each
    value as the module writes it); systemd=True also escapes $ and % for a unit's command line."""
    path = str(path or '')
    if not path.startswith('/'):
        raise AnsibleFilterError('kmod_command needs the absolute path of a .ko file, got %r' % (path,))
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise AnsibleFilterError('kmod_command: the parameters must be a mapping, got %r' % (params,))
    for name in params:
        if not isinstance(name, str) or not name or any(c in name for c in '= \t"\''):
            raise AnsibleFilterError('kmod_command: %r is not a parameter name' % (name,))
    line = ' '.join(shlex.quote(word) for word in ['insmod', path] + param_args(params))
    if systemd:
        line = line.replace('%', '%%').replace('$', '$$')
    return line


class FilterModule:
    """Kernel module loading commands."""

    def filters(self):
        return {'kmod_command': kmod_command}
