# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rexec_csr_problems on real signing requests, made with cryptography as openssl_csr_pipe makes them, then tampered with."""
from __future__ import annotations

import base64
import ipaddress

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.rexec_csr_problems import rexec_csr_problems

x509 = pytest.importorskip('cryptography.x509')
csr_info = pytest.importorskip('ansible_collections.community.crypto.plugins.filter.openssl_csr_info')
key_info = pytest.importorskip('ansible_collections.community.crypto.plugins.filter.openssl_privatekey_info')

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402 pylint: disable=wrong-import-position
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402 pylint: disable=wrong-import-position
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402 pylint: disable=wrong-import-position

NODE = 'lab-host'
NAMES = ('DNS:lab-host', 'IP:192.0.2.10')          # the role's __rexec_cert_names
USAGE = ['digitalSignature']
EXTENDED = ['serverAuth', 'clientAuth']


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _fingerprint(key):
    """sha256 of the key's public part, as community.crypto.openssl_privatekey returns it to the controller."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key_info.openssl_privatekey_info_filter(pem.decode())['public_key_fingerprints']['sha256']


def _names(names):
    out = []
    for name in names:
        kind, value = name.split(':', 1)
        out.append(x509.DNSName(value) if kind == 'DNS' else x509.IPAddress(ipaddress.ip_address(value)))
    return out


def _usage(**chosen):
    flags = dict(digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)
    flags.update(chosen)
    return x509.KeyUsage(**flags)


def make_csr(key, subject=((NameOID.COMMON_NAME, NODE),), names=NAMES, usage=None, usage_critical=True,
             extended=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH), extra=()):
    """A PEM request: by default what the rexec role asks a node for (roles/rexec/tasks/tls.yml)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(oid, value) for oid, value in subject]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(_names(names)), critical=False)
    builder = builder.add_extension(usage or _usage(digital_signature=True), critical=usage_critical)
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended)), critical=False)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def problems(csr, key, names=NAMES, as_info=True):
    info = csr_info.openssl_csr_info_filter(csr) if as_info else csr
    return rexec_csr_problems(info, NODE, names, _fingerprint(key), key_usage=USAGE, extended_key_usage=EXTENDED)


@pytest.fixture(scope='module')
def key():
    return _key()


def test_the_request_the_role_makes_may_be_signed(key):
    csr = make_csr(key)
    assert problems(csr, key) == []
    assert problems(csr, key, as_info=False) == []             # the PEM straight from the node
    # basicConstraints CA:FALSE asks for nothing more
    assert problems(make_csr(key, extra=[(x509.BasicConstraints(ca=False, path_length=None), True)]), key) == []


def test_ipv6_names_compare_in_any_spelling(key):
    names = ['DNS:lab-host', 'IP:2001:db8::a']
    assert problems(make_csr(key, names=names), key, names=['DNS:lab-host', 'IP:2001:0DB8:0:0::A']) == []


def test_another_nodes_name_is_refused(key):
    # The tenant's root asks for the DPU of another pair, with its own key.
    csr = make_csr(key, subject=((NameOID.COMMON_NAME, 'other-dpu'),), names=['DNS:other-dpu', 'IP:192.0.2.21'])
    found = problems(csr, key)
    assert any(p == 'subject commonName=other-dpu, not commonName=lab-host alone' for p in found), found
    assert any('subjectAltName DNS:other-dpu, IP:192.0.2.21' in p for p in found), found


def test_an_extra_name_is_refused(key):
    found = problems(make_csr(key, names=NAMES + ('DNS:other-dpu',)), key)
    assert found == ["subjectAltName DNS:lab-host, DNS:other-dpu, IP:192.0.2.10: not only this node's names "
                     "(DNS:lab-host, IP:192.0.2.10)"]
    # the CN alone, or the CN of another node next to ours
    assert problems(make_csr(key, subject=((NameOID.COMMON_NAME, NODE), (NameOID.COMMON_NAME, 'other-dpu'))), key)
    assert problems(make_csr(key, subject=((NameOID.COMMON_NAME, NODE), (NameOID.ORGANIZATION_NAME, 'x'))), key)


def test_a_missing_name_is_refused(key):
    assert problems(make_csr(key, names=['DNS:lab-host']), key) == ['subjectAltName lacks IP:192.0.2.10']
    assert problems(make_csr(key, names=[]), key)


def test_a_ca_is_refused(key):
    found = problems(make_csr(key, extra=[(x509.BasicConstraints(ca=True, path_length=None), True)]), key)
    assert found == ['it asks to be a CA (basicConstraints CA:TRUE)'], found
    found = problems(make_csr(key, extra=[(x509.BasicConstraints(ca=True, path_length=0), True)]), key)
    assert len(found) == 1 and found[0].startswith('it asks to be a CA'), found


def test_other_extensions_are_refused(key):
    constraints = x509.NameConstraints(permitted_subtrees=[x509.DNSName('example')], excluded_subtrees=None)
    found = problems(make_csr(key, extra=[(constraints, True)]), key)
    assert found == ['extensions the role does not ask for: 2.5.29.30'], found
    ski = x509.SubjectKeyIdentifier.from_public_key(_key().public_key())
    assert problems(make_csr(key, extra=[(ski, False)]), key) == ['extensions the role does not ask for: 2.5.29.14']


@pytest.mark.parametrize('changes', [
    {'usage': _usage(digital_signature=True, key_cert_sign=True)},
    {'usage': _usage(key_encipherment=True)},
    {'usage_critical': False},
    {'extended': (ExtendedKeyUsageOID.SERVER_AUTH,)},
    {'extended': (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.CODE_SIGNING)},
    {'extended': ()},
])
def test_other_usages_are_refused(key, changes):
    found = problems(make_csr(key, **changes), key)
    assert len(found) == 1 and 'key usage' in found[0], found


def test_a_key_that_is_not_the_nodes_is_refused(key):
    other = _key()
    found = problems(make_csr(other), key)
    assert len(found) == 1 and "is not the node's key (sha256 %s)" % _fingerprint(key) in found[0], found
    assert rexec_csr_problems(csr_info.openssl_csr_info_filter(make_csr(key)), NODE, list(NAMES), '', key_usage=USAGE,
                              extended_key_usage=EXTENDED)


def test_unreadable_or_badly_signed_requests_are_refused(key):
    der = bytearray(base64.b64decode(''.join(make_csr(key).splitlines()[1:-1])))
    der[-3] ^= 1                                         # a bit of the signature
    tampered = '-----BEGIN CERTIFICATE REQUEST-----\n%s\n-----END CERTIFICATE REQUEST-----\n' % base64.b64encode(bytes(der)).decode()
    found = problems(tampered, key, as_info=False)
    assert len(found) == 1 and found[0].startswith('it cannot be read as a signing request'), found
    assert '\n' not in found[0]
    assert problems('not a request', key, as_info=False)[0].startswith('it cannot be read')
    with pytest.raises(AnsibleFilterError):
        rexec_csr_problems(None, NODE, NAMES, 'x')
