"""Reach the lab's nodes by name through molecule's inventory."""
import os
import sys

import pytest
import testinfra
import yaml

REPO = os.path.join(os.path.dirname(__file__), '..', '..', '..')
SHARED_MOUNTS = os.path.join(REPO, 'roles', 'offload_common', 'defaults', 'main', 'shared_mounts.yml')

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '..', 'tools'))
import role_defaults  # noqa: E402  pylint: disable=wrong-import-position

# Where the rexec role puts the client and its settings (its defaults, not a copy).
REXEC = role_defaults.rexec()


def _inventory():
    ephemeral = os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY')
    if ephemeral:
        return os.path.join(ephemeral, 'inventory')
    return os.path.join(REPO, 'inventories', 'lab')


def node(name):
    return testinfra.get_host('ansible://%s?ansible_inventory=%s' % (name, _inventory()))


@pytest.fixture(scope='session')
def hostnode():
    return node('lab-host')


@pytest.fixture(scope='session')
def dpu():
    return node('lab-dpu')


def rexec(machine, command, env=''):
    """Run rexec on a node the way the wrappers do: with its client.env."""
    return machine.run("sh -c 'set -a; . %s; %s exec %s %s'" % (REXEC.client_env, env, REXEC.client, command))


def shared_directories(listing=SHARED_MOUNTS):
    """The HOST directories the DPU mounts in its root, from the one list
    (offload_common_shared_mounts): every entry but the pseudo file systems."""
    with open(listing, encoding='utf-8') as f:
        entries = yaml.safe_load(f)['offload_common_shared_mounts']
    return [entry['path'] for entry in entries if not entry.get('pseudo')]
