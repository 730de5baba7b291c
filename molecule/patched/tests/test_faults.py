"""Faults of the patched mode's management plane that it recovers from by itself.

The patched engine runs chrooted in the offload root on the DPU; what
crosses the pair is rexec (the wrappers in the root) and the root's shared
directories (sshfs here, the lab's kernel has no qtfs). Each fault below is
followed by the same check as before it: the wrappers reach the HOST, the
root sees the HOST's files, docker answers.
"""
import time

import pytest

from conftest import ROOT, shared_directories

PROBE = 'molecule-fault-probe'


def _main_pid(machine, unit):
    return int(machine.check_output('systemctl show -p MainPID --value %s' % unit))


def _wait(predicate, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


def _wrapper_reaches_the_host(hostnode, dpu):
    # modprobe in the root is the wrapper: the HOST's exit status comes back.
    return dpu.run('timeout 20 chroot %s /usr/sbin/modprobe overlay' % ROOT).rc == \
        hostnode.run('/usr/sbin/modprobe overlay').rc


def _root_sees(hostnode, dpu, directory, word):
    hostnode.check_output('echo %s > %s/%s' % (word, directory, PROBE))
    try:
        return _wait(lambda: dpu.run('timeout 10 cat %s%s/%s' % (ROOT, directory, PROBE)).stdout == word + '\n', 30)
    finally:
        hostnode.run('rm -f %s/%s' % (directory, PROBE))


def _docker_answers(dpu):
    return dpu.run('timeout 20 docker version --format "{{.Server.Version}}"').rc == 0


@pytest.mark.parametrize('side', ['hostnode', 'dpu'])
def test_a_killed_rexec_server_comes_back_by_itself(request, side, hostnode, dpu):
    machine = request.getfixturevalue(side)
    server = _main_pid(machine, 'rexec.service')
    machine.check_output('kill -9 %d' % server)
    assert _wait(lambda: machine.service('rexec.service').is_running
                 and _main_pid(machine, 'rexec.service') not in (0, server), 20)
    assert _wait(lambda: _wrapper_reaches_the_host(hostnode, dpu), 20)


def test_a_restarted_engine_answers_again(dpu):
    dpu.check_output('systemctl restart dpu-offload-containerd.service dpu-offload-dockerd.service')
    assert _wait(lambda: _docker_answers(dpu), 60)


def test_a_restarted_sftp_endpoint_does_not_cost_the_root_its_mounts(hostnode, dpu):
    # The HOST's end of the sshfs mounts goes away and comes back; sshfs
    # reconnects on the next access, with no remount.
    directory = shared_directories()[0]
    assert _root_sees(hostnode, dpu, directory, 'before')
    hostnode.check_output('systemctl restart dpu-offload-sftp.service')
    assert _root_sees(hostnode, dpu, directory, 'after')
    assert _docker_answers(dpu)
