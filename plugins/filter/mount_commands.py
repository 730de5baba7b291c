# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: the mount(8) commands that dpu.offload.qtfs_mount runs for a mount list."""

from __future__ import annotations

import shlex

from ansible.errors import AnsibleFilterError

from ansible_collections.dpu.offload.plugins.module_utils.mount_spec import MountError, normalize_specs


def mount_commands(mounts, mount_bin='mount', shell=False):
    """Return the command of each mount, in order, as the module builds it.

    The items are validated and normalised by the module's own code
    (MountSpec), so a script written from them mounts exactly as the module
    does (--no-canonicalize for qtfs, bind mounts without a type). shell=True
    gives each command as one line with every word quoted for sh.
    """
    if not isinstance(mounts, list) or not all(isinstance(m, dict) for m in mounts):
        raise AnsibleFilterError('mount_commands expects a list of mounts (dicts with path, src, fstype, opts), got %r' % (mounts,))
    try:
        specs = normalize_specs(mounts)
    except MountError as e:
        raise AnsibleFilterError('mount_commands: %s' % e)
    commands = [spec.mount_command(mount_bin) for spec in specs]
    if shell:
        return [' '.join(shlex.quote(word) for word in argv) for argv in commands]
    return commands


class FilterModule:
    """mount(8) commands from a mount list."""

    def filters(self):
        return {'mount_commands': mount_commands}
