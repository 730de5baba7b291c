"""patched_docker: wrappers that cross through rexec, chrooted engine services."""
from conftest import rexec

ROOT = '/another_rootfs'


def test_remote_kill_reaches_a_host_process(hostnode, dpu):
    pid = hostnode.check_output('systemctl show -p MainPID --value rexec.service')
    result = dpu.run('chroot %s /usr/local/bin/remote_kill -0 %s' % (ROOT, pid))
    assert result.rc == 0, result.stderr
    # A pid that exists only on the DPU is not found on the HOST.
    missing = dpu.run('chroot %s /usr/local/bin/remote_kill -0 999999' % ROOT)
    assert missing.rc == 1


def test_modprobe_in_the_root_answers_with_the_hosts_exit_status(hostnode, dpu):
    expected = hostnode.run('/usr/sbin/modprobe --dry-run overlay').rc
    assert dpu.run('chroot %s /usr/sbin/modprobe --dry-run overlay' % ROOT).rc == expected
    # The DPU's own modprobe is left alone outside the root.
    assert dpu.run('grep -qs "dpu.offload wrapper" /usr/sbin/modprobe').rc == 1


def test_containerd_shim_gets_its_arguments_intact(hostnode, dpu):
    # The HOST's containerd-shim rejects an unknown flag and names it: the
    # argument with spaces must arrive as one word.
    result = dpu.run("chroot %s /usr/local/bin/containerd-shim '-bad flag with spaces'" % ROOT)
    assert 'bad flag with spaces' in result.stderr
    assert result.rc not in (126, 127, 255)


def test_wrappers_use_exec_and_quoted_arguments(dpu):
    for wrapper in ('usr/local/bin/containerd-shim', 'usr/local/bin/remote_kill', 'usr/sbin/modprobe'):
        text = dpu.file('%s/%s' % (ROOT, wrapper)).content_string
        assert '"$@"' in text and '$*' not in text and '\nexec ' in text


def test_the_hosts_dockerd_is_a_wrapper_and_the_original_is_diverted(hostnode):
    diversions = hostnode.check_output('dpkg-divert --list')
    wrapper = hostnode.file('/usr/sbin/dockerd')
    assert 'dpu.offload wrapper' in wrapper.content_string
    if hostnode.file('/usr/sbin/dockerd.dpu-offload-orig').exists:
        assert '/usr/sbin/dockerd' in diversions


def test_the_chrooted_engine_runs_and_docker_answers_on_the_dpu(dpu):
    for unit in ('dpu-offload-containerd.service', 'dpu-offload-dockerd.service'):
        assert dpu.service(unit).is_running, unit
    # local_proc exists only in the offload root: the daemon's / is that root.
    pid = dpu.check_output('systemctl show -p MainPID --value dpu-offload-dockerd.service')
    assert dpu.file('/proc/%s/root/local_proc' % pid).is_directory
    assert not dpu.file('/local_proc').exists
    version = dpu.run('docker version --format "{{.Server.Version}}"')
    assert version.rc == 0 and version.stdout.strip(), version.stderr


def test_the_host_reaches_the_dpus_dockerd_through_its_wrapper(hostnode):
    result = rexec(hostnode, '/usr/sbin/dockerd --version')
    assert result.rc == 0 and 'Docker version' in result.stdout
