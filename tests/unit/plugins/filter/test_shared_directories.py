# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.shared_directories import disk_backed, shared_directories

SHARED = [
    {'path': '/proc', 'pseudo': True, 'opts': 'proc', 'sshfs_opts': 'direct_io', 'readonly': True},
    {'path': '/sys', 'pseudo': True, 'sshfs_opts': 'direct_io', 'readonly': True},
    {'path': '/var/lib/docker/containers', 'mode': '0710'},
    {'path': '/run/docker/containerd', 'mode': '0711', 'readonly': False},
]
NETNS = {'path': '/run/docker/netns', 'mode': '0755'}


def test_directories_in_order_without_the_pseudo_file_systems_then_the_extra_ones():
    assert shared_directories(SHARED, [NETNS]) == [
        {'path': '/var/lib/docker/containers', 'mode': '0710'},
        {'path': '/run/docker/containerd', 'mode': '0711'},
        {'path': '/run/docker/netns', 'mode': '0755'},
    ]


def test_only_path_and_mode_reach_file_set():
    assert all(set(entry) == {'path', 'mode'} for entry in shared_directories(SHARED))
    assert shared_directories([]) == [] and shared_directories(None, [NETNS]) == [NETNS]


def test_a_pseudo_flag_set_to_false_is_a_directory():
    assert shared_directories([{'path': '/srv/a', 'mode': '0700', 'pseudo': False}]) == [{'path': '/srv/a', 'mode': '0700'}]


def test_an_integer_mode_is_passed_as_file_set_reads_it():
    assert shared_directories([{'path': '/srv/a', 'mode': 0o700}]) == [{'path': '/srv/a', 'mode': 0o700}]


@pytest.mark.parametrize('entry', [
    {'path': '/srv/a'},
    {'path': '/srv/a', 'mode': 'u=rwx'},
    {'path': '/srv/a', 'mode': '0800'},
    {'path': '/srv/a', 'mode': True},
])
def test_a_directory_needs_an_octal_mode(entry):
    with pytest.raises(AnsibleFilterError, match='needs the mode'):
        shared_directories([entry])


@pytest.mark.parametrize('path', ['srv/a', '/srv/../etc', '/srv/a/', '/', None])
def test_paths_must_be_absolute_and_canonical(path):
    with pytest.raises(AnsibleFilterError, match='absolute, canonical'):
        shared_directories([{'path': path, 'mode': '0700'}])


def test_a_directory_listed_twice_is_refused():
    with pytest.raises(AnsibleFilterError, match='listed twice: /run/docker/netns'):
        shared_directories(SHARED, [NETNS, dict(NETNS)])
    with pytest.raises(AnsibleFilterError, match='must be a mapping'):
        shared_directories(['/srv/a'])


def test_disk_backed_keeps_only_the_tmpfs_directories_on_disk():
    found = disk_backed(shared_directories(SHARED, [NETNS]), '/var/lib/keep/')
    assert found == {
        'dirs': [{'path': '/var/lib/keep/run/docker/containerd', 'mode': '0711'},
                 {'path': '/var/lib/keep/run/docker/netns', 'mode': '0755'}],
        'binds': [{'path': '/run/docker/containerd', 'src': '/var/lib/keep/run/docker/containerd', 'opts': 'bind'},
                  {'path': '/run/docker/netns', 'src': '/var/lib/keep/run/docker/netns', 'opts': 'bind'}],
    }
    assert disk_backed([{'path': '/var/lib/docker/image', 'mode': '0700'}], '/keep') == {'dirs': [], 'binds': []}


@pytest.mark.parametrize('root', ['', 'relative', '/', '/run', '/run/keep'])
def test_disk_backed_refuses_a_root_that_is_not_on_disk(root):
    with pytest.raises(AnsibleFilterError, match='on persistent storage'):
        disk_backed([], root)
