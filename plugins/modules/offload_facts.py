#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: offload_facts
short_description: Gather the current state of a DPU container management plane offload
version_added: 0.1.0
description:
  - Reports, for one node, the qtfs kernel modules and their parameters, whether the C(qtfs)
    filesystem type is registered, whether the kernel supports loadable modules, the mounts at
    and below the offload root, the rexec service and its listen address, and the wrapper
    scripts inside the offload root.
  - Returns everything under C(ansible_facts.dpu_offload). Read-only; never changes anything.
author:
  - dpu.offload maintainers (@dpu-offload)
options:
  offload_root:
    description: The chroot tree the DPU management plane runs in.
    type: path
    default: /another_rootfs
  wrappers:
    description: Wrapper scripts to report on, as paths relative to O(offload_root).
    type: list
    elements: str
    default: [usr/local/bin/containerd-shim, usr/local/bin/remote_kill, usr/sbin/modprobe]
  kernel_modules:
    description: Kernel modules to report on, by their C(/sys/module) name.
    type: list
    elements: str
    default: [qtfs, qtfs_server]
  rexec_service:
    description: systemd unit name of the rexec server.
    type: str
    default: rexec
  rexec_listen:
    description:
      - The rexec listen address to report (for example V(tcp://0.0.0.0:7777)) instead of reading
        C(CMD_NET_ADDR) from the unit's C(Environment).
    type: str
attributes:
  check_mode:
    support: full
    description: Read-only; the same facts are gathered in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  facts:
    support: full
    description: Sets C(ansible_facts.dpu_offload).
  platform:
    platforms: [linux]
    support: full
    description: Reads C(/proc), C(/sys) and uses C(systemctl) when present.
seealso:
  - module: dpu.offload.qtfs_mount
  - module: dpu.offload.kmod
'''

EXAMPLES = r'''
- name: Look at the offload
  dpu.offload.offload_facts:

- name: Fail when qtfs.ko is not loaded on the DPU
  ansible.builtin.assert:
    that: ansible_facts.dpu_offload.kernel_modules.qtfs.loaded

- name: List mounts under the rootfs that are missing from a wanted list
  ansible.builtin.debug:
    msg: "{{ wanted_points | difference(ansible_facts.dpu_offload.mounts | map(attribute='path')) }}"
  vars:
    wanted_points: [/another_rootfs/proc, /another_rootfs/sys]
'''

RETURN = r'''
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    dpu_offload:
      description: The offload state of the node.
      returned: always
      type: dict
      contains:
        offload_root:
          description: The offload root looked at.
          type: str
          sample: /another_rootfs
        offload_root_exists:
          description: Whether the offload root is a directory.
          type: bool
        loadable_modules_supported:
          description: Whether the kernel supports loadable modules (C(/proc/modules) exists).
          type: bool
        qtfs_registered:
          description: Whether filesystem type C(qtfs) is listed in C(/proc/filesystems).
          type: bool
        kernel_modules:
          description:
            - One key per name in O(kernel_modules), each a dict with C(loaded) (bool),
              C(builtin) (bool), C(params) (dict name to text; V(null) when unreadable),
              C(refcnt) (int or V(null)) and C(holders) (list of module names).
          type: dict
          sample: {qtfs: {loaded: true, builtin: false, params: {qtfs_log_level: INFO}, refcnt: 3, holders: []}}
        mounts:
          description:
            - Mounts at or below the offload root in mountinfo order. Each has C(path), C(fstype),
              C(src), C(opts) (per-mount options), C(super_opts), C(root), C(device) (major:minor)
              and C(visible) (false when hidden by a mount stacked on top or above it).
          type: list
          elements: dict
        rexec:
          description:
            - The rexec service. C(state) is systemd's ActiveState (V(active), V(inactive),
              V(failed), ...), V(not-found) for a missing unit, or V(unknown) without a working
              systemctl. C(main_pid) (int or V(null)), C(listen) (the C(CMD_NET_ADDR) value or
              V(null)), C(listen_source) (V(systemd), V(option) or V(none)), C(load_state).
          type: dict
          sample: {state: active, main_pid: 812, listen: "tcp://0.0.0.0:7777", listen_source: systemd, load_state: loaded}
        wrappers:
          description: One entry per O(wrappers) item with C(path), C(full_path), C(exists), C(executable).
          type: list
          elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import MountTable
from ansible_collections.dpu.offload.plugins.module_utils.offload_state import (
    DEFAULT_WRAPPERS,
    gather,
    parse_systemctl_show,
    rexec_state_from_show,
    unknown_rexec,
)

ARGUMENT_SPEC = dict(
    offload_root=dict(type='path', default='/another_rootfs'),
    wrappers=dict(type='list', elements='str', default=list(DEFAULT_WRAPPERS)),
    kernel_modules=dict(type='list', elements='str', default=['qtfs', 'qtfs_server']),
    rexec_service=dict(type='str', default='rexec'),
    rexec_listen=dict(type='str'),
)


def rexec_facts(module):
    p = module.params
    systemctl = module.get_bin_path('systemctl')
    if not systemctl:
        return unknown_rexec(p['rexec_listen'])
    rc, out, dummy = module.run_command(
        [systemctl, 'show', '-p', 'LoadState', '-p', 'ActiveState', '-p', 'MainPID',
         '-p', 'Environment', '--', p['rexec_service']],
        environ_update=dict(LC_ALL='C'))
    if rc != 0:
        return unknown_rexec(p['rexec_listen'])
    return rexec_state_from_show(parse_systemctl_show(out), p['rexec_listen'])


def run_offload_facts(module, mountinfo_path='/proc/self/mountinfo', sys_root='/sys', proc_root='/proc'):
    p = module.params
    root = p['offload_root'].rstrip('/') or '/'
    try:
        table = MountTable.from_file(mountinfo_path)
    except (IOError, OSError) as e:
        module.fail_json(msg='cannot read %s: %s' % (mountinfo_path, e))
    facts = gather(table, root, p['wrappers'], p['kernel_modules'], sys_root=sys_root, proc_root=proc_root)
    facts['rexec'] = rexec_facts(module)
    return dict(changed=False, ansible_facts=dict(dpu_offload=facts))


def build_module():
    return AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)


def main():
    module = build_module()
    module.exit_json(**run_offload_facts(module))


if __name__ == '__main__':
    main()
