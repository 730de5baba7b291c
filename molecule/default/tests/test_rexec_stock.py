"""rexec in the stock mode, least privilege: what each side may ask of the other."""
import importlib.util
import os

from conftest import REXEC, rexec

HERE = os.path.dirname(__file__)


def _patched_tests():
    """The patched scenario's certificate helpers, not a copy of them."""
    path = os.path.join(HERE, '..', '..', 'patched', 'tests', 'test_rexec_least_privilege.py')
    spec = importlib.util.spec_from_file_location('patched_least_privilege', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dpu_may_run_only_the_shim_and_ps_on_the_host(hostnode, dpu):
    assert rexec(dpu, '/usr/bin/ps -o comm= -p 1').stdout.strip() == 'systemd'
    for command in ('/bin/sh -c true', '/usr/sbin/runc list', '/usr/bin/kill -0 1',
                    '/usr/bin/containerd-shim-runc-v2 -namespace moby -address /tmp/evil.sock -publish-binary /bin/sh start'):
        assert rexec(dpu, command).rc == 126, command


def test_the_host_may_run_nothing_on_the_dpu(hostnode):
    for command in ('/bin/true', '/usr/sbin/dockerd --version', '/usr/bin/containerd --version'):
        assert rexec(hostnode, command).rc == 126, command


def test_ld_preload_sent_through_rexec_does_not_reach_the_command(dpu):
    # Set inside the client process only, after it started: a loader complaint
    # on stderr could then only come from the HOST's command.
    probe = ("import os, sys\n"
             "sys.path.insert(0, %r)\n"
             "from dpu_offload_rexec.client import client_main\n"
             "os.environ['LD_PRELOAD'] = '/nonexistent/dpu-offload-probe.so'\n"
             "client_main(['/usr/bin/ps', '-o', 'comm=', '-p', '1'])\n" % REXEC.install_dir)
    helpers = _patched_tests()
    helpers.put(dpu, '/tmp/dpu-offload-probe.py', probe.encode('ascii'))
    try:
        result = dpu.run("sh -c 'set -a; . %s; set +a; exec python3 /tmp/dpu-offload-probe.py'" % REXEC.client_env)
    finally:
        dpu.run('rm -f /tmp/dpu-offload-probe.py')
    assert result.rc == 0 and result.stdout.strip() == 'systemd', result.stderr
    assert 'preload' not in result.stderr.lower()


def test_another_pairs_dpu_certificate_is_refused_by_this_host(hostnode, dpu):
    helpers = _patched_tests()
    name = 'lab-dpu-of-another-pair'
    key_pem, cert_pem = helpers.another_pairs_certificate(name)
    helpers.put(dpu, '/tmp/other-pair.key', key_pem)
    helpers.put(dpu, '/tmp/other-pair.crt', cert_pem, mode='0644')
    try:
        result = rexec(dpu, '/usr/bin/ps -p 1', env='REXEC_TLS_CERT=/tmp/other-pair.crt REXEC_TLS_KEY=/tmp/other-pair.key')
    finally:
        dpu.run('rm -f /tmp/other-pair.key /tmp/other-pair.crt')
    assert result.rc == 255, result.stderr
    assert 'audit peer=cn:"%s"' % name in helpers.journal(hostnode)


def test_the_hosts_sftp_access_is_confined_to_the_shared_directories(hostnode):
    sftp = ('sftp -b - -P 2222 -i /etc/dpu-offload/sshfs/id_ed25519 -o UserKnownHostsFile=/etc/dpu-offload/sshfs/known_hosts '
            '-o StrictHostKeyChecking=yes root@172.30.77.20')
    listing = hostnode.run("printf 'ls /\\nls /etc\\n' | %s" % sftp)
    assert 'var' in listing.stdout and 'run' in listing.stdout
    assert 'passwd' not in listing.stdout and 'shadow' not in listing.stdout
    write = hostnode.run("printf 'put /etc/hostname /var/lib/docker/containers/dpu-offload-probe\\n' | %s" % sftp)
    assert write.rc != 0


# The HOST answers a shim's `start` (issue 31, point 4): a HOST shim that names the DPU's own containerd socket
# instead of its forwarded one would have the DPU's containerd dial that socket. Played by a HOST whose shim
# binary is replaced (bind-mounted over) with one that says so.
FOREIGN_SHIM = (b"#!/bin/sh\nfor arg; do last=$arg; done\n"
                b"[ \"$last\" = start ] && echo unix:///run/containerd/containerd.sock\nexit 0\n")


def test_a_host_shim_answering_another_dpu_socket_is_not_dialled(hostnode, dpu):
    helpers = _patched_tests()
    shim = '/usr/bin/containerd-shim-runc-v2'
    helpers.put(hostnode, '/var/tmp/dpu-offload-foreign-shim', FOREIGN_SHIM, mode='0755')
    hostnode.run_expect([0], 'mount --bind /var/tmp/dpu-offload-foreign-shim %s' % shim)
    try:
        result = dpu.run('docker run --rm --name dpu-offload-foreign localhost/dpu-offload/busybox:latest true')
    finally:
        hostnode.run('umount %s' % shim)
        hostnode.run('rm -f /var/tmp/dpu-offload-foreign-shim')
        dpu.run('docker rm -f dpu-offload-foreign')
    assert result.rc != 0
    assert 'not a shim socket in /run/containerd/s' in result.stderr, result.stderr
    # The DPU's containerd still answers, and the real shim works again.
    assert dpu.run('docker run --rm localhost/dpu-offload/busybox:latest true').rc == 0
