"""What the roles derive from the pairing and from offload_common_shared_mounts,
rendered with their own defaults, vars and templates (tests/render/derived.yml)
for IPv4 and IPv6 pairs over qtfs and sshfs, and pinned to what the roles made before these
derivations moved into filters."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED_LIST = yaml.safe_load((ROOT / 'roles/offload_common/defaults/main/shared_mounts.yml').read_text())['offload_common_shared_mounts']


def _render(out):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    result = subprocess.run([playbook, '-i', str(HERE / 'pairs.yml'), str(HERE / 'derived.yml'),
                             '-e', 'render_dir=%s' % out],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.fixture(scope='module')
def out(tmp_path_factory):
    return _render(tmp_path_factory.mktemp('derived'))


def _data(out, node):
    return json.loads((out / node / 'data.json').read_text())


# The HOST's directories and modes as qtfs_server_directories listed them by
# hand before they were derived from the shared list.
HOST_DIRECTORIES_BEFORE = {
    '/var/lib/docker/containers': '0710', '/var/lib/docker/containerd': '0711', '/var/lib/docker/overlay2': '0710',
    '/var/lib/docker/image': '0700', '/var/lib/docker/tmp': '0700', '/run/docker/containerd': '0711',
    '/run/docker/netns': '0755', '/run/containerd/io.containerd.runtime.v1.linux': '0711', '/var/lib/kubelet/pods': '0750',
}


def test_host_directories_are_the_shared_list_without_proc_and_sys_then_netns(out):
    for node in ('q4-host', 's4-host', 's6-host'):
        directories = _data(out, node)['directories']
        assert {d['path']: d['mode'] for d in directories} == HOST_DIRECTORIES_BEFORE
        assert [d['path'] for d in directories] == [e['path'] for e in SHARED_LIST if not e.get('pseudo')] + ['/run/docker/netns']
        # file_set gives a parent it creates the mode of the entry that needs it
        # first: /run/docker comes from /run/docker/containerd, as before.
        paths = [d['path'] for d in directories]
        assert paths.index('/run/docker/containerd') < paths.index('/run/docker/netns')
    assert _data(out, 'q4-dpu')['directories'] == []
