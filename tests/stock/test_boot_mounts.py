"""The stock mode's boot unit and script (dpu-offload-stock-mounts.service),
rendered by Ansible from the role's templates and run against stand-in
mount(8)/mountpoint(1): the mounts the deploy made, again at boot, in order,
each at a mount point of the right kind, the ones already there left alone."""
import configparser
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'render'))
from render_lib import render_template  # noqa: E402  pylint: disable=wrong-import-position

TEMPLATES = ROOT / 'roles/stock_engine/templates'
# The boot script is offload_common's (qtfs_server's HOST binds use it too).
SCRIPT = ROOT / 'roles/offload_common/templates/boot-mounts.sh.j2'

# Stand-ins: mountpoint says yes for the paths in $MOUNTED; mount records its arguments.
MOUNTPOINT = '#!/bin/sh\n[ "$1" = -q ] && shift\ncase " $MOUNTED " in *" $1 "*) exit 0;; esac\nexit 1\n'
MOUNT = '#!/bin/sh\nprintf "%s\\n" "$*" >> "$CALLS"\n'


def render(tmp_path, template, **variables):
    return render_template(TEMPLATES / template, tmp_path / template.replace('.j2', ''),
                           dict({'__stock_engine_boot_unit': 'dpu-offload-stock-mounts.service'}, **variables), mode='0755')


def render_script(tmp_path, mounts):
    return render_template(SCRIPT, tmp_path / 'boot-mounts.sh',
                           {'offload_common_boot_unit': 'dpu-offload-stock-mounts.service', 'offload_common_boot_mounts': mounts},
                           mode='0755')


def test_the_boot_script_mounts_in_order_at_the_right_kind_of_mount_point(tmp_path):
    (tmp_path / 'keep' / 'bundles').mkdir(parents=True)
    (tmp_path / 'ns').write_text('')
    mounts = [
        {'path': str(tmp_path / 'run' / 'bundles'), 'src': str(tmp_path / 'keep' / 'bundles'), 'opts': 'bind'},
        {'path': str(tmp_path / 'chroot' / 'run' / 'bundles'), 'src': str(tmp_path / 'run' / 'bundles'), 'fstype': 'none', 'opts': 'bind,ro'},
        {'path': str(tmp_path / 'peer'), 'src': 'root@[fd00::20]:/var/lib/x', 'fstype': 'fuse.sshfs', 'opts': 'reconnect,port=2222'},
        {'path': str(tmp_path / 'netns' / 'default'), 'src': str(tmp_path / 'ns'), 'opts': 'bind'},
    ]
    script = render_script(tmp_path, mounts)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, body in (('mountpoint', MOUNTPOINT), ('mount', MOUNT)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / 'calls'
    env = dict(os.environ, PATH='%s:/usr/bin:/bin' % bin_dir, CALLS=str(calls), MOUNTED=mounts[1]['path'])
    subprocess.run(['sh', str(script)], env=env, check=True, timeout=30)
    # The one already mounted is left alone; the others are mounted as dpu.offload.qtfs_mount does.
    assert calls.read_text().splitlines() == [
        '-o bind %s %s' % (mounts[0]['src'], mounts[0]['path']),
        '-t fuse.sshfs -o reconnect,port=2222 %s %s' % (mounts[2]['src'], mounts[2]['path']),
        '-o bind %s %s' % (mounts[3]['src'], mounts[3]['path']),
    ]
    assert (tmp_path / 'run' / 'bundles').is_dir() and (tmp_path / 'peer').is_dir()
    # A namespace file is bound onto a file.
    assert (tmp_path / 'netns' / 'default').is_file()


def test_a_failed_mount_fails_the_unit_so_that_systemd_tries_again(tmp_path):
    mounts = [{'path': str(tmp_path / 'a'), 'src': 'root@dpu:/a', 'fstype': 'fuse.sshfs', 'opts': 'reconnect'},
              {'path': str(tmp_path / 'b'), 'src': 'root@dpu:/b', 'fstype': 'fuse.sshfs', 'opts': 'reconnect'}]
    script = render_script(tmp_path, mounts)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'mountpoint').write_text('#!/bin/sh\nexit 1\n')
    (bin_dir / 'mount').write_text('#!/bin/sh\necho "$*" >> "$CALLS"; exit 32\n')
    for name in ('mountpoint', 'mount'):
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / 'calls'
    result = subprocess.run(['sh', str(script)], env=dict(os.environ, PATH='%s:/usr/bin:/bin' % bin_dir, CALLS=str(calls)),
                            timeout=30, check=False)
    assert result.returncode == 32 and len(calls.read_text().splitlines()) == 1


def unit(tmp_path, is_host, services, serves_sftp):
    path = render(tmp_path, 'boot-mounts.service.j2', offload_common_is_host=is_host, __stock_engine_serves_sftp=serves_sftp,
                  __stock_engine_services_here=[{'name': name} for name in services],
                  __stock_engine_boot_script='/usr/local/lib/dpu-offload/stock-engine/boot-mounts.sh')
    parsed = configparser.ConfigParser(interpolation=None, strict=False)
    parsed.read_string(path.read_text())
    return parsed


def test_the_dpus_engine_and_relays_start_after_its_mounts(tmp_path):
    parsed = unit(tmp_path, False, ['dpu-offload-stock-shims.service', 'dpu-offload-stock-fiforelay.service'], True)
    assert parsed['Unit']['Before'].split() == ['containerd.service', 'docker.service', 'dpu-offload-sftp.service',
                                                'dpu-offload-stock-shims.service', 'dpu-offload-stock-fiforelay.service']
    assert 'Upholds' not in parsed['Unit']
    assert parsed['Service']['Type'] == 'oneshot' and parsed['Service']['Restart'] == 'on-failure'
    assert parsed['Unit']['StartLimitIntervalSec'] == '0'


def test_the_hosts_rexec_is_held_until_the_mounts_are_up(tmp_path):
    parsed = unit(tmp_path, True, ['dpu-offload-stock-ttrpc.service'], False)
    assert parsed['Unit']['Before'].split() == ['rexec.service', 'dpu-offload-stock-ttrpc.service']
    assert parsed['Unit']['Upholds'] == 'rexec.service'
    dropin = configparser.ConfigParser(interpolation=None, strict=False)
    dropin.read_string(render(tmp_path, 'rexec-dropin.conf.j2').read_text())
    assert dropin['Unit']['Requires'] == dropin['Unit']['After'] == 'dpu-offload-stock-mounts.service'
