"""`make molecule` runs the qtfs scenario only with a qtfs source archive,
and says so when it skips it (make -n: nothing runs)."""
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _plan(**variables):
    argv = ['make', '--no-print-directory', '-n', '-o', 'venv', '-o', 'lab-image', 'molecule']
    argv += ['%s=%s' % item for item in variables.items()]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _scenarios(plan):
    loop = next(line for line in plan.splitlines() if line.startswith('for scenario in'))
    return loop.split(' in ', 1)[1].split(';', 1)[0].split()


def test_without_an_archive_the_qtfs_scenario_is_skipped_with_a_message():
    plan = _plan(QTFS_SOURCE='')
    assert _scenarios(plan) == ['default', 'patched']
    skipped = [line for line in plan.splitlines() if 'SKIPPED the qtfs scenario' in line]
    # Said before the scenarios and again last, where CI's tail shows it.
    assert len(skipped) == 2 and plan.rstrip().splitlines()[-1] == skipped[1]
    assert 'QTFS_SOURCE=' in skipped[0]


def test_with_an_archive_every_scenario_runs(tmp_path):
    archive = tmp_path / 'dpu-utilities.tar.gz'
    archive.write_bytes(b'')
    plan = _plan(QTFS_SOURCE=str(archive))
    assert _scenarios(plan) == ['default', 'patched', 'qtfs']
    assert 'SKIPPED' not in plan
    # The scenario list is molecule's own directories, every one of them.
    assert sorted(_scenarios(plan)) == sorted(p.name for p in (ROOT / 'molecule').iterdir() if (p / 'molecule.yml').is_file())
