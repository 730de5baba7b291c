#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: qtfs_mount
short_description: Manage the live mounts of a DPU offload rootfs (qtfs, pseudo filesystems, binds, sshfs)
version_added: 0.1.0
description:
  - Mounts or unmounts one mount point, or an ordered set of them in one call, reading
    C(/proc/self/mountinfo) once.
  - Handles qtfs mounts (C(mount -t qtfs <HOST path> <dir>), with O(opts=proc) for the proc mount),
    the pseudo filesystems a chroot rootfs needs (proc, sysfs, devtmpfs, tmpfs, cgroup v1),
    bind mounts, and FUSE mounts such as sshfs (O(fstype=fuse.sshfs), O(src=user@host:/path)).
  - Only changes the running system; it never writes C(/etc/fstab).
  - "Idempotence rules: a bind mount matches when the mount at O(path) has the device and root
    of the source (found through mountinfo, not the source column). proc, sysfs, devtmpfs and
    tmpfs compare the filesystem type; cgroup also compares the controllers given in O(opts);
    qtfs and FUSE mounts compare type and source. Per-mount flags the kernel reports
    (ro, rw, nosuid, nodev, noexec, relatime, noatime, nodiratime, nosymfollow and the
    negations suid, dev, exec) are compared when requested. Filesystem specific options the
    kernel does not echo (for example sshfs C(IdentityFile=), C(reconnect), tmpfs C(size=)) are
    passed to mount but never compared."
  - qtfs does not report its C(proc) flag in mountinfo, so a qtfs mount with the right source is
    accepted whether or not it was made with C(proc); if the kernel reports C(proc) and it was not
    requested, that is a mismatch.
  - All items are validated and compared before anything is touched. When an item fails while
    changes are being made, the mounts made by this call are unmounted again in reverse order
    and the error names the failing item.
author:
  - dpu.offload maintainers (@dpu-offload)
options:
  path:
    description:
      - Absolute path of the mount point for a single mount.
      - Mutually exclusive with O(mounts).
    type: path
  src:
    description:
      - What to mount at O(path).
      - For qtfs, the absolute path on the HOST. For a bind mount, the local file or directory.
        For sshfs, C(user@host:/path). For proc, sysfs, devtmpfs, tmpfs and cgroup it is a
        label and defaults to the type name.
      - Not needed with O(state=unmounted).
    type: str
  fstype:
    description:
      - Filesystem type, for example V(qtfs), V(proc), V(sysfs), V(devtmpfs), V(tmpfs), V(cgroup),
        V(fuse.sshfs) (V(sshfs) is accepted as an alias).
      - When not set, V(qtfs), or V(none) when O(opts) contain V(bind) or V(rbind).
    type: str
  opts:
    description:
      - Mount options, a comma separated string as for C(mount -o).
      - V(bind) or V(rbind) makes a bind mount. V(proc) is the qtfs proc flag. For cgroup, the
        controllers, for example V(rw,nosuid,nodev,noexec,relatime,cpu,cpuacct).
    type: str
  mounts:
    description:
      - An ordered list of mounts handled in one call, instead of O(path).
      - With O(state=mounted) they are processed in list order (list parents before the mounts
        below them); with O(state=unmounted) in reverse order.
      - Each mount point may appear once.
    type: list
    elements: dict
    suboptions:
      path:
        description: Absolute path of the mount point.
        type: path
        required: true
      src:
        description: As the top-level O(src).
        type: str
      fstype:
        description: As the top-level O(fstype).
        type: str
      opts:
        description: As the top-level O(opts).
        type: str
  state:
    description:
      - V(mounted) mounts what is missing, leaves matching mounts alone, and fails on a
        mismatching mount unless O(remount_on_mismatch=true).
      - V(unmounted) unmounts every layer stacked on each listed point; nothing happens for
        points that are not mounted.
    type: str
    choices: [mounted, unmounted]
    default: mounted
  recursive:
    description:
      - With O(state=unmounted), also unmount every mount below each listed point, deepest
        first. Useful to tear down after a half-finished deployment.
      - Without it, a listed point with other mounts below it (that are not themselves listed
        after it) is an error, reported before anything is unmounted.
    type: bool
    default: false
  create_path:
    description:
      - Create a missing mount point (directories with mode 0755, like C(mkdir -p)).
      - For a bind mount of a file, an empty file is created as the mount point.
    type: bool
    default: true
  remount_on_mismatch:
    description:
      - When something other than the requested mount sits at a point, unmount it (and any
        mounts below it) and mount the requested one.
      - When false, such a point is an error naming what is mounted there.
    type: bool
    default: false
  mismatch_hint:
    description:
      - With O(state=mounted) and O(remount_on_mismatch=false), what the error for a point where something else
        is mounted tells the user to do, instead of unmounting it by hand or setting O(remount_on_mismatch). Said
        once, at the end of the message.
      - For a role whose mounts change only through its own teardown and deploy (an address changed since).
    type: str
attributes:
  check_mode:
    support: full
    description: Predicts every action (V(would_mount), V(would_unmount), V(would_remount)) without touching anything.
  diff_mode:
    support: full
    description: Shows what is mounted on the affected points before and after.
  platform:
    platforms: [linux]
    support: full
    description: Reads C(/proc/self/mountinfo) and runs C(mount)/C(umount) from util-linux.
notes:
  - The mount namespace is the one the module runs in.
  - A mount point that resolves through a symlink (for example C(/another_rootfs/var/run -> /run))
    is refused, because mount would follow the link out of the tree.
  - Mount points created by the module are left in place on rollback and on unmount.
seealso:
  - module: dpu.offload.kmod
  - module: dpu.offload.offload_facts
'''

EXAMPLES = r'''
- name: Mount the HOST's /proc on the offload rootfs through qtfs
  dpu.offload.qtfs_mount:
    path: /another_rootfs/proc
    src: /proc
    fstype: qtfs
    opts: proc

- name: Converge the offload rootfs in one call
  dpu.offload.qtfs_mount:
    mounts:
      - {path: /another_rootfs/local_proc, fstype: proc}
      - {path: /another_rootfs/etc, src: /etc, opts: bind}
      - {path: /another_rootfs/dev, fstype: devtmpfs}
      - {path: "/another_rootfs/sys/fs/cgroup/cpu,cpuacct", fstype: cgroup, opts: "rw,nosuid,nodev,noexec,relatime,cpu,cpuacct"}
      - {path: /another_rootfs/var/lib/docker/containers, src: /var/lib/docker/containers}

- name: Lab transport - the HOST's /var/lib/docker/containers over sshfs
  dpu.offload.qtfs_mount:
    path: /another_rootfs/var/lib/docker/containers
    src: root@host:/var/lib/docker/containers
    fstype: fuse.sshfs
    opts: IdentityFile=/root/.ssh/lab_key,reconnect,allow_other

- name: Tear down everything under the offload root
  dpu.offload.qtfs_mount:
    path: /another_rootfs
    state: unmounted
    recursive: true
'''

RETURN = r'''
mounts:
  description: One entry per requested mount, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The mount point (normalised).
      type: str
      sample: /another_rootfs/proc
    src:
      description: The source as it is passed to mount.
      type: str
      sample: /proc
    fstype:
      description: The filesystem type (V(none) for bind mounts).
      type: str
      sample: qtfs
    opts:
      description: The requested options.
      type: str
      sample: proc
    action:
      description:
        - What happened. V(mounted), V(remounted), V(unmounted), V(unchanged); in check mode
          V(would_mount), V(would_remount), V(would_unmount).
        - After a failure also V(failed) (the item that failed), V(rolled_back) (mounted by this
          call, then unmounted again) and V(skipped) (not reached).
      type: str
      sample: mounted
    previous:
      description: What was mounted on the point before, one text per stacked layer, bottom first.
      type: list
      elements: str
      sample: ["tmpfs tmpfs (rw,relatime; rw,size=1024k)"]
    unmounted:
      description: Mount points unmounted for this item, in order (a point appears once per layer).
      type: list
      elements: str
      sample: ["/another_rootfs/proc"]
    reason:
      description: Why the action was chosen (for example the mismatch found).
      type: str
      sample: not mounted
    detail:
      description: Error or rollback detail for this item.
      type: str
      returned: when there is one
      sample: "mount -t tmpfs -o bogus tmpfs /x failed (rc=32): ..."
msg:
  description: Error message.
  returned: failure
  type: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import FILESYSTEMS_PATH, MountInfoError, MountTable, read_filesystems
from ansible_collections.dpu.offload.plugins.module_utils.mount_apply import ApplyError, apply_plan, system_changed
from ansible_collections.dpu.offload.plugins.module_utils.mount_diff import affected_points, describe_points, predict_points
from ansible_collections.dpu.offload.plugins.module_utils.mount_plan import plan_mounted, plan_unmounted
from ansible_collections.dpu.offload.plugins.module_utils.mount_spec import MountError, normalize_specs
from ansible_collections.dpu.offload.plugins.module_utils.proc_holders import describe_holders

MOUNT_ITEM_SPEC = dict(
    path=dict(type='path', required=True),
    src=dict(type='str'),
    fstype=dict(type='str'),
    opts=dict(type='str'),
)

ARGUMENT_SPEC = dict(
    path=dict(type='path'),
    src=dict(type='str'),
    fstype=dict(type='str'),
    opts=dict(type='str'),
    mounts=dict(type='list', elements='dict', options=MOUNT_ITEM_SPEC),
    state=dict(type='str', default='mounted', choices=['mounted', 'unmounted']),
    recursive=dict(type='bool', default=False),
    create_path=dict(type='bool', default=True),
    remount_on_mismatch=dict(type='bool', default=False),
    mismatch_hint=dict(type='str'),
)

MOUNTINFO = '/proc/self/mountinfo'


def run_qtfs_mount(module, mountinfo_path=MOUNTINFO, filesystems_path=FILESYSTEMS_PATH):
    """The module's work; returns the result dict or raises the module's fail_json."""
    p = module.params
    state = p['state']
    if p['mounts'] is not None:
        items = p['mounts']
    else:
        items = [dict(path=p['path'], src=p['src'], fstype=p['fstype'], opts=p['opts'])]
    result = dict(changed=False, mounts=[])

    try:
        specs = normalize_specs(items, require_src=(state == 'mounted'))
        table = MountTable.from_file(mountinfo_path)
        if state == 'mounted':
            actions, warnings = plan_mounted(
                specs, table,
                filesystems=lambda: read_filesystems(filesystems_path),
                create_path=p['create_path'],
                remount_on_mismatch=p['remount_on_mismatch'],
                mismatch_hint=p['mismatch_hint'],
                check_mode=module.check_mode)
        else:
            actions, warnings = plan_unmounted(specs, table, recursive=p['recursive'])
    except (MountError, MountInfoError) as e:
        module.fail_json(msg=str(e), **result)
    except (IOError, OSError) as e:
        module.fail_json(msg='cannot read %s: %s' % (mountinfo_path, e), **result)

    for w in warnings:
        module.warn(w)

    changed = any(a.changes for a in actions)
    points = affected_points(actions)
    by_index = sorted(actions, key=lambda a: a.spec.index)
    if module.check_mode or not changed:
        result['changed'] = changed
        result['mounts'] = [a.result(check_mode=module.check_mode) for a in by_index]
        if module._diff:
            result['diff'] = dict(before=describe_points(table, points),
                                  after=predict_points(table, actions, points))
        return result

    def run(args):
        return module.run_command(args, environ_update=dict(LC_ALL='C'))

    mount_bin = module.get_bin_path('mount', required=True)
    umount_bin = module.get_bin_path('umount', required=True)
    try:
        apply_plan(actions, run, mount_bin=mount_bin, umount_bin=umount_bin,
                   read_table=lambda: MountTable.from_file(mountinfo_path), explain_busy=describe_holders)
    except ApplyError as e:
        result['mounts'] = [a.result() for a in by_index]
        result['changed'] = system_changed(actions)
        module.fail_json(msg=e.msg, **result)

    result['changed'] = True
    result['mounts'] = [a.result() for a in by_index]
    if module._diff:
        after = MountTable.from_file(mountinfo_path)
        result['diff'] = dict(before=describe_points(table, points),
                              after=describe_points(after, points))
    return result


def build_module():
    return AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[('path', 'mounts')],
        required_one_of=[('path', 'mounts')],
        supports_check_mode=True,
    )


def main():
    module = build_module()
    if not os.path.exists(MOUNTINFO):
        module.fail_json(msg='%s is missing: this module needs a Linux /proc' % MOUNTINFO)
    module.exit_json(**run_qtfs_mount(module))


if __name__ == '__main__':
    main()
