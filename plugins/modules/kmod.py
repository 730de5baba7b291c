#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: kmod
short_description: Load or unload a kernel module (qtfs.ko, qtfs_server.ko) with parameters
version_added: 0.1.0
description:
  - Loads a kernel module from a C(.ko) file (like C(insmod PATH k=v ...)) or by name
    (like C(modprobe NAME k=v ...)), or unloads it (C(rmmod NAME)).
  - The module counts as loaded when C(/sys/module/<name>) exists.
  - Requested parameters are compared with C(/sys/module/<name>/parameters/*) as text after
    stripping blanks; a requested boolean (true/false, yes/no, on/off, y/n, 1/0) matches the
    kernel's V(Y)/V(N). A module running with other values is never reported as unchanged - the
    task fails naming each differing parameter (requested and running value), or reloads the
    module when O(reload_on_change=true).
  - A parameter the module does not export in sysfs cannot be checked; a warning says so.
author:
  - dpu.offload maintainers (@dpu-offload)
options:
  name:
    description:
      - Module name as it appears under C(/sys/module) (dashes are read as underscores).
      - Required unless O(path) is given; then it defaults to the file name without C(.ko).
      - Without O(path), the module is loaded with C(modprobe NAME).
    type: str
  path:
    description:
      - Absolute path of the C(.ko) file to load with C(insmod).
    type: path
  params:
    description:
      - "Module parameters, for example C({qtfs_server_ip: 192.0.2.1, qtfs_log_level: INFO})."
      - Values are given as C(key=value) to insmod or modprobe; booleans become V(Y)/V(N).
    type: dict
    default: {}
  state:
    description:
      - V(present) loads the module if it is not loaded.
      - V(absent) unloads it; a module in use is an error naming its holders and reference count.
    type: str
    choices: [present, absent]
    default: present
  reload_on_change:
    description:
      - When the loaded module runs with other parameter values than requested, unload it and
        load it again with the requested ones (the kernel ignores new parameters for a loaded
        module). The module must not be in use.
      - When false, such a difference is an error.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Predicts the action without loading or unloading anything.
  diff_mode:
    support: full
    description: Shows the module state and parameters before and after.
  platform:
    platforms: [linux]
    support: full
    description: Needs a kernel with loadable module support (C(/proc/modules)).
notes:
  - On a kernel built without loadable module support (C(/proc/modules) missing) loading fails
    with a message saying so; the lab machines of this collection are such kernels and use the
    sshfs transport instead of qtfs.
seealso:
  - module: dpu.offload.qtfs_mount
  - module: community.general.modprobe
    description: Loads modules by name through modprobe, without parameter checks against sysfs.
'''

EXAMPLES = r'''
- name: Load qtfs.ko on the DPU (TCP test-mode build)
  dpu.offload.kmod:
    path: /opt/qtfs/qtfs.ko
    params:
      qtfs_server_ip: 192.0.2.10
      qtfs_log_level: INFO

- name: Load qtfs_server.ko on the HOST, reloading when the parameters changed
  dpu.offload.kmod:
    path: /opt/qtfs/qtfs_server.ko
    params:
      qtfs_server_vsock_cid: 2
    reload_on_change: true

- name: Unload qtfs
  dpu.offload.kmod:
    name: qtfs
    state: absent
'''

RETURN = r'''
name:
  description: The module name under C(/sys/module).
  returned: always
  type: str
  sample: qtfs
action:
  description:
    - V(loaded), V(reloaded), V(unloaded) or V(unchanged); in check mode V(would_load),
      V(would_reload), V(would_unload).
  returned: success
  type: str
  sample: loaded
params:
  description:
    - Parameter values read from C(/sys/module/<name>/parameters) after the run (only the
      requested ones when O(params) is given). In check mode, the predicted values.
  returned: success
  type: dict
  sample: {qtfs_server_ip: 192.0.2.10, qtfs_log_level: INFO}
mismatches:
  description: Parameters that differed before the run, each with requested and running value.
  returned: always
  type: list
  elements: dict
  sample: [{name: qtfs_log_level, requested: INFO, running: ERROR}]
commands:
  description: The commands run (or that would run in check mode), as argument lists.
  returned: always
  type: list
  elements: list
  sample: [["insmod", "/opt/qtfs/qtfs.ko", "qtfs_log_level=INFO"]]
msg:
  description: Error message.
  returned: failure
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dpu.offload.plugins.module_utils.kmod import (
    KmodError,
    compare_params,
    describe_state,
    module_state,
    plan,
    predicted_state,
)

ARGUMENT_SPEC = dict(
    name=dict(type='str'),
    path=dict(type='path'),
    params=dict(type='dict', default={}),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    reload_on_change=dict(type='bool', default=False),
)

PAST = {'load': 'loaded', 'reload': 'reloaded', 'unload': 'unloaded'}


def run_kmod(module, sys_root='/sys', proc_root='/proc'):
    p = module.params
    result = dict(changed=False, name=p['name'] or '', mismatches=[], commands=[])
    try:
        decision = plan(name=p['name'], path=p['path'], params=p['params'], state=p['state'],
                        reload_on_change=p['reload_on_change'], sys_root=sys_root, proc_root=proc_root)
    except KmodError as e:
        result['mismatches'] = [dict(name=m[0], requested=m[1], running=m[2]) for m in e.mismatches]
        module.fail_json(msg=str(e), **result)
    name = decision['name']
    result['name'] = name
    result['mismatches'] = [dict(name=m[0], requested=m[1], running=m[2]) for m in decision['mismatches']]
    for w in decision['warnings']:
        module.warn(w)

    action = decision['action']
    wanted = list(p['params']) if p['params'] else None
    if action == 'unchanged':
        result['action'] = 'unchanged'
        result['params'] = decision['before']['params'] if wanted else module_state(name, sys_root)['params']
        return result

    commands = []
    for cmd in decision['commands']:
        binary = module.get_bin_path(cmd[0], required=not module.check_mode) or cmd[0]
        commands.append([binary] + cmd[1:])
    result['commands'] = commands
    result['changed'] = True
    before_text = describe_state(decision['before'])

    if module.check_mode:
        after = predicted_state(decision, p['params'])
        result['action'] = 'would_' + action
        result['params'] = after['params']
        if module._diff:
            result['diff'] = dict(before=before_text, after=describe_state(after))
        return result

    done = []
    for cmd in commands:
        rc, out, err = module.run_command(cmd, environ_update=dict(LC_ALL='C'))
        if rc != 0:
            result['changed'] = bool(done)
            msg = '%s failed (rc=%d): %s' % (' '.join(cmd), rc, (err or out or '').strip() or 'no output')
            if done:
                msg += '; already done: %s (the module is now unloaded)' % ' '.join(done[-1])
            module.fail_json(msg=msg, **result)
        done.append(cmd)

    after = module_state(name, sys_root, params=wanted)
    if action != 'unload':
        if not after['present']:
            module.fail_json(msg='%s reported success but /sys/module/%s is missing' % (' '.join(commands[-1]), name),
                             **result)
        still, dummy = compare_params(p['params'], after['params'])
        for m in still:
            module.warn('after loading, parameter %s of %s reads %r, not the requested %r' % (m[0], name, m[2], m[1]))
    result['action'] = PAST[action]
    result['params'] = after['params']
    if module._diff:
        result['diff'] = dict(before=before_text, after=describe_state(after))
    return result


def build_module():
    return AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_one_of=[('name', 'path')],
        supports_check_mode=True,
    )


def main():
    module = build_module()
    module.exit_json(**run_kmod(module))


if __name__ == '__main__':
    main()
