"""`make molecule` runs the qtfs scenario only when asked for (QTFS=1) and
with a qtfs source archive, and says why whenever it skips it (make -n:
nothing runs)."""
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _plan(target='molecule', prebuilt=('venv', 'lab-image'), **variables):
    argv = ['make', '--no-print-directory', '-n'] + ['-o%s' % name for name in prebuilt] + [target]
    argv += ['%s=%s' % item for item in variables.items()]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _scenarios(plan):
    loop = next(line for line in plan.splitlines() if line.startswith('for scenario in'))
    return loop.split(' in ', 1)[1].split(';', 1)[0].split()


def _skipped(plan):
    skipped = [line for line in plan.splitlines() if 'SKIPPED the qtfs scenario' in line]
    # Said before the scenarios and again last, where CI's tail shows it.
    assert len(skipped) == 2 and plan.rstrip().splitlines()[-1] == skipped[1]
    return skipped[0]


def _archive(tmp_path):
    archive = tmp_path / 'dpu-utilities.tar.gz'
    archive.write_bytes(b'')
    return str(archive)


def test_by_default_the_qtfs_scenario_is_skipped_saying_how_to_run_it(tmp_path):
    plan = _plan(QTFS_SOURCE=_archive(tmp_path))
    assert _scenarios(plan) == ['default', 'patched', 'k8s']
    assert 'QTFS=1' in _skipped(plan) and 'make molecule-qtfs' in _skipped(plan)


def test_asked_for_without_an_archive_it_is_skipped_naming_the_variable():
    plan = _plan(QTFS='1', QTFS_SOURCE='')
    assert _scenarios(plan) == ['default', 'patched', 'k8s']
    assert 'QTFS_SOURCE=' in _skipped(plan)


def test_asked_for_with_an_archive_every_scenario_runs(tmp_path):
    plan = _plan(QTFS='1', QTFS_SOURCE=_archive(tmp_path))
    assert _scenarios(plan) == ['default', 'patched', 'k8s', 'qtfs']
    assert 'SKIPPED' not in plan
    # The scenario list is molecule's own directories, every one of them.
    assert sorted(_scenarios(plan)) == sorted(p.name for p in (ROOT / 'molecule').iterdir() if (p / 'molecule.yml').is_file())


def test_molecule_qtfs_runs_that_scenario_alone_without_the_container_lab():
    plan = _plan('molecule-qtfs', prebuilt=('venv',))
    assert 'molecule test -s qtfs' in plan
    assert 'lab/lab.sh' not in plan and 'molecule test -s default' not in plan
