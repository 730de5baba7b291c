# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployment CA is whole or absent. The samples are what
community.crypto.openssl_privatekey_info and x509_certificate_info returned
(with failed_when false, as ca.yml runs them) for a CA made as ca.yml makes
it, another key, garbage, an empty file, a missing file and the wrong kind of
file; 'skipped' is what Ansible registers for a file that is not there."""
from __future__ import annotations

import json
import pathlib

import pytest

from ansible_collections.dpu.offload.plugins.filter.ca_problem import ca_problem

SAMPLES = json.loads((pathlib.Path(__file__).parent / 'fixtures' / 'ca_info.json').read_text())
KEYS = SAMPLES['keys']
CERTS = SAMPLES['certs']
SKIPPED = SAMPLES['skipped']
KEY = '/home/user/.dpu-offload/pki/ca.key'
CERT = '/home/user/.dpu-offload/pki/ca.crt'
NODE_COPY = '/etc/rexec/tls/ca.crt'
REDEPLOY = 'then run playbooks/offload.yml on every pair'


def problem(key, cert):
    return ca_problem(key, cert, KEY, CERT, NODE_COPY)


def test_a_whole_ca_and_no_ca_at_all_go_on():
    assert problem(KEYS['ca'], CERTS['ca']) == ''
    assert problem(SKIPPED, SKIPPED) == ''
    assert ca_problem(None, None, KEY, CERT) == ''


def test_a_certificate_without_its_key_names_the_key_and_both_fixes():
    msg = problem(SKIPPED, CERTS['ca'])
    assert msg.startswith("The deployment CA's key %s is missing beside its certificate %s: restore the key" % (KEY, CERT))
    assert 'or remove %s too to make a new CA, %s' % (CERT, REDEPLOY) in msg
    assert '\n' not in msg


def test_a_key_without_its_certificate_names_the_certificate_and_the_nodes_copy():
    msg = problem(KEYS['ca'], SKIPPED)
    assert msg.startswith("The deployment CA's certificate %s is missing beside its key %s" % (CERT, KEY))
    assert 'restore it from a backup or from %s on a deployed node' % NODE_COPY in msg
    assert 'or remove %s too to make a new CA, %s' % (KEY, REDEPLOY) in msg


@pytest.mark.parametrize('sample', ['garbage', 'empty', 'certificate'])
def test_a_key_that_cannot_be_read_is_named(sample):
    msg = problem(KEYS[sample], CERTS['ca'])
    assert msg.startswith("The deployment CA's key %s cannot be read (not a private key in PEM form): restore it "
                          'from a backup, or remove both %s and %s to make a new CA, %s' % (KEY, KEY, CERT, REDEPLOY))


def test_an_unreadable_file_says_why():
    # A file that is there but cannot be opened (here: one that went away between the check and the read).
    msg = problem(KEYS['missing'], CERTS['ca'])
    assert "cannot be read ([Errno 2] No such file or directory: '/home/user/.dpu-offload/pki/missing.key')" in msg


@pytest.mark.parametrize('sample', ['garbage', 'key'])
def test_a_certificate_that_cannot_be_read_is_named(sample):
    msg = problem(KEYS['ca'], CERTS[sample])
    assert msg.startswith("The deployment CA's certificate %s cannot be read (not a certificate in PEM form): "
                          'restore it from a backup or from %s on a deployed node' % (CERT, NODE_COPY))


def test_a_key_of_another_ca_names_the_key():
    msg = problem(KEYS['other'], CERTS['ca'])
    assert msg.startswith("The deployment CA's key %s does not belong to its certificate %s, which every deployed "
                          'node trusts: restore the key that made that certificate from a backup, or remove both'
                          % (KEY, CERT))
    assert REDEPLOY in msg
