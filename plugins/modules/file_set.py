#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: file_set
short_description: Manage a set of directories, files and symbolic links in one run
version_added: 0.1.0
description:
  - Brings an ordered list of paths to their state in a single module run, where
    M(ansible.builtin.file), M(ansible.builtin.copy) and M(ansible.builtin.template)
    in a loop cost one run (or two) per path. On a fleet, and on the small cores of a DPU,
    that is most of the time an idempotent playbook takes.
  - Entries are handled in order; a directory must exist, be listed before what goes in it, or be
    created through O(entries[].parents).
  - File content is text, given inline or rendered on the controller from a template or a file
    of the role, like M(ansible.builtin.template) and M(ansible.builtin.copy) do.
  - A file is replaced atomically (written beside it, validated, renamed). A symbolic link
    standing where a file belongs is replaced by the file, never written through.
  - The module never removes a non-empty directory and never replaces a directory or a
    special file by something else; such an entry fails, naming the path, before anything
    is changed.
author:
  - dpu.offload maintainers (@dpu-offload)
options:
  entries:
    description:
      - The paths to manage, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      state:
        description:
          - V(file) needs O(entries[].content), O(entries[].template) or O(entries[].copy);
            V(link) needs O(entries[].src);
            V(absent) removes a file, a link or an empty directory.
          - Defaults to V(link) when O(entries[].src) is given, V(file) when the content is
            given, else V(directory).
        type: str
        choices: [file, directory, link, absent]
      content:
        description:
          - The file's content (text, written as UTF-8).
          - Mutually exclusive with O(entries[].template) and O(entries[].copy).
        type: str
      template:
        description:
          - A Jinja2 template on the controller, found like M(ansible.builtin.template) finds its
            O(ansible.builtin.template#module:src) (the role's C(templates/) first), rendered with
            the host's variables into the file's content.
        type: str
      template_vars:
        description:
          - Variables for O(entries[].template) on top of the host's, for example the item a
            template is rendered for when several files come from one template.
        type: dict
      copy:
        description:
          - A text file on the controller, found like M(ansible.builtin.copy) finds its
            O(ansible.builtin.copy#module:src) (the role's C(files/) first), used as the file's content.
        type: str
      src:
        description: Where a link points, written as given (absolute or relative).
        type: str
      mode:
        description:
          - Octal permissions such as V("0644"); defaults to O(file_mode) or O(directory_mode).
          - Not used for links.
        type: raw
      owner:
        description: User name or id; defaults to O(owner).
        type: str
      group:
        description: Group name or id; defaults to O(group).
        type: str
      force:
        description:
          - When false, an existing file keeps its content (mode and owner are still set);
            the file is written only when missing.
        type: bool
        default: true
      parents:
        description:
          - Create missing parent directories, like M(ansible.builtin.file) does, with the
            entry's mode and owner for a directory, mode V(0755) and the entry's owner otherwise.
          - When false, a missing parent that no earlier entry creates is an error.
          - Defaults to O(parents).
        type: bool
      validate:
        description:
          - Command run on the new content before it replaces the file, C(%s) standing for the
            temporary file, for example V(/usr/sbin/sshd -t -f %s). Split into arguments like a
            shell would, but never run through one.
        type: str
      if_empty:
        description:
          - With O(entries[].state=absent), a directory that is not empty is left in place (and reported
            unchanged) instead of failing; an empty one is removed.
          - For directories a role made that other software may also put files in (C(/etc/systemd/system/rexec.service.d)).
        type: bool
        default: false
  parents:
    description: Default of O(entries[].parents).
    type: bool
    default: false
  owner:
    description: Default owner of files and directories; unset keeps the current or process owner.
    type: str
  group:
    description: Default group of files and directories.
    type: str
  file_mode:
    description: Default mode of files; unset keeps an existing file's mode, V(0644) for new ones.
    type: raw
  directory_mode:
    description: Default mode of directories; unset keeps an existing directory's mode, V(0755) for new ones.
    type: raw
attributes:
  action:
    support: full
    description: Templates and files are read on the controller; the node gets one module run.
  check_mode:
    support: full
    description:
      - Plans every entry, including files inside directories the same run would create.
      - A missing parent directory is taken as one an earlier task would have created, since
        check mode only predicted it; a real run fails on it.
  diff_mode:
    support: full
    description: One diff per changed path; file content is shown up to 64 KiB of text.
  platform:
    platforms: [posix]
    support: full
    description: Any POSIX node with Python; owners and groups are looked up in its user database.
notes:
  - SELinux contexts and file attributes (C(chattr)) are not managed.
  - Validation runs only for entries whose content changes, and for all of them before
    anything is changed, so a file that fails its check leaves the whole set as it was.
    It does not run in check mode.
seealso:
  - module: ansible.builtin.file
  - module: ansible.builtin.copy
  - module: ansible.builtin.template
'''

EXAMPLES = r'''
- name: Install a program, its configuration and its unit in one run
  dpu.offload.file_set:
    owner: root
    group: root
    entries:
      - path: /opt/dpu-offload/rexec
        mode: "0755"
      - path: /opt/dpu-offload/rexec/rexec
        copy: rexec
        mode: "0755"
      - path: /usr/local/bin/rexec
        src: /opt/dpu-offload/rexec/rexec
      - path: /etc/systemd/system/rexec.service
        template: rexec.service.j2
        mode: "0644"
  notify: Restart rexec

- name: Check an sshd configuration before it replaces the old one
  dpu.offload.file_set:
    entries:
      - path: /etc/dpu-offload/sftp/sshd_config
        template: sftp_sshd_config.j2
        mode: "0600"
        validate: /usr/sbin/sshd -t -f %s

- name: Remove a drop-in, and its directory unless something else is in it
  dpu.offload.file_set:
    entries:
      - {path: /etc/systemd/system/rexec.service.d/dpu-offload.conf, state: absent}
      - {path: /etc/systemd/system/rexec.service.d, state: absent, if_empty: true}

- name: Create an empty file only when it is missing
  dpu.offload.file_set:
    entries:
      - path: /etc/dpu-offload/sftp/authorized_keys
        content: ""
        force: false
        mode: "0600"

- name: Remove what the set installed, files before their directory
  dpu.offload.file_set:
    entries:
      - {path: /usr/local/bin/rexec, state: absent}
      - {path: /opt/dpu-offload/rexec/rexec, state: absent}
      - {path: /opt/dpu-offload/rexec, state: absent}
'''

RETURN = r'''
changed_paths:
  description: The paths that changed (or would change in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [/opt/dpu-offload/rexec/rexec, /usr/local/bin/rexec]
entries:
  description: Per path, the state asked for and the actions taken (empty when it was right).
  returned: always
  type: list
  elements: dict
  sample:
    - {path: /opt/dpu-offload/rexec, state: directory, actions: []}
    - {path: /opt/dpu-offload/rexec/rexec, state: file, actions: [write, chmod]}
    - {path: /usr/local/bin/rexec, state: link, actions: [link]}
msg:
  description: What failed, naming the path.
  returned: failure
  type: str
'''

import shlex

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.dpu.offload.plugins.module_utils.file_set import (
    FileSetError,
    apply_entry,
    normalize,
    plan,
    validate_planned,
)

ENTRY_SPEC = dict(
    path=dict(type='path', required=True),
    state=dict(type='str', choices=['file', 'directory', 'link', 'absent']),
    content=dict(type='str'),
    template=dict(type='str'),
    template_vars=dict(type='dict'),
    copy=dict(type='str'),
    src=dict(type='str'),
    mode=dict(type='raw'),
    owner=dict(type='str'),
    group=dict(type='str'),
    force=dict(type='bool', default=True),
    parents=dict(type='bool'),
    validate=dict(type='str'),
    if_empty=dict(type='bool', default=False),
)

ARGUMENT_SPEC = dict(
    entries=dict(type='list', elements='dict', required=True, options=ENTRY_SPEC),
    parents=dict(type='bool', default=False),
    owner=dict(type='str'),
    group=dict(type='str'),
    file_mode=dict(type='raw'),
    directory_mode=dict(type='raw'),
)


def validator(module):
    def validate(command, tmp_path, target):
        if '%s' not in command:
            raise FileSetError('validate %r must contain %%s, the file to check' % command)
        argv = [tmp_path if arg == '%s' else arg.replace('%s', tmp_path) for arg in shlex.split(command)]
        rc, out, err = module.run_command(argv)
        if rc != 0:
            raise FileSetError('the new content of %s fails its check (%s, rc %d): %s'
                               % (target, command, rc, (err or out).strip()))
    return validate


def run_file_set(module):
    p = module.params
    result = dict(changed=False, changed_paths=[], entries=[])
    try:
        entries = normalize(p['entries'], dict(owner=p['owner'], group=p['group'], file_mode=p['file_mode'],
                                               directory_mode=p['directory_mode'], parents=p['parents']))
        planned = plan(entries, predict=module.check_mode)
        # Like the template module, no checks in check mode: what they need
        # (a host key, a directory) may itself be only predicted.
        if not module.check_mode:
            validate_planned(planned, validator(module))
    except (FileSetError, OSError) as e:
        module.fail_json(msg=to_native(e), **result)

    diffs = []
    for entry, actions, diff in planned:
        result['entries'].append(dict(path=entry['path'], state=entry['state'], actions=actions))
        if not actions:
            continue
        result['changed'] = True
        result['changed_paths'].append(entry['path'])
        if diff:
            diffs.append(diff)
        if module.check_mode:
            continue
        try:
            apply_entry(entry, actions)
        except (FileSetError, OSError) as e:
            module.fail_json(msg='%s: %s' % (entry['path'], to_native(e)) if entry['path'] not in to_native(e)
                             else to_native(e), **result)
    if module._diff and diffs:
        result['diff'] = diffs
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    for entry in module.params['entries']:
        if entry.get('template') is not None or entry.get('copy') is not None:
            module.fail_json(msg='%s: template and copy are read by the action plugin on the controller; '
                             'call the module by its name dpu.offload.file_set' % entry['path'])
    module.exit_json(**run_file_set(module))


if __name__ == '__main__':
    main()
