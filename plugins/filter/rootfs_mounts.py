# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: the ordered mount list of a DPU's offload root."""

from __future__ import annotations

import posixpath

from ansible.errors import AnsibleFilterError

TRANSPORTS = ('qtfs', 'sshfs')


def _under(root, path):
    """Join a path below the root, refusing anything that would leave it."""
    if '..' in str(path).split('/'):
        raise AnsibleFilterError('mount point %r leaves the offload root' % path)
    rel = posixpath.normpath('/' + str(path).lstrip('/'))
    if root == '/':
        return rel
    return posixpath.normpath(root + rel) if rel != '/' else root


def _item(path, src, fstype, opts=''):
    return {'path': path, 'src': src, 'fstype': fstype, 'opts': opts or ''}


def rootfs_mounts(shared, root, transport, local_mounts=None, cgroup_hierarchies=None, cgroup_opts='',
                  overlay_dir='', sshfs_source='', sshfs_opts='', same_paths=False):
    """Return the offload root's mounts in the order they must be made.

    The root (an overlay of the DPU's own root when overlay_dir is set), the
    DPU's own mounts (local_mounts, paths relative to the root), one cgroup v1
    mount per hierarchy under sys/fs/cgroup, then the HOST's shared
    directories through qtfs or sshfs (sshfs_source is user@host).

    same_paths=True with root / plans the shared directories alone, each
    mounted at its own path (the stock engine mode); the root's overlay, local
    mounts and cgroups are refused then.
    """
    if same_paths:
        if posixpath.normpath(str(root or '')) != '/':
            raise AnsibleFilterError('same_paths plans mounts at their own paths: root must be /, got %r' % root)
        if overlay_dir or local_mounts or cgroup_hierarchies:
            raise AnsibleFilterError('same_paths takes no overlay_dir, local_mounts or cgroup_hierarchies')
    elif not root or not str(root).startswith('/') or posixpath.normpath(root) == '/':
        raise AnsibleFilterError('the offload root must be an absolute path other than /, got %r' % root)
    if transport not in TRANSPORTS:
        raise AnsibleFilterError('transport must be one of %s, got %r' % (', '.join(TRANSPORTS), transport))
    if transport == 'sshfs' and not sshfs_source:
        raise AnsibleFilterError('the sshfs transport needs sshfs_source (user@host of the HOST)')
    root = posixpath.normpath(root)
    plan = []
    if overlay_dir:
        plan.append(_item(root, 'dpu-offload-root', 'overlay',
                          'lowerdir=/,upperdir=%s/upper,workdir=%s/work' % (overlay_dir, overlay_dir)))
    for mount in local_mounts or []:
        if 'path' not in mount:
            raise AnsibleFilterError('a local mount needs a path: %r' % (mount,))
        opts = mount.get('opts', '') or ''
        fstype = mount.get('fstype') or ('none' if 'bind' in opts.split(',') else None)
        if not fstype:
            raise AnsibleFilterError('local mount %s needs an fstype or opts: bind' % mount['path'])
        plan.append(_item(_under(root, mount['path']), mount.get('src', fstype), fstype, opts))
    for controllers in cgroup_hierarchies or []:
        opts = ','.join(o for o in (cgroup_opts, controllers) if o)
        plan.append(_item(_under(root, 'sys/fs/cgroup/' + controllers), 'cgroup', 'cgroup', opts))
    for mount in shared or []:
        host_path = mount.get('path', '') if isinstance(mount, dict) else ''
        if not host_path.startswith('/'):
            raise AnsibleFilterError('a shared mount needs an absolute HOST path: %r' % (mount,))
        if transport == 'qtfs':
            plan.append(_item(_under(root, host_path), host_path, 'qtfs', mount.get('opts', '')))
        else:
            opts = ','.join(o for o in (sshfs_opts, mount.get('sshfs_opts', '')) if o)
            plan.append(_item(_under(root, host_path), '%s:%s' % (sshfs_source, host_path), 'fuse.sshfs', opts))
    # A shared mount may stack on a local one (the guide puts the HOST's /sys
    # over the DPU's sysfs); within either group a point appears once.
    first_shared = len(plan) - len(shared or [])
    for group in (plan[:first_shared], plan[first_shared:]):
        paths = [item['path'] for item in group]
        twice = sorted(set(p for p in paths if paths.count(p) > 1))
        if twice:
            raise AnsibleFilterError('mount point(s) listed twice: %s' % ', '.join(twice))
    return plan


class FilterModule:
    """Mount planning for the offload root."""

    def filters(self):
        return {'rootfs_mounts': rootfs_mounts}
