"""The rexec role installs its programs and their package by their directory (files/rexec/), on the controller
against a scratch root: over the flat layout of earlier releases it leaves none of the old modules nor their byte
code behind and says that the programs changed (rexec_programs_changed: stock_engine restarts its relays on it);
a second run changes nothing.  The role's own tasks (tasks/present.yml, found by name), in a role made of the
rexec role's files, defaults and vars."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REXEC = ROOT / 'roles' / 'rexec'
TASKS = ('Install the programs, their links, the allowlist, the environment files, the unit and the CA certificate',
         "Tell the roles that run rexec's programs whether the programs changed")
HANDLER = 'Remove the byte code of the removed modules'
OLD_MODULES = ('rexec_proto.py', 'rexec_client.py', 'rexec_stream.py', 'rexec_watch.py', 'rexec_resume.py',
               'rexec_spool.py', 'rexec_policy.py')

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='the role installs as root:root')


@pytest.fixture
def play(tmp_path):
    role = tmp_path / 'roles' / 'rexec_install'
    for name in ('tasks', 'handlers'):
        (role / name).mkdir(parents=True)
    for name in ('files', 'defaults', 'vars'):
        (role / name).symlink_to(REXEC / name)
    present = yaml.safe_load((REXEC / 'tasks' / 'present.yml').read_text())
    tasks = [dict(task) for task in present if task['name'] in TASKS]
    assert [task['name'] for task in tasks] == list(TASKS)
    assert HANDLER in tasks[0]['notify']
    tasks[0]['notify'] = [HANDLER]      # no service to restart here
    handlers = yaml.safe_load((REXEC / 'handlers' / 'main.yml').read_text())
    (role / 'handlers' / 'main.yml').write_text(yaml.safe_dump([h for h in handlers if h['name'] == HANDLER]))
    tasks.append({'name': 'Report', 'ansible.builtin.copy': {
        'content': '{{ {"changed_paths": __rexec_installed.changed_paths, "programs_changed": rexec_programs_changed}'
                   ' | to_json }}', 'dest': str(tmp_path / 'report.json'), 'mode': '0644'}})
    (role / 'tasks' / 'main.yml').write_text(yaml.safe_dump(tasks, sort_keys=False))
    root = tmp_path / 'root'
    (root / 'bin').mkdir(parents=True)
    (tmp_path / 'play.yml').write_text(yaml.safe_dump([{
        'hosts': 'localhost', 'gather_facts': False, 'connection': 'local', 'roles': ['rexec_install'],
        'vars': {'ansible_python_interpreter': sys.executable}}]))
    extra = {'rexec_install_dir': str(root / 'lib/rexec'), 'rexec_bin_dir': str(root / 'bin'),
             'rexec_pki_controller_dir': str(tmp_path / 'pki'), 'rexec_state': 'present',
             # The programs only: the settings files need a pair.
             '__rexec_files': '{{ __rexec_dirs[:1] + __rexec_programs + __rexec_retired + __rexec_links }}'}
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_ROLES_PATH=str(tmp_path / 'roles'))
    playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')

    def run():
        result = subprocess.run([playbook, '-i', 'localhost,', str(tmp_path / 'play.yml'), '-e', json.dumps(extra)],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return json.loads((tmp_path / 'report.json').read_text())

    return run, root / 'lib/rexec'


def _tree(directory):
    """Every path below directory, byte code left out (the tests import the package from files/rexec/)."""
    return sorted(str(path.relative_to(directory)) for path in directory.rglob('*') if '__pycache__' not in path.parts)


def test_a_deploy_over_the_flat_layout_leaves_no_old_code_and_restarts_what_ran_it(play):
    run, lib = play
    (lib / '__pycache__').mkdir(parents=True)
    for name in OLD_MODULES + ('rexec', 'rexec_server', 'rexec_forward', 'rexec_fiforelay'):
        (lib / name).write_text('old\n')
    (lib / '__pycache__' / 'rexec_client.cpython-311.pyc').write_bytes(b'old')
    report = run()
    assert report['programs_changed'] is True
    assert sorted(set(str(lib / name) for name in OLD_MODULES) - set(report['changed_paths'])) == []
    assert not (lib / '__pycache__').exists()
    assert _tree(lib) == _tree(REXEC / 'files' / 'rexec')
    assert os.access(lib / 'rexec_server', os.X_OK) and not os.access(lib / 'dpu_offload_rexec' / 'server.py', os.X_OK)
    again = run()
    assert again == {'changed_paths': [], 'programs_changed': False}


def test_new_code_in_the_package_says_the_programs_changed(play):
    run, lib = play
    run()
    (lib / 'dpu_offload_rexec' / 'pump.py').write_text('# an older pump\n')
    report = run()
    assert report == {'changed_paths': [str(lib / 'dpu_offload_rexec' / 'pump.py')], 'programs_changed': True}
