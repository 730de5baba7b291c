# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import os

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.tree_entries import tree_entries

ROLE_FILES = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'roles', 'rexec', 'files')


@pytest.fixture
def files(tmp_path):
    """A role's files/ with a tree: two programs, a package, Python's byte code beside them."""
    tree = tmp_path / 'tool'
    (tree / 'pkg' / '__pycache__').mkdir(parents=True)
    for path, mode in (('run', 0o755), ('pkg/__init__.py', 0o644), ('pkg/b.py', 0o644), ('pkg/a.py', 0o600),
                       ('pkg/__pycache__/a.cpython-311.pyc', 0o644), ('pkg/stale.pyc', 0o644), ('admin', 0o700)):
        (tree / path).write_text('x\n')
        (tree / path).chmod(mode)
    return tmp_path


def test_every_directory_and_file_parents_first_with_the_mode_its_execute_bit_says(files):
    assert tree_entries('tool', str(files), '/opt/tool/') == [
        {'path': '/opt/tool/admin', 'copy': 'tool/admin', 'mode': '0755'},
        {'path': '/opt/tool/run', 'copy': 'tool/run', 'mode': '0755'},
        {'path': '/opt/tool/pkg', 'mode': '0755'},
        {'path': '/opt/tool/pkg/__init__.py', 'copy': 'tool/pkg/__init__.py', 'mode': '0644'},
        {'path': '/opt/tool/pkg/a.py', 'copy': 'tool/pkg/a.py', 'mode': '0644'},
        {'path': '/opt/tool/pkg/b.py', 'copy': 'tool/pkg/b.py', 'mode': '0644'},
    ]


@pytest.mark.parametrize('tree, dest', [('/tool', '/opt/tool'), ('../tool', '/opt/tool'), ('.', '/opt/tool'),
                                        ('tool', 'opt/tool'), ('missing', '/opt/tool')])
def test_a_tree_below_the_files_and_an_absolute_destination_only(files, tree, dest):
    with pytest.raises(AnsibleFilterError):
        tree_entries(tree, str(files), dest)


def test_links_and_empty_trees_are_refused(files):
    (files / 'empty' / 'sub').mkdir(parents=True)
    with pytest.raises(AnsibleFilterError, match='holds no files'):
        tree_entries('empty', str(files), '/opt/empty')
    (files / 'tool' / 'link').symlink_to('run')
    with pytest.raises(AnsibleFilterError, match='not a regular file'):
        tree_entries('tool', str(files), '/opt/tool')


def test_the_rexec_role_installs_its_programs_and_their_package():
    entries = tree_entries('rexec', ROLE_FILES, '/usr/local/lib/dpu-offload/rexec')
    modes = {entry['path'].rsplit('/rexec/', 1)[1]: entry['mode'] for entry in entries}
    assert {name: mode for name, mode in modes.items() if '/' not in name} == {
        'rexec': '0755', 'rexec_server': '0755', 'rexec_forward': '0755', 'rexec_fiforelay': '0755',
        'dpu_offload_rexec': '0755'}
    modules = [name for name in modes if name.startswith('dpu_offload_rexec/')]
    assert 'dpu_offload_rexec/client.py' in modules and 'dpu_offload_rexec/server.py' in modules
    assert all(name.endswith('.py') and modes[name] == '0644' for name in modules)
