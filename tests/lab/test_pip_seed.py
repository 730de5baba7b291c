"""tools/ansible-test-pip-seed.sh, against a throwaway HOME and virtualenv.

On a fresh machine `make venv` runs it once and ansible-test's sanity
environments depend on what it writes; here it runs every time, and the
stand-in it writes is run the way ansible-test runs a get-pip script
(its quiet_pip.py with GET_PIP set), offline.
"""
import os
import pathlib
import subprocess
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEED = ROOT / 'tools/ansible-test-pip-seed.sh'
ansible_test = pytest.importorskip('ansible_test')
ANSIBLE_TEST = pathlib.Path(ansible_test.__file__).parent


def clean_env(home, **extra):
    """No pip settings from this machine (find-links, indexes, constraints)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PIP_', 'PYTHON', 'VIRTUAL_ENV'))}
    env.update(HOME=str(home), PIP_CONFIG_FILE=os.devnull, **extra)
    return env


def seed(python, home, **extra):
    return subprocess.run(['bash', str(SEED), str(python)], env=clean_env(home, **extra), capture_output=True,
                          text=True, timeout=60, check=False)


def expected_cache(home):
    """The file ansible-test's bootstrap looks for, from ansible-test's own code."""
    from ansible_test._internal.python_requirements import get_venv_packages  # pylint: disable=import-outside-toplevel
    version = get_venv_packages(types.SimpleNamespace(version='%d.%d' % sys.version_info[:2]))['pip']
    return home / '.ansible/test/cache' / ('get_pip_%s.py' % version.replace('.', '_')), version


@pytest.fixture(scope='module')
def bare_venv(tmp_path_factory):
    """A virtualenv without pip (as ansible-test makes them) and without ansible_test."""
    path = tmp_path_factory.mktemp('bare') / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(path)], check=True, timeout=120)
    return path / 'bin/python'


def test_the_seed_lands_where_ansible_test_looks(tmp_path):
    result = seed(sys.executable, tmp_path)
    assert result.returncode == 0, result.stderr
    cache, _version = expected_cache(tmp_path)
    assert result.stdout.strip() == 'seeded %s' % cache
    assert 'ensurepip' in cache.read_text()
    # Nothing else is written into HOME.
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob('*') if p.is_file()] == [cache.relative_to(tmp_path)]
    # A second run (make venv again) gives the same file.
    text = cache.read_text()
    assert seed(sys.executable, tmp_path).returncode == 0
    assert cache.read_text() == text


def test_the_stand_in_bootstraps_pip_as_ansible_test_calls_it(tmp_path, bare_venv):
    assert seed(sys.executable, tmp_path).returncode == 0
    cache, _version = expected_cache(tmp_path)
    # ansible-test: python quiet_pip.py --disable-pip-version-check PACKAGES --no-setuptools --no-wheel,
    # GET_PIP=cache. The package is left unpinned and the index off so that
    # ensurepip's own pip satisfies it without a network.
    quiet_pip = ANSIBLE_TEST / '_util/target/setup/quiet_pip.py'
    assert quiet_pip.is_file()
    result = subprocess.run([str(bare_venv), str(quiet_pip), '--disable-pip-version-check', '--no-index', 'pip',
                             '--no-setuptools', '--no-wheel'], env=clean_env(tmp_path, GET_PIP=str(cache)),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    check = subprocess.run([str(bare_venv), '-m', 'pip', '--version'], env=clean_env(tmp_path), capture_output=True,
                           text=True, timeout=60, check=False)
    assert check.returncode == 0 and str(bare_venv.parents[1]) in check.stdout, check.stdout + check.stderr


def test_an_interpreter_without_ansible_test_is_a_clear_error(tmp_path, bare_venv):
    result = seed(bare_venv, tmp_path)
    assert result.returncode == 1
    assert 'has no ansible_test' in result.stderr
    assert not (tmp_path / '.ansible').exists()


def test_an_unknown_ansible_test_layout_is_a_clear_error(tmp_path, bare_venv):
    fake = tmp_path / 'fake' / 'ansible_test'
    (fake / '_internal').mkdir(parents=True)
    (fake / '__init__.py').write_text('')
    (fake / '_internal/python_requirements.py').write_text('default_packages = {"pip": "24.2"}\n')
    result = seed(bare_venv, tmp_path, PYTHONPATH=str(fake.parent))
    assert result.returncode == 1
    assert "cannot find ansible-test's pip version" in result.stderr
    assert not (tmp_path / '.ansible').exists()


def test_usage(tmp_path):
    result = subprocess.run(['bash', str(SEED)], env=clean_env(tmp_path), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode != 0 and 'usage' in result.stderr
