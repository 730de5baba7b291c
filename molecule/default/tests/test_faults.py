"""Faults of the management plane that the HOST's containers outlive.

rexec_server on either machine is killed (SIGKILL of the server process, as
an OOM kill or a crash would): systemd starts it again, and a running
docker container keeps its HOST pid, its log and its management. The shims'
connections (DPU -> HOST) and their event connections (HOST -> DPU) cross
the pair through rexec; the forwarders keep containerd's and the shims'
ends open while the link is down and rejoin them (rexec_forward
--resume-ttrpc), so containerd never takes a shim for dead.
"""
import json

import pytest

from conftest import docker_container, wait

IMAGE = 'localhost/dpu-offload/busybox:latest'
NAME = 'fault-proof'
LOOP = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"


def _state(dpu):
    return json.loads(dpu.check_output('docker inspect %s' % NAME))[0]['State']


def _main_pid(machine, unit):
    return int(machine.check_output('systemctl show -p MainPID --value %s' % unit))


def _log_lines(dpu):
    return len(dpu.run('docker logs %s' % NAME).stdout.splitlines())


@pytest.fixture(scope='module')
def container(dpu):
    yield from docker_container(dpu, NAME, IMAGE, LOOP)


@pytest.mark.parametrize('side', ['hostnode', 'dpu'])
def test_a_killed_rexec_server_comes_back_and_the_container_stays_managed(request, side, hostnode, dpu, container):
    machine = request.getfixturevalue(side)
    pid = _state(dpu)['Pid']
    cid = json.loads(dpu.check_output('docker inspect %s' % NAME))[0]['Id']
    since = dpu.check_output('date +%s')
    server = _main_pid(machine, 'rexec.service')
    machine.check_output('kill -KILL %d' % server)
    assert wait(lambda: machine.run('systemctl is-active rexec.service').stdout.strip() == 'active'
                and _main_pid(machine, 'rexec.service') not in (0, server), timeout=20)
    # Still running, same HOST process, and managed: exec, logs that keep coming.
    assert wait(lambda: dpu.run('docker exec %s echo alive' % container).stdout == 'alive\n', timeout=20)
    state = _state(dpu)
    assert state['Running'] and state['Pid'] == pid and hostnode.file('/proc/%d' % pid).exists
    lines = _log_lines(dpu)
    assert wait(lambda: _log_lines(dpu) > lines + 3, timeout=15)
    # containerd never took the shim for dead.
    journal = dpu.check_output('journalctl -u containerd.service --since @%s --no-pager' % since)
    assert not [line for line in journal.splitlines() if 'shim disconnected' in line and cid in line]


def test_the_container_stops_and_goes_after_the_faults(hostnode, dpu, container):
    pid = _state(dpu)['Pid']
    dpu.check_output('docker stop -t 1 %s' % container)
    assert not _state(dpu)['Running']
    assert wait(lambda: not hostnode.file('/proc/%d' % pid).exists)
    dpu.check_output('docker rm %s' % container)
