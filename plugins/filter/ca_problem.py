# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: whether the deployment CA on the controller is whole (its key and
its certificate, both readable, belonging together), or none of it is there."""

from __future__ import annotations


def _absent(info):
    return not info or bool(info.get('skipped'))


def _read(info):
    return 'public_key_fingerprints' in info and info.get('can_parse_key', True) is not False


def _reason(info, what):
    msg = ' '.join(str(info.get('msg') or '').split())
    if 'while reading' in msg:
        # "Error while reading ... from disk: [Errno 13] Permission denied: '/path'"
        return msg.split('from disk: ', 1)[-1]
    return 'not %s in PEM form' % what


def ca_problem(key_info, cert_info, key_path, cert_path, node_copy=''):
    """'' when both files are there and belong together, or neither is (a new CA is made); else the one line
    that names the wrong file and the fix.

    key_info and cert_info are the results of community.crypto.openssl_privatekey_info and
    community.crypto.x509_certificate_info run with failed_when false, skipped for a file that is not there.
    node_copy is where a deployed node keeps a copy of the certificate."""
    redeploy = 'then run playbooks/offload.yml on every pair (each node gets a certificate of the new CA)'
    new = 'or remove both %s and %s to make a new CA, %s' % (key_path, cert_path, redeploy)
    copy = ' or from %s on a deployed node' % node_copy if node_copy else ''
    if _absent(key_info) and _absent(cert_info):
        return ''
    if _absent(key_info):
        return ('The deployment CA\'s key %s is missing beside its certificate %s: restore the key from a backup '
                '(every deployed node trusts that certificate), or remove %s too to make a new CA, %s.'
                % (key_path, cert_path, cert_path, redeploy))
    if _absent(cert_info):
        return ('The deployment CA\'s certificate %s is missing beside its key %s: restore it from a backup%s, '
                'or remove %s too to make a new CA, %s.' % (cert_path, key_path, copy, key_path, redeploy))
    if not _read(key_info):
        return ('The deployment CA\'s key %s cannot be read (%s): restore it from a backup, %s.'
                % (key_path, _reason(key_info, 'a private key'), new))
    if not _read(cert_info):
        return ('The deployment CA\'s certificate %s cannot be read (%s): restore it from a backup%s, %s.'
                % (cert_path, _reason(cert_info, 'a certificate'), copy, new))
    if key_info['public_key_fingerprints'].get('sha256') != cert_info['public_key_fingerprints'].get('sha256'):
        return ('The deployment CA\'s key %s does not belong to its certificate %s, which every deployed node '
                'trusts: restore the key that made that certificate from a backup, %s.' % (key_path, cert_path, new))
    return ''


class FilterModule:
    """The deployment CA, whole or not at all."""

    def filters(self):
        return {'ca_problem': ca_problem}
