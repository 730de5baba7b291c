"""Faults of the management plane that the HOST's containers outlive.

- rexec_server on either machine is killed (SIGKILL of the server process,
  as an OOM kill or a crash would): systemd starts it again, and a running
  docker container keeps its HOST pid, its log and its management. The
  shims' connections (DPU -> HOST) and their event connections (HOST -> DPU)
  cross the pair through rexec; the forwarders keep containerd's and the
  shims' ends open while the link is down and rejoin them (rexec_forward
  --resume-ttrpc), so containerd never takes a shim for dead.
- dockerd or containerd on the DPU restarts: the container keeps its pid and
  its management (live-restore; containerd reloads the shims, whose sockets
  the forwarder keeps).
- The link between the two is cut for a minute (the DPU's container leaves
  the lab network and comes back with its address): a container that writes
  to stdout all the time keeps writing (the HOST reads its output through a
  bounded spool that drops whole lines, counted), and afterwards, with no
  command, docker manages it and starts new ones.

With CHAOS_REPORT=FILE each fault adds a row (fault, containers kept, time
to recovery, lines dropped) to FILE, which `make chaos` prints as a table.
"""
import json
import os
import re
import subprocess
import time

import pytest
import yaml

from conftest import docker_container, rexec, wait

IMAGE = 'localhost/dpu-offload/busybox:latest'
NAME = 'fault-proof'
LOOP = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"


def _state(dpu):
    return json.loads(dpu.check_output('docker inspect %s' % NAME))[0]['State']


def _main_pid(machine, unit):
    return int(machine.check_output('systemctl show -p MainPID --value %s' % unit))


def _log_lines(dpu):
    return len(dpu.run('docker logs %s' % NAME).stdout.splitlines())


def report(fault, kept, recovery, dropped):
    """One row of `make chaos`'s table (only when CHAOS_REPORT names a file)."""
    path = os.environ.get('CHAOS_REPORT')
    if path:
        with open(path, 'a') as handle:
            handle.write(json.dumps({'fault': fault, 'kept': kept, 'recovery_s': round(recovery, 1), 'dropped_lines': dropped}) + '\n')


def _exec_works(dpu, name):
    return dpu.run('timeout 15 docker exec %s echo alive' % name).stdout == 'alive\n'


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
    killed = time.monotonic()
    assert wait(lambda: machine.run('systemctl is-active rexec.service').stdout.strip() == 'active'
                and _main_pid(machine, 'rexec.service') not in (0, server), timeout=20)
    # Still running, same HOST process, and managed: exec, logs that keep coming.
    assert wait(lambda: _exec_works(dpu, container), timeout=20)
    recovery = time.monotonic() - killed
    state = _state(dpu)
    assert state['Running'] and state['Pid'] == pid and hostnode.file('/proc/%d' % pid).exists
    lines = _log_lines(dpu)
    assert wait(lambda: _log_lines(dpu) > lines + 3, timeout=15)
    # containerd never took the shim for dead.
    journal = dpu.check_output('journalctl -u containerd.service --since @%s --no-pager' % since)
    assert not [line for line in journal.splitlines() if 'shim disconnected' in line and cid in line]
    report('rexec_server SIGKILL (%s)' % ('HOST' if side == 'hostnode' else 'DPU'), '1/1', recovery, 0)


@pytest.mark.parametrize('unit', ['docker.service', 'containerd.service'])
def test_a_restarted_engine_keeps_the_container_running_and_managed(unit, hostnode, dpu, container):
    pid = _state(dpu)['Pid']
    restarted = time.monotonic()
    dpu.check_output('systemctl restart %s' % unit)
    assert wait(lambda: _exec_works(dpu, container), timeout=60)
    recovery = time.monotonic() - restarted
    state = _state(dpu)
    assert state['Running'] and state['Pid'] == pid and hostnode.file('/proc/%d' % pid).exists
    lines = _log_lines(dpu)
    assert wait(lambda: _log_lines(dpu) > lines + 3, timeout=15)
    report('%s restart (DPU)' % unit.split('.')[0], '1/1', recovery, 0)


def test_the_container_stops_and_goes_after_the_faults(hostnode, dpu, container):
    pid = _state(dpu)['Pid']
    dpu.check_output('docker stop -t 1 %s' % container)
    assert not _state(dpu)['Running']
    assert wait(lambda: not hostnode.file('/proc/%d' % pid).exists)
    dpu.check_output('docker rm %s' % container)


# --------------------------------------------------------------------------
# The link is cut


CUT = 60            # seconds, as the faults issue asks
RECOVERY = 120      # seconds after the link is back by which docker must manage the containers again
CHATTY = 'fault-chatty'
# Only shell builtins: with the sshfs transport the containers' files are on
# the DPU, so a program started while the link is down waits for it; the
# output never does. `read -t` on an open, silent stdin paces the loop.
CHATTY_LOOP = ('i=0; pad=%s; while :; do echo "line $i $pad"; i=$((i+1)); read -t 0.002 x; done' % ('x' * 400))
LAB_SETTINGS = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'lab', 'settings.yml')


def _wchar(hostnode, pid):
    """Bytes the HOST process has written so far (/proc/PID/io)."""
    return int(re.search(r'^wchar: (\d+)$', hostnode.check_output('cat /proc/%d/io' % pid), re.M).group(1))


class Link:
    """The DPU's lab container off and back on the lab network, with its address."""

    def __init__(self, dpu):
        with open(LAB_SETTINGS) as handle:
            self.network = yaml.safe_load(handle)['lab_network']
        variables = dpu.ansible.get_variables()
        self.container = variables['inventory_hostname']
        self.address = variables['dpu_offload_address']
        self.down = False

    def cut(self):
        subprocess.run(['docker', 'network', 'disconnect', self.network, self.container], check=True)
        self.down = True

    def restore(self):
        if self.down:
            subprocess.run(['docker', 'network', 'connect', '--ip', self.address, self.network, self.container], check=True)
            self.down = False


@pytest.fixture
def link(dpu):
    link = Link(dpu)
    yield link
    link.restore()


@pytest.fixture
def chatty(dpu):
    dpu.run('docker rm -f %s' % CHATTY)
    # -i: stdin stays open (and silent) for the loop's `read -t`.
    dpu.check_output("docker run -d -i --name %s %s sh -c '%s'" % (CHATTY, IMAGE, CHATTY_LOOP))
    yield CHATTY
    dpu.run('docker rm -f %s' % CHATTY)


def _log_gaps(dpu, name):
    """(lines, lines missing between them) of the chatty container's docker log, counted on the DPU.

    Every line must be whole and numbered above the one before."""
    script = ('docker logs %s | awk \'{ if ($1 != "line" || $3 !~ /^x+$/ || (NR > 1 && $2 <= last)) bad++; '
              'else if (NR > 1) missing += $2 - last - 1; last = $2 } END { print NR, missing + 0, bad + 0 }\'' % name)
    lines, missing, bad = (int(word) for word in dpu.check_output(script).split())
    assert bad == 0, '%d torn or out-of-order lines' % bad
    return lines, missing


def test_a_cut_link_neither_stops_nor_blocks_a_chatty_container(hostnode, dpu, link, chatty):
    inspect = json.loads(dpu.check_output('docker inspect %s' % chatty))[0]
    pid, cid = inspect['State']['Pid'], inspect['Id']
    since = hostnode.check_output('date +%s')
    assert wait(lambda: _wchar(hostnode, pid) > 0, timeout=10)
    link.cut()
    cut_at = time.monotonic()
    time.sleep(10)
    before = _wchar(hostnode, pid)
    time.sleep(CUT - 15)
    written = _wchar(hostnode, pid) - before
    # Not blocked: it wrote far more than the fifo, the session and the spool could have held.
    assert written > 4 << 20, '%d bytes written in %d s of the cut' % (written, CUT - 15)
    assert hostnode.file('/proc/%d' % pid).exists
    time.sleep(max(0.0, CUT - (time.monotonic() - cut_at)))
    link.restore()
    back = time.monotonic()
    # By themselves, within RECOVERY: docker manages the old container and starts new ones on the HOST.
    assert wait(lambda: _exec_works(dpu, chatty), timeout=RECOVERY), 'docker exec still fails %d s after the link came back' % RECOVERY
    recovery = time.monotonic() - back
    assert dpu.run('timeout 60 docker run --rm %s echo fresh' % IMAGE).stdout == 'fresh\n'
    # The shared mounts answer again; rexec works both ways (the DPU runs nothing for the HOST: a refusal,
    # 126, is the DPU's server answering an authenticated HOST).
    assert hostnode.run('timeout 20 ls /run/containerd/io.containerd.runtime.v2.task/moby/%s' % cid).rc == 0
    assert rexec(dpu, '/usr/bin/ps -o comm= -p 1').stdout.strip() == 'systemd'
    assert rexec(hostnode, '/usr/bin/true').rc == 126
    state = json.loads(dpu.check_output('docker inspect %s' % chatty))[0]['State']
    assert state['Running'] and state['Pid'] == pid
    # What was dropped is what the HOST counted: every burst of drops that has ended (the spool takes
    # bytes again) is a gap in docker's log of exactly the lines it logged.
    burst = re.compile(r'/run/docker/containerd/%s/init-stdout: the peer takes this fifo.s bytes again; '
                       r'\d+ bytes, (\d+) lines were dropped' % cid)
    tally = {}

    def settled():
        journal = hostnode.check_output('journalctl -u rexec.service --since @%s --no-pager' % since)
        tally['counted'] = sum(int(count) for count in burst.findall(journal))
        tally['lines'], tally['missing'] = _log_gaps(dpu, chatty)
        return tally['counted'] > 0 and tally['missing'] == tally['counted']

    assert wait(settled, timeout=60), tally
    journal = dpu.check_output('journalctl -u containerd.service --since @%s --no-pager' % since)
    assert not [line for line in journal.splitlines() if 'shim disconnected' in line and cid in line]
    report('link cut %d s' % CUT, '1/1', recovery, tally['counted'])
