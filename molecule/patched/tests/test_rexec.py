"""rexec across the pair: mutual TLS, the allowlist, the audit trail."""
import os

from conftest import REXEC, rexec

FOREIGN_CERT = r'''
import datetime, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab-dpu")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256()))
open("/tmp/foreign.key", "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
open("/tmp/foreign.crt", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
'''


# modprobe with a plain module name is allowed; its own exit status (this
# lab's kernel has no modules) proves the request ran on the HOST.
ALLOWED = '/usr/sbin/modprobe overlay'


def test_dpu_runs_an_allowed_command_on_the_host(hostnode, dpu):
    expected = hostnode.run(ALLOWED).rc
    result = rexec(dpu, ALLOWED)
    assert result.rc == expected and result.rc not in (126, 127, 255), result.stderr


def test_host_reaches_the_dpu_server_through_tls_and_is_allowed_no_shell(hostnode):
    # 126 comes from the DPU's server after TLS and the peer check.
    result = rexec(hostnode, '/bin/sh -c true')
    assert result.rc == 126, result.stderr


def test_a_command_outside_the_allowlist_gets_126(dpu):
    result = rexec(dpu, '/bin/cat /etc/shadow')
    assert result.rc == 126
    assert 'allowlist' in result.stderr


def test_a_client_with_a_certificate_from_another_ca_is_refused(dpu, hostnode):
    dpu.run_expect([0], "python3 -c '%s'" % FOREIGN_CERT.replace("'", '"'))
    result = rexec(dpu, '/usr/bin/kill -0 1', env='REXEC_TLS_CERT=/tmp/foreign.crt REXEC_TLS_KEY=/tmp/foreign.key')
    dpu.run('rm -f /tmp/foreign.key /tmp/foreign.crt')
    assert result.rc == 255, result.stderr
    assert result.stderr.startswith('rexec: ')
    # The server keeps serving after the refusal.
    assert rexec(dpu, ALLOWED).rc not in (126, 127, 255)


def test_a_plain_tcp_client_is_refused(dpu):
    result = dpu.run("sh -c '. %s; CMD_NET_ADDR=$CMD_NET_ADDR REXEC_INSECURE=1 %s /usr/bin/kill -0 1'" % (REXEC.client_env, REXEC.client))
    assert result.rc == 255


def test_server_listens_on_the_interconnect_address_only(hostnode):
    listening = hostnode.check_output('ss -Hltn sport = :7777')
    assert '172.30.77.10:7777' in listening
    assert '0.0.0.0:7777' not in listening


def test_private_key_is_root_only(hostnode, dpu):
    for machine in (hostnode, dpu):
        key = machine.file(os.path.join(REXEC.config_dir, 'tls', 'node.key'))
        assert key.mode == 0o600 and key.user == 'root'


def test_every_request_is_audited(hostnode, dpu):
    rexec(dpu, ALLOWED)
    journal = hostnode.check_output('journalctl -u rexec.service --no-pager -n 20')
    assert 'audit peer=cn:"lab-dpu"' in journal
    assert '"/usr/sbin/modprobe", "overlay"' in journal
