"""Every role entry point the tree calls has an argument spec.

Ansible checks a role's variables against meta/argument_specs.yml only for
the entry point named by tasks_from; a tasks_from without an entry of its own
runs unchecked, silently. These tests find each include_role/import_role in
the playbooks, roles and molecule scenarios and hold them to the specs."""
import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = ROOT / 'roles'
INCLUDES = ('ansible.builtin.include_role', 'ansible.builtin.import_role', 'include_role', 'import_role')
BLOCK_KEYS = ('block', 'rescue', 'always', 'tasks', 'pre_tasks', 'post_tasks', 'handlers')


def _entry_points(role):
    specs = yaml.safe_load((ROLES / role / 'meta/argument_specs.yml').read_text())
    return specs['argument_specs']


def _role_calls(node, found):
    """(role, tasks_from) for every role call in a parsed YAML task tree."""
    if isinstance(node, list):
        for item in node:
            _role_calls(item, found)
    elif isinstance(node, dict):
        for key in INCLUDES:
            call = node.get(key)
            if isinstance(call, dict) and 'name' in call:
                found.append((call['name'].rsplit('.', 1)[-1], call.get('tasks_from', 'main')))
        for item in node.get('roles', []) if isinstance(node.get('roles'), list) else []:
            name = item if isinstance(item, str) else item.get('role', item.get('name', ''))
            found.append((name.rsplit('.', 1)[-1], 'main'))
        for key in BLOCK_KEYS:
            if key in node:
                _role_calls(node[key], found)
    return found


def _calls():
    calls = []
    for base in ('playbooks', 'roles', 'molecule'):
        for path in sorted((ROOT / base).rglob('*.yml')):
            if 'meta' in path.parts or 'defaults' in path.parts or 'vars' in path.parts:
                continue
            for role, tasks_from in _role_calls(yaml.safe_load(path.read_text()), []):
                calls.append(pytest.param(role, tasks_from, id='%s:%s->%s' % (path.relative_to(ROOT), role, tasks_from)))
    return calls


def _entry_name(tasks_from):
    return tasks_from[:-len('.yml')] if tasks_from.endswith('.yml') else tasks_from


@pytest.mark.parametrize('role, tasks_from', _calls())
def test_each_role_call_names_an_entry_point_with_a_spec(role, tasks_from):
    assert (ROLES / role).is_dir(), 'no role %s in roles/' % role
    entry = _entry_name(tasks_from)
    assert entry in _entry_points(role), (
        'tasks_from %s of role %s has no entry point in roles/%s/meta/argument_specs.yml, '
        'so its variables are never checked: add one' % (tasks_from, role, role))


@pytest.mark.parametrize('role', sorted(p.name for p in ROLES.iterdir() if (p / 'tasks').is_dir()))
def test_each_entry_point_has_its_tasks_file_and_says_what_it_does(role):
    for entry, spec in _entry_points(role).items():
        assert (ROLES / role / 'tasks' / ('%s.yml' % entry)).is_file(), '%s: entry point %s has no tasks file' % (role, entry)
        assert spec.get('short_description'), '%s: entry point %s has no short_description' % (role, entry)


def test_the_scan_finds_the_calls_it_guards():
    # A scan that found nothing would pass the test above vacuously.
    found = {(c.values[0], _entry_name(c.values[1])) for c in _calls()}
    assert ('offload_common', 'engine_mode') in found
    assert ('sshfs_transport', 'endpoint') in found
