"""patched_docker: wrappers that cross through rexec, chrooted engine services."""
from conftest import ROOT, rexec


def test_remote_kill_reaches_the_host_and_signals_only_the_offload(hostnode, dpu):
    # rexec_server is no process of the offload: refused (126) by the HOST.
    pid = hostnode.check_output('systemctl show -p MainPID --value rexec.service')
    result = dpu.run('chroot %s /usr/local/bin/remote_kill -0 %s' % (ROOT, pid))
    assert result.rc == 126, result.stderr
    assert dpu.run('chroot %s /usr/local/bin/remote_kill -0 999999' % ROOT).rc == 126


def test_modprobe_in_the_root_answers_with_the_hosts_exit_status(hostnode, dpu):
    expected = hostnode.run('/usr/sbin/modprobe overlay').rc
    assert dpu.run('chroot %s /usr/sbin/modprobe overlay' % ROOT).rc == expected
    # The DPU's own modprobe is left alone outside the root.
    assert dpu.run('grep -qs "dpu.offload wrapper" /usr/sbin/modprobe').rc == 1


def test_containerd_shim_takes_only_containerds_argument_shape(dpu):
    result = dpu.run("chroot %s /usr/local/bin/containerd-shim '-bad flag with spaces'" % ROOT)
    assert result.rc == 126, result.stderr


def test_wrappers_use_exec_and_quoted_arguments(dpu):
    for wrapper in ('usr/local/bin/containerd-shim', 'usr/local/bin/remote_kill', 'usr/sbin/modprobe'):
        text = dpu.file('%s/%s' % (ROOT, wrapper)).content_string
        assert '"$@"' in text and '$*' not in text and '\nexec ' in text


def test_the_hosts_dockerd_wrapper_is_opt_in(hostnode):
    # offload_common_host_dockerd_wrapper is off by default: no wrapper, no diversion.
    assert 'dockerd' not in hostnode.check_output('dpkg-divert --list')
    dockerd = hostnode.file('/usr/sbin/dockerd')
    assert not dockerd.exists or 'dpu.offload wrapper' not in dockerd.content_string


def test_the_chrooted_engine_runs_and_docker_answers_on_the_dpu(dpu):
    for unit in ('dpu-offload-containerd.service', 'dpu-offload-dockerd.service'):
        assert dpu.service(unit).is_running, unit
    # local_proc exists only in the offload root: the daemon's / is that root.
    pid = dpu.check_output('systemctl show -p MainPID --value dpu-offload-dockerd.service')
    assert dpu.file('/proc/%s/root/local_proc' % pid).is_directory
    assert not dpu.file('/local_proc').exists
    version = dpu.run('docker version --format "{{.Server.Version}}"')
    assert version.rc == 0 and version.stdout.strip(), version.stderr


def test_the_host_may_not_run_the_dpus_dockerd(hostnode):
    assert rexec(hostnode, '/usr/sbin/dockerd --version').rc == 126
