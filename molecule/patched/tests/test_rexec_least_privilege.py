"""rexec least privilege across the pair (issue 13): peers, environment, arguments."""
import base64
import datetime
import os
import time

import pytest

from conftest import REXEC, ROOT, rexec

PKI = os.path.expanduser(os.environ.get('REXEC_PKI_DIR', '~/.dpu-offload/pki'))
LIB = REXEC.install_dir


def journal(machine, lines=200):
    return machine.check_output('journalctl -u rexec.service --no-pager -n %d' % lines)


def put(machine, path, data, mode='0600'):
    encoded = base64.b64encode(data).decode('ascii')
    machine.run_expect([0], "printf %%s '%s' | base64 -d > %s && chmod %s %s" % (encoded, path, mode, path))


def another_pairs_certificate(name):
    """Key and certificate for a node that is not in this pair, issued by the lab's own CA (on the controller)."""
    x509 = pytest.importorskip('cryptography.x509')
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    try:
        with open(os.path.join(PKI, 'ca.key'), 'rb') as handle:
            ca_key = serialization.load_pem_private_key(handle.read(), password=None)
        with open(os.path.join(PKI, 'ca.crt'), 'rb') as handle:
            ca_cert = x509.load_pem_x509_certificate(handle.read())
    except OSError as exc:
        pytest.skip('the lab CA is not on this controller (%s)' % exc)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def test_another_pairs_dpu_certificate_is_refused_by_this_host(hostnode, dpu):
    name = 'lab-dpu-of-another-pair'
    key_pem, cert_pem = another_pairs_certificate(name)
    put(dpu, '/tmp/other-pair.key', key_pem)
    put(dpu, '/tmp/other-pair.crt', cert_pem, mode='0644')
    try:
        result = rexec(dpu, '/usr/bin/kill -0 1',
                       env='REXEC_TLS_CERT=/tmp/other-pair.crt REXEC_TLS_KEY=/tmp/other-pair.key')
    finally:
        dpu.run('rm -f /tmp/other-pair.key /tmp/other-pair.crt')
    assert result.rc == 255, result.stderr
    assert 'REXEC_TLS_PEERS' in result.stderr
    assert 'audit peer=cn:"%s"' % name in journal(hostnode)
    assert 'status=refused:peer(255)' in journal(hostnode)
    # The pair's own DPU still gets in (a refusal by the allowlist proves TLS and the peer name passed).
    assert rexec(dpu, '/usr/bin/kill -0 1').rc == 126


def test_ld_preload_sent_through_rexec_does_not_reach_the_command(dpu):
    # The client sends its whole environment. A missing preload object makes
    # ld.so complain on the command's stderr, which would come back here; the
    # client process itself starts without it, so any complaint is the HOST's.
    probe = ("import os, sys\n"
             "sys.path.insert(0, %r)\n"
             "from dpu_offload_rexec.client import client_main\n"
             "os.environ['LD_PRELOAD'] = '/nonexistent/dpu-offload-probe.so'\n"
             "os.environ['BASH_ENV'] = '/nonexistent/probe.sh'\n"
             "client_main(['/usr/sbin/modprobe', 'overlay'])\n" % LIB)
    put(dpu, '/tmp/dpu-offload-probe.py', probe.encode('ascii'))
    try:
        result = dpu.run("sh -c 'set -a; . %s; set +a; exec python3 /tmp/dpu-offload-probe.py'" % REXEC.client_env)
    finally:
        dpu.run('rm -f /tmp/dpu-offload-probe.py')
    assert result.rc not in (126, 127, 255), result.stderr
    assert 'preload' not in result.stderr.lower() and 'dpu-offload-probe' not in result.stderr


def test_remote_kill_of_a_process_outside_the_offload_is_refused(hostnode, dpu):
    unit = 'dpu-offload-bystander-%d' % os.getpid()
    hostnode.run_expect([0], 'systemd-run --unit=%s --quiet sleep 600' % unit)
    try:
        pid = ''
        for _attempt in range(50):
            pid = hostnode.check_output('systemctl show -p MainPID --value %s' % unit).strip()
            if pid not in ('', '0'):
                break
            time.sleep(0.1)
        result = dpu.run('chroot %s /usr/local/bin/remote_kill -KILL %s' % (ROOT, pid))
        assert result.rc == 126, result.stderr
        assert 'arguments' in result.stderr
        time.sleep(0.5)
        assert hostnode.check_output('systemctl is-active %s || true' % unit).strip() == 'active'
        log = journal(hostnode)
        assert '"/usr/bin/kill", "-KILL", "%s"' % pid in log
        assert 'status=refused:arguments(126)' in log
        # Never pid 1, nor everything, nor a process group.
        for args in ('-0 1', '-0 -1', '-0 -- -1', '-s 0 0'):
            assert dpu.run('chroot %s /usr/local/bin/remote_kill %s' % (ROOT, args)).rc == 126, args
    finally:
        hostnode.run('systemctl stop %s' % unit)


def test_modprobe_takes_no_options(dpu):
    result = dpu.run('chroot %s /usr/sbin/modprobe -C /var/lib/docker/evil.conf overlay' % ROOT)
    assert result.rc == 126, result.stderr


def test_the_dpu_runs_nothing_for_the_host_beyond_containerd_publish(hostnode):
    # dockerd on the DPU is opt-in (offload_common_host_dockerd_wrapper), containerd takes `publish` only.
    assert rexec(hostnode, '/usr/bin/containerd --version').rc == 126
    for dockerd in ('/usr/bin/dockerd', '/usr/sbin/dockerd'):
        assert rexec(hostnode, '%s --version' % dockerd).rc in (126, 127), dockerd
