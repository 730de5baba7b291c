"""Reach the lab's nodes by name through molecule's inventory.

Outside molecule, LAB_INVENTORY, LAB_HOST and LAB_DPU point the tests
at another lab (e.g. a second pair made with lab/lab.yml).
"""
import os
import sys
import time

import pytest
import testinfra

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '..', 'tools'))
import role_defaults  # noqa: E402  pylint: disable=wrong-import-position

# Where the rexec role puts the client and its settings (its defaults, not a copy).
REXEC = role_defaults.rexec()
# The offload root, for the patched scenario's tests this one loads (test_rexec_stock.py).
ROOT = role_defaults.offload_root()


def _inventory():
    if os.environ.get('LAB_INVENTORY'):
        return os.environ['LAB_INVENTORY']
    ephemeral = os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY')
    if ephemeral:
        return os.path.join(ephemeral, 'inventory')
    return os.path.join(os.path.dirname(__file__), '..', '..', '..', 'inventories', 'lab')


def node(name):
    return testinfra.get_host('ansible://%s?ansible_inventory=%s' % (name, _inventory()))


@pytest.fixture(scope='session')
def hostnode():
    return node(os.environ.get('LAB_HOST', 'lab-host'))


@pytest.fixture(scope='session')
def dpu():
    return node(os.environ.get('LAB_DPU', 'lab-dpu'))


def rexec(machine, command, env='', limit=None):
    """Run rexec on a node the way the wrappers do: with its client.env (killed after limit seconds, if given)."""
    timeout = 'timeout %d ' % limit if limit else ''
    return machine.run("%ssh -c 'set -a; . %s; %s exec %s %s'" % (timeout, REXEC.client_env, env, REXEC.client, command))


def processes(machine, argv):
    """Pids whose command line is exactly argv (not a shell that mentions it).

    A shell caught between fork and exec has its parent's command line: such
    a child of a match is not counted."""
    found = {}
    for line in machine.check_output('ps -eo pid=,ppid=,args=').splitlines():
        pid, ppid, args = (line.strip().split(None, 2) + ['', ''])[:3]
        if args.strip() == argv:
            found[int(pid)] = int(ppid)
    return sorted(pid for pid, ppid in found.items() if ppid not in found)


def wait(predicate, timeout=10.0):
    """Poll predicate until it holds or timeout seconds pass; its last answer."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def docker_container(dpu, name, image, loop, options=''):
    """A detached docker container on the DPU running sh -c loop, with docker run's options, removed before and after
    (a fixture body)."""
    dpu.run('docker rm -f %s' % name)
    dpu.check_output("docker run -d %s--name %s %s sh -c '%s'" % (options + ' ' if options else '', name, image, loop))
    yield name
    dpu.run('docker rm -f %s' % name)


# What each node says about the offload when a test fails: CI keeps only a
# digest of the run, and a lab is gone by the time anyone reads it.
DIAGNOSTICS = (
    ('lab-dpu', "journalctl -q -o short-monotonic --no-pager -n 40 -u containerd -u docker "
                "-u 'dpu-offload-*' -u rexec"),
    ('lab-host', "journalctl -q -o short-monotonic --no-pager -n 30 -u 'dpu-offload-*' -u rexec"),
    ('lab-dpu', "docker ps -a --format '{{.Names}} {{.Status}}'"),
)


def diagnostics():
    """Lines prefixed with DIAG, which tools/failure_digest.py keeps."""
    lines = []
    names = {'lab-host': os.environ.get('LAB_HOST', 'lab-host'), 'lab-dpu': os.environ.get('LAB_DPU', 'lab-dpu')}
    for role, command in DIAGNOSTICS:
        try:
            result = node(names[role]).run(command)
            out = (result.stdout + result.stderr).splitlines()
        except Exception as error:  # pylint: disable=broad-except
            out = ['(could not ask: %s)' % error]
        lines.append('DIAG %s$ %s' % (role, command.split(' -', maxsplit=1)[0]))
        lines.extend('DIAG %s' % line for line in out)
    return '\n'.join(lines)


_DIAGNOSED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    """Add the lab's diagnostics to the first failing test's report."""
    outcome = yield
    report = outcome.get_result()
    # The first failure only: it is the cause, and the digest has room for one.
    if report.when == 'call' and report.failed and not item.session.config.stash.get(_DIAGNOSED, False):
        item.session.config.stash[_DIAGNOSED] = True
        report.sections.append(('lab diagnostics', diagnostics()))
