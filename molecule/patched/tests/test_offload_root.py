"""The DPU's offload root: the HOST's directories, /proc and cgroups (sshfs transport)."""
import pytest

from conftest import ROOT, shared_checks, shared_directories

SHARED = shared_directories()


def _mountinfo(machine):
    return [entry.mountpoint for entry in shared_checks.mounts(machine)]


@pytest.mark.parametrize('directory', SHARED)
def test_a_file_the_host_writes_appears_on_the_dpu_and_back(hostnode, dpu, directory):
    shared_checks.file_both_ways(hostnode, dpu, ROOT, directory)


def test_the_dpus_proc_in_the_root_is_the_hosts(hostnode, dpu):
    host_view = hostnode.file('/proc/1/mountinfo').content_string
    dpu_view = dpu.file(ROOT + '/proc/1/mountinfo').content_string
    assert dpu_view == host_view
    assert dpu_view != dpu.file('/proc/1/mountinfo').content_string
    assert dpu.file(ROOT + '/local_proc/1/mountinfo').content_string == dpu.file('/proc/1/mountinfo').content_string


def test_the_hosts_processes_show_in_the_root(hostnode, dpu):
    rexec_pid = hostnode.check_output('systemctl show -p MainPID --value rexec.service')
    assert dpu.file('%s/proc/%s/comm' % (ROOT, rexec_pid)).content_string.strip() in ('rexec_server', 'python3')


def test_every_cgroup_controller_is_mounted(dpu):
    enabled = set()
    for line in dpu.file('/proc/cgroups').content_string.splitlines()[1:]:
        name, _hierarchy, _count, on = line.split()
        if on == '1':
            enabled.add(name)
    mounted = set()
    for point in _mountinfo(dpu):
        if point.startswith(ROOT + '/sys/fs/cgroup/'):
            mounted.update(point.rsplit('/', 1)[1].split(','))
    assert enabled and enabled <= mounted


def test_mounts_come_in_the_guides_order(dpu):
    points = [p for p in _mountinfo(dpu) if p == ROOT or p.startswith(ROOT + '/')]
    assert points[0] == ROOT
    assert points.index(ROOT + '/local_proc') < points.index(ROOT + '/proc')
    # The HOST's /sys is stacked over the DPU's sysfs, as the guide does.
    sys_layers = [i for i, p in enumerate(points) if p == ROOT + '/sys']
    assert len(sys_layers) == 2


def test_the_sftp_endpoint_only_speaks_sftp_to_the_dpu(hostnode, dpu):
    config = hostnode.file('/etc/dpu-offload/sftp/sshd_config').content_string
    assert 'ForceCommand internal-sftp' in config and 'ListenAddress 172.30.77.10' in config
    keys = hostnode.file('/etc/dpu-offload/sftp/authorized_keys').content_string
    assert keys.startswith('restrict,from="172.30.77.20"')
    assert dpu.file('/etc/dpu-offload/sshfs/id_ed25519').mode == 0o600
    # A shell through that key is refused: the endpoint forces SFTP.
    shell = dpu.run('ssh -p 2222 -i /etc/dpu-offload/sshfs/id_ed25519 -o UserKnownHostsFile=/etc/dpu-offload/sshfs/known_hosts '
                    '-o BatchMode=yes root@172.30.77.10 echo pwned')
    assert 'pwned' not in shell.stdout
