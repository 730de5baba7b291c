# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: cgroup v1 hierarchies to mount, from the text of /proc/cgroups."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def cgroup_v1_hierarchies(text, exclude=None):
    """Return the controllers to mount, one comma-joined string per hierarchy.

    Controllers that the kernel already keeps in one hierarchy (same non-zero
    hierarchy id) must be mounted together, or mount(2) fails with EBUSY;
    controllers in no hierarchy yet get one each. Disabled ones are skipped.
    """
    if not isinstance(text, str):
        raise AnsibleFilterError('cgroup_v1_hierarchies expects the text of /proc/cgroups, got %s' % type(text).__name__)
    skip = set(exclude or [])
    by_hierarchy = {}
    loose = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith('#'):
            continue
        if len(fields) != 4 or not all(f.isdigit() for f in fields[1:]):
            raise AnsibleFilterError('not a /proc/cgroups line: %r' % line)
        name, hierarchy, enabled = fields[0], int(fields[1]), fields[3] == '1'
        if not enabled or name in skip:
            continue
        if hierarchy:
            by_hierarchy.setdefault(hierarchy, []).append(name)
        else:
            loose.append(name)
    ordered = [','.join(sorted(names)) for _hierarchy, names in sorted(by_hierarchy.items())]
    return ordered + loose


class FilterModule:
    """cgroup helpers for the offload root."""

    def filters(self):
        return {'cgroup_v1_hierarchies': cgroup_v1_hierarchies}
