# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Install the built collection as a user would, offline, and use it from there.

    python tools/install_check.py .build/dist/dpu-offload-X.tar.gz

1. A virtualenv with ansible-core alone (the version requirements.txt pins),
   kept in .build/install-check/core-venv and rebuilt when the pin changes.
2. The dependencies the tarball's MANIFEST.json declares (galaxy.yml), and
   theirs, as tarballs made from the pinned `ansible` package's tree (the
   files each collection's FILES.json lists; ansible-galaxy checks their
   checksums), installed with --offline into an empty collections path; then
   the collection's tarball, --offline, so that its declared dependencies and
   versions have to resolve against what is installed. No galaxy server is
   reachable: the server setting points at a closed local port.
3. With ANSIBLE_COLLECTIONS_PATH the temporary path only, no ansible.cfg of
   the checkout and no collections from Python's sys.path:
   - ansible-playbook --syntax-check of every playbook of the installed
     collection (dpu.offload.NAME), and of a playbook that imports every task
     file of every role and of playbooks/tasks statically, so that every
     module a role uses must resolve (the roles include most task files
     dynamically, which a plain syntax check does not load);
   - ansible-doc finds every filter, test and lookup the roles and playbooks
     name by FQCN outside ansible.builtin;
   - the rexec role in check mode against localhost, as a HOST whose DPU is
     never contacted, with every path it manages under a temporary root.
     Check mode changes nothing (the script checks that too); it runs the
     role's own logic, offload_common, dpu.offload.file_set and
     community.crypto.openssl_privatekey from the installed dependency, and
     the real package module in check mode (read-only; on Debian that needs
     python3-apt, which the apt module finds in /usr/bin/python3).

Leaves its work in .build/install-check/run for a look after a failure; the
dependency tarballs are kept in .build/install-check/deps-ansible-VERSION.
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time

CHECKOUT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
FQCN_PLUGIN = re.compile(
    r"""(?:\|\s*|\b(?:map|select|reject|selectattr|rejectattr)\((?:[^()'"]*,\s*)?['"]|\b(?:lookup|query)\(['"]|\bis\s+(?:not\s+)?)"""
    r"""([a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+)\b""")


def log(msg):
    print('install-check: %s' % msg, flush=True)


def pinned(name):
    with open(os.path.join(CHECKOUT, 'requirements.txt'), encoding='utf-8') as handle:
        for line in handle:
            if line.split('==')[0].strip().lower() == name:
                return line.split('==')[1].strip()
    raise SystemExit('requirements.txt pins no %s' % name)


def run(cmd, env, log_file=None, **kwargs):
    """Run cmd; on failure show its output and stop."""
    result = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
                            **kwargs)
    if log_file:
        with open(log_file, 'a', encoding='utf-8') as handle:
            handle.write('$ %s\n%s\n' % (' '.join(cmd), result.stdout))
    if result.returncode != 0:
        sys.stdout.write(result.stdout)
        raise SystemExit('install-check: FAILED (exit %d): %s' % (result.returncode, ' '.join(cmd)))
    return result.stdout


def core_venv(work, python):
    """ansible-core alone, the pinned version; reused while the pin holds."""
    venv = os.path.join(work, 'core-venv')
    want = 'ansible-core==%s %s' % (pinned('ansible-core'), python)
    stamp = os.path.join(venv, '.install-check-stamp')
    if os.path.exists(stamp):
        with open(stamp, encoding='utf-8') as handle:
            if handle.read() == want:
                return venv
    shutil.rmtree(venv, ignore_errors=True)
    log('creating %s with %s' % (venv, want.split()[0]))
    subprocess.run([python, '-m', 'venv', venv], check=True)
    subprocess.run([os.path.join(venv, 'bin/pip'), 'install', '-qq', '--disable-pip-version-check',
                    want.split()[0]], check=True)
    with open(stamp, 'w', encoding='utf-8') as handle:
        handle.write(want)
    return venv


def bundled_tree():
    """ansible_collections of the pinned `ansible` package in this virtualenv."""
    from importlib import metadata  # pylint: disable=import-outside-toplevel
    version = metadata.version('ansible')
    if version != pinned('ansible'):
        raise SystemExit('the ansible package here is %s, requirements.txt pins %s: run make venv' % (
            version, pinned('ansible')))
    tree = os.path.join(sysconfig.get_paths()['purelib'], 'ansible_collections')
    if not os.path.isdir(tree):
        raise SystemExit('no ansible_collections tree in %s' % tree)
    return tree, version


def manifest_of_tarball(path):
    with tarfile.open(path) as tar:
        return json.load(tar.extractfile('MANIFEST.json'))['collection_info']


def tarball_from_tree(tree, out_dir, env):
    """A collection artifact built (ansible-galaxy collection build) from an installed tree.

    The ansible package ships trimmed trees (FILES.json lists files it left
    out), so the tree is copied, given a galaxy.yml from its MANIFEST.json,
    and built afresh.
    """
    with open(os.path.join(tree, 'MANIFEST.json'), encoding='utf-8') as handle:
        info = json.load(handle)['collection_info']
    out = os.path.join(out_dir, '%s-%s-%s.tar.gz' % (info['namespace'], info['name'], info['version']))
    if os.path.isfile(out):
        return out, info
    src = os.path.join(out_dir, 'src', info['namespace'], info['name'])
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(tree, src, ignore=shutil.ignore_patterns('__pycache__', '*.pyc', 'MANIFEST.json', 'FILES.json'))
    readme = info.get('readme') or 'README.md'
    if not os.path.isfile(os.path.join(src, readme)):
        write(os.path.join(src, readme), '# %s.%s\n' % (info['namespace'], info['name']))
    galaxy = {key: info[key] for key in ('namespace', 'name', 'version', 'authors', 'description', 'repository')
              if info.get(key)}
    galaxy.update(readme=readme, dependencies=info.get('dependencies') or {},
                  build_ignore=['**/__pycache__', '*.pyc'])
    if info.get('license'):
        galaxy['license'] = info['license']
    elif info.get('license_file') and os.path.isfile(os.path.join(src, info['license_file'])):
        galaxy['license_file'] = info['license_file']
    write(os.path.join(src, 'galaxy.yml'), json.dumps(galaxy, indent=1))
    run(['ansible-galaxy', 'collection', 'build', '--output-path', out_dir, src], env,
        os.path.join(out_dir, 'build.log'))
    shutil.rmtree(os.path.join(out_dir, 'src'), ignore_errors=True)
    if not os.path.isfile(out):
        raise SystemExit('install-check: FAILED: ansible-galaxy collection build made no %s' % out)
    return out, info


def dependency_tarballs(declared, tree, out_dir, env):
    """Tarballs of the declared collections and of what they need, from the ansible package."""
    queue = list(declared.items())
    made = {}
    while queue:
        fqcn, spec = queue.pop(0)
        if fqcn in made:
            continue
        namespace, name = fqcn.split('.')
        source = os.path.join(tree, namespace, name)
        if not os.path.isfile(os.path.join(source, 'MANIFEST.json')):
            raise SystemExit('%s (%s) is not in the pinned ansible package' % (fqcn, spec))
        made[fqcn] = tarball_from_tree(source, out_dir, env)
        log('dependency %s %s (wanted %s), from the ansible package' % (fqcn, made[fqcn][1]['version'], spec))
        queue.extend(made[fqcn][1].get('dependencies', {}).items())
    return [path for path, _info in made.values()]


def plugin_names(installed):
    """FQCN filters, tests and lookups the roles and playbooks use, outside ansible.builtin."""
    found = {}
    for path in glob.glob(os.path.join(installed, 'roles/**/*'), recursive=True) + \
            glob.glob(os.path.join(installed, 'playbooks/**/*'), recursive=True):
        if not path.endswith(('.yml', '.yaml', '.j2')) or not os.path.isfile(path):
            continue
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
        for match in FQCN_PLUGIN.finditer(text):
            name = match.group(1)
            if name.startswith(('ansible.builtin.', 'dpu.offload.')):
                continue
            head = text[max(0, match.start() - 1):match.start(1)]
            kind = 'lookup' if re.search(r'(lookup|query)\(', head) else \
                'test' if re.search(r'\bis\s|select\(|reject\(|selectattr\(|rejectattr\(', head) else 'filter'
            found.setdefault((kind, name), os.path.relpath(path, installed))
    return found


def write(path, text):
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(text)


def all_tasks_playbook(installed):
    """A play importing every task file of every role, and playbooks/tasks, statically."""
    tasks = []
    for role_dir in sorted(glob.glob(os.path.join(installed, 'roles/*'))):
        role = os.path.basename(role_dir)
        for task_file in sorted(glob.glob(os.path.join(role_dir, 'tasks/*.yml'))):
            name = os.path.basename(task_file)
            tasks.append({'name': 'dpu.offload.%s %s' % (role, name),
                          'ansible.builtin.import_role': {'name': 'dpu.offload.' + role, 'tasks_from': name}})
    for task_file in sorted(glob.glob(os.path.join(installed, 'playbooks/tasks/*.yml'))):
        tasks.append({'name': 'playbooks/tasks/' + os.path.basename(task_file),
                      'ansible.builtin.import_tasks': task_file})
    return [{'name': 'Every task file, loaded statically', 'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]


def tree_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _dirs, files in os.walk(root) for f in files)


def check_mode_run(env, run_dir, venv):
    """The rexec role, check mode, localhost as a HOST; returns a summary line."""
    root = os.path.join(run_dir, 'root')
    # A node that has rexec's configuration directory but no key yet: the
    # key task runs (in check mode) instead of being skipped as "predicted".
    os.makedirs(os.path.join(root, 'etc/rexec/tls'))
    os.chmod(os.path.join(root, 'etc/rexec'), 0o755)
    os.chmod(os.path.join(root, 'etc/rexec/tls'), 0o700)
    before = tree_files(root)
    inventory = os.path.join(run_dir, 'check-inventory.yml')
    python = os.path.join(venv, 'bin/python')
    write(inventory, json.dumps({
        'offload_hosts': {'hosts': {'localhost': {
            'ansible_connection': 'local', 'ansible_python_interpreter': python,
            'dpu_offload_address': '127.0.0.1'}}},
        'offload_dpus': {'hosts': {'check-dpu': {'dpu_offload_address': '127.0.0.2', 'dpu_offload_host': 'localhost'}}},
        'all': {'vars': {'dpu_offload_transport': 'sshfs'}}}, indent=1))
    extra = os.path.join(run_dir, 'check-vars.json')
    write(extra, json.dumps({
        'rexec_install_dir': root + '/usr/local/lib/dpu-offload/rexec',
        'rexec_bin_dir': root + '/usr/local/bin',
        'rexec_config_dir': root + '/etc/rexec',
        '__rexec_unit_path': root + '/etc/systemd/system/rexec.service'}))
    playbook = os.path.join(run_dir, 'check-rexec.yml')
    write(playbook, json.dumps([{'name': 'The rexec role, check mode, on this machine as a HOST', 'hosts': 'localhost',
                                 'gather_facts': False, 'roles': [{'role': 'dpu.offload.rexec'}]}], indent=1))
    out = run(['ansible-playbook', '-i', inventory, '-e', '@' + extra, '--check', playbook],
              dict(env, ANSIBLE_STDOUT_CALLBACK='ansible.builtin.json'), os.path.join(run_dir, 'check-rexec.log'))
    report = json.loads(out[out.index('{'):])
    stats = report['stats']['localhost']
    tasks = [(t['task']['name'], t['hosts']['localhost']) for play in report['plays'] for t in play['tasks']
             if 'localhost' in t['hosts']]
    would = [name for name, res in tasks if res.get('changed')]
    ran_key = [res for name, res in tasks if name.endswith("Create this node's private key on the node")]
    if stats['failures'] or stats['unreachable']:
        raise SystemExit('install-check: FAILED: the check-mode run failed: %r' % stats)
    if not ran_key or ran_key[0].get('skipped') or ran_key[0].get('failed'):
        raise SystemExit('install-check: FAILED: community.crypto.openssl_privatekey did not run: %r' % ran_key)
    after = tree_files(root)
    if after != before:
        raise SystemExit('install-check: FAILED: check mode wrote %s' % sorted(set(after) - set(before)))
    for name in would:
        log('  would change: %s' % name)
    return ('rexec role in check mode on localhost: %d tasks, %d would change, %d skipped, 0 failed; '
            'nothing was written (openssl_privatekey ran: %s)'
            % (len(tasks), stats['changed'], stats['skipped'],
               'would create the key' if ran_key[0].get('changed') else 'key unchanged'))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('tarball')
    parser.add_argument('--work', default=os.path.join(CHECKOUT, '.build/install-check'))
    parser.add_argument('--python', default=sys.executable, help='interpreter for the ansible-core virtualenv')
    opts = parser.parse_args()
    started = time.monotonic()
    tarball = os.path.abspath(opts.tarball)
    work = os.path.abspath(opts.work)
    venv = core_venv(work, opts.python)
    tree, ansible_version = bundled_tree()
    run_dir = os.path.join(work, 'run')
    shutil.rmtree(run_dir, ignore_errors=True)
    for sub in ('home', 'collections', 'cwd'):
        os.makedirs(os.path.join(run_dir, sub))
    collections = os.path.join(run_dir, 'collections')
    cfg = os.path.join(run_dir, 'ansible.cfg')
    write(cfg, '[defaults]\n# install-check: nothing from the checkout\n')
    env = {
        'PATH': os.path.join(venv, 'bin') + ':/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        'HOME': os.path.join(run_dir, 'home'),
        'LANG': 'C.UTF-8',
        'ANSIBLE_CONFIG': cfg,
        'ANSIBLE_HOME': os.path.join(run_dir, 'home/.ansible'),
        'ANSIBLE_COLLECTIONS_PATH': collections,
        'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'false',
        'ANSIBLE_GALAXY_SERVER': 'http://127.0.0.1:9/',
        'ANSIBLE_NOCOLOR': '1',
    }
    if 'TMPDIR' in os.environ:
        env['TMPDIR'] = os.environ['TMPDIR']
    galaxy_log = os.path.join(run_dir, 'galaxy.log')
    core = run([os.path.join(venv, 'bin/python'), '-c',
                'import ansible, importlib.metadata as m, importlib.util as u\n'
                'assert u.find_spec("ansible_collections") is None, "ansible_collections importable"\n'
                'names = sorted(d.metadata["Name"].lower() for d in m.distributions())\n'
                'assert "ansible" not in names, "the ansible package is installed"\n'
                'print(ansible.__version__)'], env).strip()
    log('ansible-core %s alone in %s; dependencies from ansible %s' % (core, venv, ansible_version))

    info = manifest_of_tarball(tarball)
    declared = info.get('dependencies') or {}
    wanted = ', '.join('%s %s' % kv for kv in sorted(declared.items())) or 'no dependencies'
    log('%s.%s %s declares %s' % (info['namespace'], info['name'], info['version'], wanted))
    # Built once per ansible version and kept (the builds take most of a minute).
    deps_dir = os.path.join(work, 'deps-ansible-%s' % ansible_version)
    os.makedirs(deps_dir, exist_ok=True)
    deps = dependency_tarballs(declared, tree, deps_dir, env)
    cwd = os.path.join(run_dir, 'cwd')
    if deps:
        run(['ansible-galaxy', 'collection', 'install', '--offline', '-p', collections] + deps, env, galaxy_log,
            cwd=cwd)
    # Alone, so its dependencies must resolve against the installed ones.
    run(['ansible-galaxy', 'collection', 'install', '--offline', '-p', collections, tarball], env, galaxy_log,
        cwd=cwd)
    listing = run(['ansible-galaxy', 'collection', 'list'], env, galaxy_log, cwd=cwd)
    for line in listing.splitlines():
        if line.startswith(('#', 'dpu.', 'community.', 'ansible.')):
            log('  ' + line.strip())
    installed = os.path.join(collections, 'ansible_collections', info['namespace'], info['name'])

    inventory = os.path.join(run_dir, 'syntax-inventory.yml')
    write(inventory, json.dumps({'offload_hosts': {'hosts': {'localhost': {'ansible_connection': 'local'}}}}))
    playbooks = sorted(glob.glob(os.path.join(installed, 'playbooks/*.yml')))
    if not playbooks:
        raise SystemExit('install-check: FAILED: no playbooks in %s' % installed)
    all_tasks = os.path.join(run_dir, 'all-tasks.yml')
    write(all_tasks, json.dumps(all_tasks_playbook(installed), indent=1))
    task_files = len(all_tasks_playbook(installed)[0]['tasks'])
    for name in ['%s.%s.%s' % (info['namespace'], info['name'], os.path.splitext(os.path.basename(p))[0])
                 for p in playbooks] + [all_tasks]:
        run(['ansible-playbook', '--syntax-check', '-i', inventory, name], env, os.path.join(run_dir, 'syntax.log'),
            cwd=cwd)
        shown = name if name != all_tasks else '%d task files (every role, playbooks/tasks), imported statically' % task_files
        log('syntax ok: %s' % shown)

    plugins = plugin_names(installed)
    for (kind, name), where in sorted(plugins.items()):
        # ansible-doc exits 0 for an unknown plugin too, with {} on stdout.
        doc = subprocess.run(['ansible-doc', '-t', kind, '--json', name], env=env, cwd=cwd, capture_output=True,
                             text=True, check=False)
        if doc.returncode != 0 or name not in json.loads(doc.stdout or '{}'):
            sys.stdout.write(doc.stderr)
            raise SystemExit('install-check: FAILED: %s %s (used in %s) does not resolve' % (kind, name, where))
        log('%s %s resolves (used in %s)' % (kind, name, where))

    log(check_mode_run(env, run_dir, venv))
    log('passed in %.0f s' % (time.monotonic() - started))
    return 0


if __name__ == '__main__':
    sys.exit(main())
