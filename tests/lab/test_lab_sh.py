"""lab/lab.sh's control flow, on every machine, with stand-ins on PATH.

lab.sh runs against a PATH that holds only stand-ins for docker, dockerd,
debootstrap, apt-get, systemctl and umount plus links to the plain tools it
needs (coreutils, sed, awk, tar...), so the real engine and the real apt are
never reached, whatever this machine has installed. The paths that only run
on a fresh machine (no image yet, no engine, no dockerd) run here too: the
EXIT trap, set -u, the removal of the rootfs tree, the exit status and what
lands on stdout (lab/tasks/up.yml takes stdout as the image reference).

DPU_OFFLOAD_LAB_SH runs the tests against another copy of lab.sh (it must
sit beside settings.yml and image-packages.txt).
"""
import hashlib
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAB_SH = pathlib.Path(os.environ.get('DPU_OFFLOAD_LAB_SH', ROOT / 'lab/lab.sh'))
SETTINGS = yaml.safe_load((LAB_SH.parent / 'settings.yml').read_text())
BASH = shutil.which('bash')
# What lab.sh may run besides the stand-ins; nothing else is on its PATH.
TOOLS = ('awk cat cut dirname env grep head ls mkdir mktemp nohup paste rm seq setsid sed sha256sum '
         'sleep sort tar touch xargs').split()
# ... and what the stand-ins need on top (on their PATH only).
STUB_TOOLS = ('cp', 'mv')

STUBS = {
    # docker: an engine that answers once "$state/engine-up" exists; images
    # are lines "ref" in "$state/images"; import lists the tar it is given.
    'docker': r'''
echo "docker $*" >> "$state/calls"
case "$1 ${2:-}" in
  "info "*) [ -e "$state/engine-up" ] ;;
  "image inspect") grep -qxF "$3" "$state/images" 2>/dev/null ;;
  "image ls") [ ! -s "$state/images" ] || sed 's/^/id-/' "$state/images" ;;
  "image rm") shift 2; for id in "$@"; do grep -vxF "${id#id-}" "$state/images" > "$state/images.new" || true
                                         mv "$state/images.new" "$state/images"; done ;;
  "import "*)
    for ref; do :; done
    tar -t > "$state/imported.list"
    [ -z "${LAB_TEST_IMPORT_FAIL:-}" ] || { echo "stand-in import failed" >&2; exit 1; }
    echo "$ref" >> "$state/images"
    echo "sha256:0123456789abcdef" ;;
  *) echo "stand-in docker: unexpected $*" >&2; exit 3 ;;
esac
''',
    # debootstrap --variant=minbase --include=... bookworm DIR MIRROR
    'debootstrap': r'''
echo "debootstrap $*" >> "$state/calls"
dir=${@: -2:1}
echo "$dir" > "$state/rootfs"
mkdir -p "$dir/etc/ssh" "$dir/etc/systemd/system/multi-user.target.wants" "$dir/usr/bin"
touch "$dir/etc/ssh/ssh_host_ed25519_key" "$dir/etc/systemd/system/multi-user.target.wants/ssh.service" \
      "$dir/etc/systemd/system/sshd.service" "$dir/usr/bin/true"
[ -z "${LAB_TEST_DEBOOTSTRAP_FAIL:-}" ] || { echo "E: stand-in debootstrap failed" >&2; exit 1; }
if [ -n "${LAB_TEST_DEBOOTSTRAP_SLOW:-}" ]; then touch "$state/debootstrap-running"; sleep 30; fi
echo "I: Base system installed successfully."
''',
    # apt-get: "installs" docker.io (a dockerd stand-in) and debootstrap;
    # with LAB_TEST_APT_STALE an install fails until an update ran.
    'apt-get': r'''
echo "apt-get $*" >> "$state/calls"
[ "$1" != update ] || { touch "$state/apt-updated"; exit 0; }
[ -z "${LAB_TEST_APT_STALE:-}" ] || [ -e "$state/apt-updated" ] || { echo "E: Unable to locate package" >&2; exit 100; }
for pkg; do
  case "$pkg" in
    docker.io) cp "$state/dockerd.stub" "$stubs/dockerd" ;;
    debootstrap) cp "$state/debootstrap.stub" "$stubs/debootstrap" ;;
  esac
done
''',
    # dockerd (only on PATH once "installed"): brings the engine up unless
    # LAB_TEST_ENGINE_DEAD says it never answers.
    'dockerd': r'''
echo "dockerd $*" >> "$state/calls"
echo "stand-in dockerd"
[ -n "${LAB_TEST_ENGINE_DEAD:-}" ] || touch "$state/engine-up"
''',
    'systemctl': r'''
echo "systemctl $*" >> "$state/calls"
[ "$*" = "start docker" ] && [ -x "$stubs/dockerd" ] || exit 5
[ -n "${LAB_TEST_ENGINE_DEAD:-}" ] || touch "$state/engine-up"
''',
    'umount': r'''
echo "umount $*" >> "$state/calls"
''',
}


class Lab:
    """A sandbox: stand-ins, a tool-only PATH, a state directory."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.state = tmp_path / 'state'
        self.stubs = tmp_path / 'stubs'
        self.tools = tmp_path / 'tools'
        self.rootfs_parent = tmp_path / 'rootfs-parent'
        stub_tools = tmp_path / 'stub-tools'
        for d in (self.state, self.stubs, self.tools, self.rootfs_parent, stub_tools):
            d.mkdir()
        for directory, names in ((self.tools, TOOLS), (stub_tools, STUB_TOOLS)):
            for name in names:
                real = shutil.which(name)
                assert real, 'this test needs %s' % name
                (directory / name).symlink_to(real)
        (self.tools / 'bash').symlink_to(BASH)
        header = '#!%s\nstate=%s\nstubs=%s\nPATH=%s:$PATH\n' % (BASH, self.state, self.stubs, stub_tools)
        for name, body in STUBS.items():
            path = self.state / (name + '.stub')
            path.write_text(header + body)
            path.chmod(0o755)
        # A machine with the engine's client and debootstrap, engine stopped.
        for name in ('docker', 'systemctl', 'umount', 'apt-get', 'debootstrap'):
            self.install(name)
        self.env = {
            'PATH': '%s:%s' % (self.stubs, self.tools),
            'HOME': str(tmp_path),
            'LANG': 'C',
            'LAB_TMPDIR': str(self.rootfs_parent),
            'LAB_DOCKERD_LOG': str(tmp_path / 'dockerd.log'),
            'LAB_ENGINE_WAIT': '5',
            # Belt and braces: nothing here may reach a real engine.
            'DOCKER_HOST': 'unix://%s/no-such.sock' % tmp_path,
        }

    def install(self, name):
        shutil.copy2(self.state / (name + '.stub'), self.stubs / name)

    def remove(self, name):
        (self.stubs / name).unlink()

    def engine_up(self):
        (self.state / 'engine-up').touch()

    def add_image(self, ref):
        with open(self.state / 'images', 'a') as handle:
            handle.write(ref + '\n')

    def images(self):
        path = self.state / 'images'
        return path.read_text().split() if path.exists() else []

    def calls(self):
        path = self.state / 'calls'
        return path.read_text().splitlines() if path.exists() else []

    def run(self, *args, **env):
        result = subprocess.run([BASH, str(LAB_SH)] + list(args), env=dict(self.env, **env), cwd=str(self.tmp),
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
        # No shell error of any kind, whatever the outcome: set -u, a
        # command not found, a trap referring to a name that is gone.
        for bad in ('unbound variable', 'command not found', 'syntax error', 'No such file or directory'):
            assert bad not in result.stderr, 'lab.sh %s: %s\n%s' % (' '.join(args), bad, result.stderr)
        return result


@pytest.fixture
def lab(tmp_path):
    return Lab(tmp_path)


def image_ref():
    digest = hashlib.sha256((LAB_SH.parent / 'image-packages.txt').read_bytes()).hexdigest()
    return '%s:%s' % (SETTINGS['lab_image_repo'], digest[:12])


def test_image_is_built_imported_and_the_rootfs_tree_removed(lab):
    lab.engine_up()
    result = lab.run('image')
    assert result.returncode == 0, result.stderr
    assert result.stdout == image_ref() + '\n'
    assert 'building ' + image_ref() in result.stderr
    assert lab.images() == [image_ref()]
    # The tree was made where LAB_TMPDIR says, then removed.
    rootfs = pathlib.Path((lab.state / 'rootfs').read_text().strip())
    assert rootfs.parent == lab.rootfs_parent
    assert not rootfs.exists() and not list(lab.rootfs_parent.iterdir())
    # What the import got: the tree, without the services and host keys the
    # roles manage.
    imported = (lab.state / 'imported.list').read_text().split()
    assert './usr/bin/true' in imported
    assert not [p for p in imported if 'ssh_host_' in p or p.endswith(('/ssh.service', '/sshd.service'))]
    calls = lab.calls()
    boot = [c for c in calls if c.startswith('debootstrap ')]
    assert len(boot) == 1 and '--variant=minbase' in boot[0] and ' bookworm %s ' % rootfs in boot[0]
    label = 'LABEL %s=base' % SETTINGS['lab_label']
    assert any(c.startswith('docker import ') and label in c and c.endswith(image_ref()) for c in calls)
    assert not [c for c in calls if c.startswith(('apt-get', 'dockerd', 'systemctl', 'umount'))]


def test_an_existing_image_is_only_named(lab):
    lab.engine_up()
    lab.add_image(image_ref())
    result = lab.run('image')
    assert result.returncode == 0, result.stderr
    assert result.stdout == image_ref() + '\n'
    assert 'building' not in result.stderr  # lab/tasks/up.yml: changed_when
    assert not [c for c in lab.calls() if c.startswith(('debootstrap', 'docker import', 'apt-get'))]
    assert not list(lab.rootfs_parent.iterdir())


def test_a_failed_debootstrap_fails_removes_the_tree_and_imports_nothing(lab):
    lab.engine_up()
    result = lab.run('image', LAB_TEST_DEBOOTSTRAP_FAIL='1')
    assert result.returncode != 0
    assert result.stdout == ''
    assert 'stand-in debootstrap failed' in result.stderr
    assert lab.images() == []
    assert not [c for c in lab.calls() if c.startswith('docker import')]
    assert (lab.state / 'rootfs').exists()
    assert not list(lab.rootfs_parent.iterdir())


def test_a_failed_import_fails_and_removes_the_tree(lab):
    lab.engine_up()
    result = lab.run('image', LAB_TEST_IMPORT_FAIL='1')
    assert result.returncode != 0
    assert result.stdout == ''
    assert lab.images() == []
    assert not list(lab.rootfs_parent.iterdir())


def test_an_interrupted_build_removes_the_tree(lab):
    """Ctrl-C during debootstrap: SIGINT to the whole process group."""
    lab.engine_up()
    proc = subprocess.Popen([BASH, str(LAB_SH), 'image'], env=dict(lab.env, LAB_TEST_DEBOOTSTRAP_SLOW='1'),
                            cwd=str(lab.tmp), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (lab.state / 'debootstrap-running').exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    assert out == ''
    assert 'unbound variable' not in err
    assert lab.images() == []
    assert not list(lab.rootfs_parent.iterdir())


def test_debootstrap_is_installed_when_missing(lab):
    lab.engine_up()
    lab.remove('debootstrap')
    result = lab.run('image', LAB_TEST_APT_STALE='1')
    assert result.returncode == 0, result.stderr
    assert result.stdout == image_ref() + '\n'
    apt = [c for c in lab.calls() if c.startswith('apt-get')]
    # A stale package list: the install fails, an update, the install again.
    assert apt == ['apt-get install -y -q debootstrap', 'apt-get update -q', 'apt-get install -y -q debootstrap']
    assert not list(lab.rootfs_parent.iterdir())


def test_a_running_engine_is_left_alone(lab):
    lab.engine_up()
    result = lab.run('engine')
    assert result.returncode == 0, result.stderr
    assert lab.calls() == ['docker info']


def test_no_engine_installs_docker_io_and_starts_it(lab):
    result = lab.run('engine', LAB_TEST_APT_STALE='1')
    assert result.returncode == 0, result.stderr
    assert result.stdout == ''
    calls = lab.calls()
    apt = [c for c in calls if c.startswith('apt-get')]
    assert apt[0] == 'apt-get update -q'
    assert apt[-1] == 'apt-get install -y -q docker.io'
    # Started by systemd where it runs, by hand (in the background) elsewhere.
    started = [c for c in calls if c in ('dockerd ', 'systemctl start docker')]
    assert len(started) == 1
    assert calls.index(started[0]) > calls.index(apt[-1])
    if started[0] == 'dockerd ':
        assert 'stand-in dockerd' in (lab.tmp / 'dockerd.log').read_text()
    assert calls[-1] == 'docker info'


def test_an_installed_engine_that_is_not_running_is_started_without_apt(lab):
    lab.install('dockerd')
    result = lab.run('engine')
    assert result.returncode == 0, result.stderr
    assert not [c for c in lab.calls() if c.startswith('apt-get')]
    assert [c for c in lab.calls() if c in ('dockerd ', 'systemctl start docker')]


def test_an_engine_that_never_answers_is_a_clear_error(lab):
    lab.install('dockerd')
    result = lab.run('engine', LAB_TEST_ENGINE_DEAD='1', LAB_ENGINE_WAIT='2')
    assert result.returncode == 1
    assert 'did not answer within 2 s' in result.stderr
    assert [c for c in lab.calls() if c == 'docker info'] == ['docker info'] * 3
    # image stops there too, before making a tree.
    result = lab.run('image', LAB_TEST_ENGINE_DEAD='1', LAB_ENGINE_WAIT='1')
    assert result.returncode == 1
    assert result.stdout == ''
    assert not list(lab.rootfs_parent.iterdir())
    assert not [c for c in lab.calls() if c.startswith('debootstrap')]


def test_rmi_removes_only_the_labs_images(lab):
    lab.engine_up()
    lab.add_image(image_ref())
    result = lab.run('rmi')
    assert result.returncode == 0, result.stderr
    assert lab.images() == []
    label = 'label=%s=base' % SETTINGS['lab_label']
    assert 'docker image ls -q --filter %s' % label in lab.calls()


def test_usage(lab):
    result = lab.run('nonsense')
    assert result.returncode == 2
    assert 'usage:' in result.stderr
    assert lab.calls() == []
