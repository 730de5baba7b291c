"""The rexec role's check of a node's signing request (roles/rexec/tasks/csr_check.yml), run on the controller
with stand-in nodes whose requests a tenant's root has tampered with: each is refused, with a one-line message
naming the node and what was wrong; the honest node goes on to be signed."""
import ipaddress
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

x509 = pytest.importorskip('cryptography.x509')
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# node -> (its address, the names its request asks for, extra extensions); the CN is the first DNS name.
NODES = {
    'good-host': ('192.0.2.10', ['good-host', '192.0.2.10'], []),
    # another pair's DPU: its name and address, asked for with this node's key
    'renamed-host': ('192.0.2.20', ['other-dpu', '192.0.2.21'], []),
    'extra-host': ('192.0.2.30', ['extra-host', '192.0.2.30', 'other-dpu'], []),
    'ca-host': ('192.0.2.40', ['ca-host', '192.0.2.40'], [x509.BasicConstraints(ca=True, path_length=None)]),
}


def _request(key, names, extra):
    """A PEM request as the role's openssl_csr_pipe task makes it, with the tampering of the case."""
    general = [x509.IPAddress(ipaddress.ip_address(name)) if name[0].isdigit() else x509.DNSName(name) for name in names]
    builder = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
               .add_extension(x509.SubjectAlternativeName(general), critical=False)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    for extension in extra:
        builder = builder.add_extension(extension, critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _sha256(key):
    """The key's fingerprint as community.crypto.openssl_privatekey returns it: sha256 of its SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return ':'.join('%02x' % byte for byte in digest.finalize())


def _play(tmp_path):
    hosts = {}
    for node, (address, names, extra) in NODES.items():
        key = ec.generate_private_key(ec.SECP256R1())
        (tmp_path / (node + '.csr')).write_text(_request(key, names, extra))
        hosts[node] = {'rexec_listen_address': address, 'csr_file': str(tmp_path / (node + '.csr')), 'key_sha256': _sha256(key)}
    inventory = {'all': {'hosts': hosts, 'vars': {'ansible_connection': 'local',
                                                  'ansible_python_interpreter': '{{ ansible_playbook_python }}'}}}
    play = [{'name': 'Sign what the nodes asked for', 'hosts': 'all', 'gather_facts': False,
             'vars': {'__rexec_csr': {'csr': "{{ lookup('ansible.builtin.file', csr_file) }}"},
                      '__rexec_key': {'fingerprint': {'sha256': '{{ key_sha256 }}'}}},
             'tasks': [{'name': 'The role vars', 'ansible.builtin.include_vars': str(ROOT / 'roles/rexec/vars/main.yml')},
                       {'name': 'The check', 'ansible.builtin.include_tasks': str(ROOT / 'roles/rexec/tasks/csr_check.yml')},
                       {'name': 'Signed', 'ansible.builtin.debug': {'msg': 'signed {{ inventory_hostname }}'}}]}]
    (tmp_path / 'hosts.yml').write_text(yaml.safe_dump(inventory))
    (tmp_path / 'play.yml').write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default', ANSIBLE_CALLBACK_RESULT_FORMAT='json')
    playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    return subprocess.run([playbook, '-i', str(tmp_path / 'hosts.yml'), str(tmp_path / 'play.yml')],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_tampered_requests_are_refused_and_the_honest_one_is_signed(tmp_path):
    result = _play(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    recap = {line.split()[0]: line for line in output.split('PLAY RECAP')[-1].splitlines() if ':' in line}
    assert 'failed=0' in recap['good-host'] and 'signed good-host' in output, output[-3000:]
    messages = {line.split('[', 1)[1].split(']', 1)[0]: line for line in output.splitlines()
                if line.startswith('fatal: [')}
    assert sorted(messages) == ['ca-host', 'extra-host', 'renamed-host'], output[-3000:]
    prefix = '"msg": "rexec: refusing to sign the certificate request of %s: '
    assert (prefix % 'renamed-host' + 'subject commonName=other-dpu, not commonName=renamed-host alone; '
            'subjectAltName DNS:other-dpu, IP:192.0.2.21: not only this node\'s names (DNS:renamed-host, IP:192.0.2.20)"'
            in messages['renamed-host']), messages['renamed-host']
    assert (prefix % 'extra-host' + 'subjectAltName DNS:extra-host, DNS:other-dpu, IP:192.0.2.30: not only this '
            'node\'s names (DNS:extra-host, IP:192.0.2.30)"' in messages['extra-host']), messages['extra-host']
    assert (prefix % 'ca-host' + 'it asks to be a CA (basicConstraints CA:TRUE)"' in messages['ca-host']), messages['ca-host']
    for node in messages:
        assert 'signed %s' % node not in output


def test_the_role_checks_the_request_before_the_ca_signs_it():
    tasks = yaml.safe_load((ROOT / 'roles/rexec/tasks/tls.yml').read_text())
    block = next(task['block'] for task in tasks if 'block' in task)

    def index(action, argument=None):
        found = [i for i, task in enumerate(block) if action in task and (argument is None or task[action] == argument)]
        assert len(found) == 1, (action, block)
        return found[0]

    request = index('community.crypto.openssl_csr_pipe')
    check = index('ansible.builtin.import_tasks', 'csr_check.yml')
    sign = index('community.crypto.x509_certificate_pipe')
    assert request < check < sign
    # the request asks for what the check holds it to
    csr = block[request]['community.crypto.openssl_csr_pipe']
    assert (csr['common_name'], csr['subject_alt_name']) == ('{{ inventory_hostname }}', '{{ __rexec_cert_names }}')
    assert (csr['key_usage'], csr['extended_key_usage']) == ('{{ __rexec_key_usage }}', '{{ __rexec_extended_key_usage }}')
    assert block[sign]['community.crypto.x509_certificate_pipe']['csr_content'] == '{{ __rexec_csr.csr }}'
