# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller half of dpu.offload.file_set: turns each entry's O(template) or
O(copy) into content, found like the template and copy modules find theirs,
then runs the module once for the whole set."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import lookup_loader


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('entries', 'parents', 'owner', 'group', 'file_mode', 'directory_mode'))

    def _content(self, entry, task_vars):
        sources = [key for key in ('template', 'copy', 'content') if entry.get(key) is not None]
        template_vars = entry.pop('template_vars', None) or {}
        if template_vars and entry.get('template') is None:
            raise AnsibleActionFail('%s: template_vars go with template' % entry.get('path'))
        if len(sources) > 1:
            raise AnsibleActionFail('%s: give one of template, copy or content, not %s'
                                    % (entry.get('path'), ' and '.join(sources)))
        if entry.get('template') is not None:
            source = self._find_needle('templates', entry.pop('template'))
            lookup = lookup_loader.get('ansible.builtin.template', loader=self._loader, templar=self._templar)
            entry['content'] = to_text(lookup.run([source], variables=task_vars, template_vars=template_vars)[0])
        elif entry.get('copy') is not None:
            source = self._find_needle('files', entry.pop('copy'))
            with open(self._loader.get_real_file(source), 'rb') as f:
                data = f.read()
            try:
                entry['content'] = data.decode('utf-8')
            except UnicodeDecodeError:
                raise AnsibleActionFail('%s: %s is not UTF-8 text; file_set carries text only' % (entry.get('path'), source))
        return entry

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        entries = args.get('entries')
        if not isinstance(entries, list):
            raise AnsibleActionFail('entries must be a list of dictionaries')
        try:
            args['entries'] = [self._content(dict(e), task_vars) if isinstance(e, dict) else e for e in entries]
        except AnsibleActionFail:
            raise
        except AnsibleError as e:
            raise AnsibleActionFail(to_native(e))
        result.update(self._execute_module(module_name='dpu.offload.file_set', module_args=args,
                                           task_vars=task_vars))
        return result
