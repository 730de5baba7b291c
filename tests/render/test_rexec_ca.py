"""The rexec role's deployment CA (roles/rexec/tasks/ca.yml), run on the
controller with a stand-in pair and the CA in a temporary directory: a CA is
made whole or not at all, and half a CA, a garbage key or a key of another CA
stops the run with one line that names the file and the fix, in check mode
too, and changes nothing."""
import hashlib
import shutil

import pytest
import yaml

from render_lib import run_playbook

INVENTORY = {
    'offload_hosts': {'hosts': {'ca-host': {'dpu_offload_address': '192.0.2.10'}}},
    'offload_dpus': {'hosts': {'ca-dpu': {'dpu_offload_address': '192.0.2.11', 'dpu_offload_host': 'ca-host'}}},
    'all': {'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': '{{ ansible_playbook_python }}',
                     'dpu_offload_transport': 'sshfs', 'ansible_facts': {'pkg_mgr': 'apt'}}},
}
PLAYBOOK = [{'name': 'The CA', 'hosts': 'offload_hosts:offload_dpus', 'gather_facts': False,
             'tasks': [{'name': 'Check or make it', 'ansible.builtin.include_role': {
                 'name': 'dpu.offload.rexec', 'tasks_from': 'ca'}},
                 {'name': 'Reached', 'ansible.builtin.debug': {'msg': 'reached {{ inventory_hostname }}'}}]}]
FIXES = 'then run playbooks/offload.yml on every pair'


@pytest.fixture(scope='module')
def made(tmp_path_factory):
    """A CA made by ca.yml in a new directory, after a check-mode run that predicted it and wrote nothing."""
    work = tmp_path_factory.mktemp('ca')
    (work / 'hosts.yml').write_text(yaml.safe_dump(INVENTORY))
    (work / 'play.yml').write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    pki = work / 'pki'
    check = run(work, pki, '--check')
    assert check.rc == 0 and int(check.recap['ca-host']['changed']) > 0, check
    assert not pki.exists(), check
    first = run(work, pki)
    assert first.rc == 0 and sorted(p.name for p in pki.iterdir()) == ['ca.crt', 'ca.key'], first
    again = run(work, pki)
    assert again.rc == 0 and again.recap['ca-host']['changed'] == '0', again
    return work, pki


def run(work, pki, *extra):
    return run_playbook(work / 'play.yml', work / 'hosts.yml', '-e', 'rexec_pki_controller_dir=%s' % pki, *extra)


def tree(pki):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(pki.iterdir())}


def broken(made, tmp_path, damage):
    """A copy of the made CA, damaged; runs it in check mode and for real: both stop, and nothing changes."""
    work, pki = made
    copy = tmp_path / 'pki'
    shutil.copytree(pki, copy)
    damage(copy)
    before = tree(copy)
    messages = []
    for extra in (('--check',), ()):
        result = run(work, copy, *extra)
        assert result.rc == 2, result
        assert 'reached' not in result.output, result
        assert set(result.failed) == {'ca-host'}, result
        messages.append(result.failed['ca-host'])
        assert tree(copy) == before
    assert messages[0] == messages[1]
    assert '\n' not in messages[0]
    return messages[0], copy


def test_a_new_ca_is_made_whole_once(made):
    work, pki = made
    assert (pki / 'ca.key').stat().st_mode & 0o777 == 0o600


def test_a_missing_key_beside_the_certificate_stops_and_names_the_key(made, tmp_path):
    msg, copy = broken(made, tmp_path, lambda pki: (pki / 'ca.key').unlink())
    assert msg.startswith("The deployment CA's key %s/ca.key is missing beside its certificate %s/ca.crt: restore "
                          'the key from a backup' % (copy, copy)), msg
    assert 'or remove %s/ca.crt too to make a new CA, %s' % (copy, FIXES) in msg


def test_a_missing_certificate_beside_the_key_stops_and_names_the_certificate(made, tmp_path):
    msg, copy = broken(made, tmp_path, lambda pki: (pki / 'ca.crt').unlink())
    assert msg.startswith("The deployment CA's certificate %s/ca.crt is missing beside its key" % copy), msg
    assert 'or from /etc/rexec/tls/ca.crt on a deployed node' in msg


def test_a_garbage_key_is_named(made, tmp_path):
    msg, copy = broken(made, tmp_path, lambda pki: (pki / 'ca.key').write_text('garbage\n'))
    assert msg.startswith("The deployment CA's key %s/ca.key cannot be read (not a private key in PEM form): restore "
                          'it from a backup, or remove both' % copy), msg
    assert FIXES in msg


def test_a_key_of_another_ca_is_named(made, tmp_path):
    work, pki = made
    other = tmp_path / 'other'
    first = run(work, other)
    assert first.rc == 0, first
    msg, copy = broken(made, tmp_path, lambda pki: shutil.copy(other / 'ca.key', pki / 'ca.key'))
    assert msg.startswith("The deployment CA's key %s/ca.key does not belong to its certificate %s/ca.crt"
                          % (copy, copy)), msg
