# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: what is wrong with a node's certificate signing request, before the controller's CA signs it.

The node makes the request, and a node whose root is a tenant controls what
it returns: the controller signs only a request for exactly the names, key
and usages the rexec role asked for (docs/rexec.md, "What the controller
trusts from a node").
"""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError

# Extensions a request may carry (by OID): the role asks for the first three;
# basicConstraints only as CA:FALSE. Anything else would be copied into the
# certificate by the CA (community.crypto's ownca copies a request's extensions).
_SUBJECT_ALT_NAME = '2.5.29.17'
_KEY_USAGE = '2.5.29.15'
_EXTENDED_KEY_USAGE = '2.5.29.37'
_BASIC_CONSTRAINTS = '2.5.29.19'
_ALLOWED_EXTENSIONS = (_SUBJECT_ALT_NAME, _KEY_USAGE, _EXTENDED_KEY_USAGE, _BASIC_CONSTRAINTS)

# openssl_csr_info names the two usages by their long names; the role by their short ones.
_EXTENDED_USAGES = {
    'serverauth': 'serverAuth', 'tlswebserverauthentication': 'serverAuth', '1.3.6.1.5.5.7.3.1': 'serverAuth',
    'clientauth': 'clientAuth', 'tlswebclientauthentication': 'clientAuth', '1.3.6.1.5.5.7.3.2': 'clientAuth',
}


def _squash(name):
    return ''.join(str(name).split()).lower()


def _key_usage(name):
    # 'Digital Signature' (openssl_csr_info) and 'digitalSignature' (the role) are one usage.
    return _squash(name)


def _extended_usage(name):
    return _EXTENDED_USAGES.get(_squash(name), str(name))


def _general_name(name):
    """'DNS:x' / 'IP:addr' in one spelling (IP addresses compressed, types upper-case)."""
    kind, sep, value = str(name).partition(':')
    if not sep:
        return str(name)
    kind = kind.strip().upper()
    if kind in ('IP', 'IP ADDRESS'):
        try:
            return 'IP:' + ipaddress.ip_address(value.strip()).compressed
        except ValueError:
            return 'IP:' + value
    if kind == 'DNS':
        return 'DNS:' + value.lower()
    return kind + ':' + value


def _listed(names):
    return ', '.join(names) or 'none'


def _read(csr):
    """The request's openssl_csr_info, or a problem: a request that cannot be read is refused like any other."""
    # Imported here: the collection depends on community.crypto, but importing
    # this plugin (sanity tests) must not.
    from ansible_collections.community.crypto.plugins.filter.openssl_csr_info import openssl_csr_info_filter
    try:
        return openssl_csr_info_filter(csr), None
    except Exception as exc:  # pylint: disable=broad-exception-caught  # the node's bytes; any failure refuses
        return None, 'it cannot be read as a signing request (%s)' % ' '.join(str(exc).split())


def rexec_csr_problems(info, common_name, names, key_sha256, key_usage=None, extended_key_usage=None,
                       key_usage_critical=True):
    """Return the problems of a signing request, [] when it may be signed.

    info: the request in PEM, or community.crypto.openssl_csr_info's result;

    common_name: the only subject the request may have (CN=common_name);
    names: its subjectAltNames, exactly ('DNS:x', 'IP:a');
    key_sha256: the sha256 fingerprint of the node's public key, as
    community.crypto.openssl_privatekey returns it; key_usage,
    extended_key_usage: exactly the usages the role asks for.
    """
    if isinstance(info, str):
        info, unreadable = _read(info)
        if unreadable:
            return [unreadable]
    if not isinstance(info, dict):
        raise AnsibleFilterError('rexec_csr_problems expects a signing request in PEM or the result of '
                                 'community.crypto.openssl_csr_info, got %s' % type(info).__name__)
    problems = []
    if info.get('signature_valid') is not True:
        problems.append('its signature does not verify with the key it names')

    subject = [list(item) for item in info.get('subject_ordered') or []]
    if subject != [['commonName', common_name]]:
        problems.append('subject %s, not commonName=%s alone'
                        % (_listed('%s=%s' % (key, value) for key, value in subject), common_name))

    asked = sorted(_general_name(name) for name in info.get('subject_alt_name') or [])
    wanted = sorted(_general_name(name) for name in names)
    extra = [name for name in asked if name not in wanted]
    missing = [name for name in wanted if name not in asked]
    if extra or len(asked) != len(set(asked)):
        problems.append('subjectAltName %s: not only this node\'s names (%s)' % (_listed(asked), _listed(wanted)))
    elif missing:
        problems.append('subjectAltName lacks %s' % _listed(missing))

    basic = [str(item).upper().replace(' ', '') for item in info.get('basic_constraints') or []]
    if 'CA:TRUE' in basic:
        problems.append('it asks to be a CA (basicConstraints %s)' % ', '.join(info.get('basic_constraints')))
    others = sorted(oid for oid in (info.get('extensions_by_oid') or {}) if oid not in _ALLOWED_EXTENSIONS)
    if others:
        problems.append('extensions the role does not ask for: %s' % ', '.join(others))

    if key_usage is not None:
        asked_usage = sorted(_key_usage(name) for name in info.get('key_usage') or [])
        if asked_usage != sorted(_key_usage(name) for name in key_usage):
            problems.append('key usage %s, not %s' % (_listed(info.get('key_usage') or []), _listed(key_usage)))
        elif bool(info.get('key_usage_critical')) != bool(key_usage_critical):
            problems.append('key usage %s critical' % ('not' if key_usage_critical else 'marked'))
    if extended_key_usage is not None:
        asked_usage = sorted(_extended_usage(name) for name in info.get('extended_key_usage') or [])
        if asked_usage != sorted(_extended_usage(name) for name in extended_key_usage):
            problems.append('extended key usage %s, not %s' % (_listed(info.get('extended_key_usage') or []),
                                                               _listed(extended_key_usage)))

    fingerprint = str((info.get('public_key_fingerprints') or {}).get('sha256', '')).lower()
    if not key_sha256 or fingerprint != str(key_sha256).lower():
        problems.append("its public key (sha256 %s) is not the node's key (sha256 %s)"
                        % (fingerprint or 'unknown', key_sha256 or 'unknown'))
    return problems


class FilterModule:
    """rexec's certificate signing, on the controller."""

    def filters(self):
        return {'rexec_csr_problems': rexec_csr_problems}
