"""Reach the lab's nodes by name through molecule's inventory."""
import os
import sys

import pytest
import testinfra

REPO = os.path.join(os.path.dirname(__file__), '..', '..', '..')

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '..', 'tools'))
import role_defaults  # noqa: E402  pylint: disable=wrong-import-position
from role_defaults import shared_directories  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
import shared_checks  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

# Where the rexec role puts the client and its settings (its defaults, not a copy).
REXEC = role_defaults.rexec()
ROOT = role_defaults.offload_root()


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
