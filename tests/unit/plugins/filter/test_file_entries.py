# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.file_entries import file_entries

# Two of offload_common_remote_commands' entries, as patched_docker wraps them.
WRAPPERS = [
    {'runs_on': 'host', 'command': '/usr/bin/containerd-shim', 'wrapper': '/usr/local/bin/containerd-shim'},
    {'runs_on': 'host', 'command': '/usr/sbin/modprobe', 'wrapper': '/usr/sbin/modprobe'},
]


def test_absolute_paths_go_below_the_directory_as_below_a_root():
    entries = file_entries(WRAPPERS, '/another_rootfs', 'wrapper.sh.j2', name='wrapper', mode='0755', var='wrapper', parents=True)
    assert entries == [
        {'path': '/another_rootfs/usr/local/bin/containerd-shim', 'template': 'wrapper.sh.j2', 'mode': '0755',
         'template_vars': {'wrapper': WRAPPERS[0]}, 'parents': True},
        {'path': '/another_rootfs/usr/sbin/modprobe', 'template': 'wrapper.sh.j2', 'mode': '0755',
         'template_vars': {'wrapper': WRAPPERS[1]}, 'parents': True},
    ]
    # Below / (a HOST's real paths), a path is itself.
    assert [e['path'] for e in file_entries(WRAPPERS, '/', 't.j2', name='wrapper')] == ['/usr/local/bin/containerd-shim', '/usr/sbin/modprobe']
    assert file_entries(WRAPPERS, '/another_rootfs/', 't.j2', name='wrapper')[1]['path'] == '/another_rootfs/usr/sbin/modprobe'


def test_the_template_variable_is_named_by_var_and_parents_only_when_asked():
    units = [{'name': 'dpu-offload-containerd.service', 'enabled': True}]
    assert file_entries(units, '/etc/systemd/system', 'offload-engine.service.j2', var='unit') == [
        {'path': '/etc/systemd/system/dpu-offload-containerd.service', 'template': 'offload-engine.service.j2', 'mode': '0644',
         'template_vars': {'unit': units[0]}}]


@pytest.mark.parametrize('path', ['usr/sbin/modprobe', '/usr/../etc/shadow', '/usr//sbin/x', '/usr/sbin/', '/', '/./x'])
def test_a_name_is_a_file_name_or_a_canonical_absolute_path(path):
    with pytest.raises(AnsibleFilterError):
        file_entries([{'wrapper': path}], '/another_rootfs', 't.j2', name='wrapper')


def test_a_file_name_puts_each_file_in_a_directory_named_after_the_item():
    entries = file_entries([{'name': 'registry.k8s.io'}, {'name': 'localhost:5000'}], '/etc/c/certs.d', 'h.j2',
                           file_name='hosts.toml', parents=True)
    assert [e['path'] for e in entries] == ['/etc/c/certs.d/registry.k8s.io/hosts.toml', '/etc/c/certs.d/localhost:5000/hosts.toml']
    assert all(e['parents'] for e in entries)


@pytest.mark.parametrize('file_name', ['', 'a/b', '..'])
def test_a_file_name_is_one_component(file_name):
    with pytest.raises(AnsibleFilterError, match='not a file name'):
        file_entries([{'name': 'x'}], '/etc', 'h.j2', file_name=file_name)
