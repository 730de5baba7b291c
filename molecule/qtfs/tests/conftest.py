"""Reach the VM lab's guests over SSH with the lab's own key and known_hosts
(lab/vm/vmlab.py), as the inventory does."""
import os
import shlex
import sys

import pytest
import testinfra

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
sys.path.insert(0, os.path.join(REPO, 'lab', 'vm'))
sys.path.insert(0, os.path.join(REPO, 'tools'))
import role_defaults  # noqa: E402  pylint: disable=wrong-import-position
import shared_checks  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
import vmlab  # noqa: E402  pylint: disable=wrong-import-position

REXEC = role_defaults.rexec()
ROOT = role_defaults.offload_root()
NODES = {node['role']: node for node in vmlab.nodes(vmlab.DEFAULT_INVENTORY, vmlab.load_settings())}


def node(role):
    found = NODES[role]
    extra = ' '.join(shlex.quote(arg) for arg in (
        '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes',
        '-o', 'UserKnownHostsFile=' + vmlab.known_hosts_path(), '-o', 'LogLevel=ERROR'))
    return testinfra.get_host('ssh://root@127.0.0.1:%d' % found['port'], ssh_identity_file=vmlab.key_path(),
                              ssh_extra_args=extra, timeout=60)


@pytest.fixture(scope='session')
def hostnode():
    return node('host')


@pytest.fixture(scope='session')
def dpu():
    return node('dpu')


def rexec(machine, command):
    """Run rexec on a node the way the wrappers do: with its client.env."""
    return machine.run("sh -c 'set -a; . %s; exec %s %s'" % (REXEC.client_env, REXEC.client, command))


def loaded_modules(machine):
    """The names of the kernel modules loaded on a node."""
    return {line.split()[0] for line in machine.file('/proc/modules').content_string.splitlines()}
