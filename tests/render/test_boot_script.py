"""The DPU's boot-time mount script (roles/qtfs_client/templates/dpu-offload-rootfs.sh.j2),
rendered for the lab's pair (sshfs) and for the qtfs pair: the whole text is
pinned, every mount line being the command dpu.offload.qtfs_mount runs for the
same item.

Until the script took its lines from the module's code (the mount_commands
filter), it wrote `mount -t TYPE [-o OPTS] SRC PATH` for every item: its qtfs
lines lacked the module's --no-canonicalize (a bugfix), and its bind lines
said `-t none`, which mount(8) drops for a bind anyway. Everything else is as
it was then."""
import json
import shlex
import subprocess

import pytest

HEAD = [
    '#!/bin/sh',
    '# Ansible managed',
    '# Mounts /another_rootfs again at boot, in the order the role mounts it',
    '# (the same plan), after clearing whatever a failed earlier attempt left.',
    'set -eu',
    'umount -R /another_rootfs 2>/dev/null || true',
]
# The module's own command (dpu.offload.kmod_command): parameters sorted by name.
INSMOD = ('[ -d /sys/module/qtfs ] || insmod /usr/local/lib/dpu-offload/qtfs/qtfs.ko'
          ' qtfs_log_level=ERROR qtfs_server_vsock_cid=2 qtfs_server_vsock_port=12345')


def module_command(item):
    """The command qtfs_mount runs for a plan item, written out independently of its code."""
    words = ['mount']
    if item['fstype'] == 'qtfs':
        words.append('--no-canonicalize')
    if item['fstype'] != 'none':
        words += ['-t', item['fstype']]
    if item['opts']:
        words += ['-o', item['opts']]
    return ' '.join(shlex.quote(w) for w in words + [item['src'], item['path']])


def _script(dpu_dir):
    path = dpu_dir / 'mount-rootfs.sh'
    assert subprocess.run(['sh', '-n', str(path)], check=False).returncode == 0
    plan = json.loads((dpu_dir / 'data.json').read_text())['boot_plan']
    return path.read_text().splitlines(), plan


@pytest.mark.parametrize('pair, head', [('lab', HEAD), ('vsock', HEAD + [INSMOD])])
def test_boot_script_is_the_modules_commands_in_plan_order(request, pair, head):
    lines, plan = _script(request.getfixturevalue(pair)[1])
    assert {'overlay', 'proc', 'none', 'cgroup'} <= set(item['fstype'] for item in plan)
    expected = list(head)
    for item in plan:
        expected += ['mkdir -p ' + shlex.quote(item['path']), module_command(item)]
    assert lines == expected


def test_lab_boot_script_lines(lab):
    lines, plan = _script(lab[1])
    sshfs = [item for item in plan if item['fstype'] == 'fuse.sshfs']
    assert sshfs and all(item['src'] == 'root@172.30.77.10:' + item['path'][len('/another_rootfs'):] for item in sshfs)
    for line in [
        'mount -t overlay -o lowerdir=/,upperdir=/var/lib/dpu-offload/rootfs/upper,workdir=/var/lib/dpu-offload/rootfs/work'
        ' dpu-offload-root /another_rootfs',
        'mount -t proc proc /another_rootfs/local_proc',
        'mount -o bind /run /another_rootfs/run',
        'mount -o bind /etc /another_rootfs/etc',
        'mount -t cgroup -o rw,nosuid,nodev,noexec,relatime,cpu,cpuacct cgroup /another_rootfs/sys/fs/cgroup/cpu,cpuacct',
        'mount -t fuse.sshfs -o reconnect,ServerAliveInterval=5,ServerAliveCountMax=3,allow_other,StrictHostKeyChecking=yes,'
        'IdentityFile=/etc/dpu-offload/sshfs/id_ed25519,UserKnownHostsFile=/etc/dpu-offload/sshfs/known_hosts,port=2222,direct_io'
        ' root@172.30.77.10:/proc /another_rootfs/proc',
        'mount -t fuse.sshfs -o reconnect,ServerAliveInterval=5,ServerAliveCountMax=3,allow_other,StrictHostKeyChecking=yes,'
        'IdentityFile=/etc/dpu-offload/sshfs/id_ed25519,UserKnownHostsFile=/etc/dpu-offload/sshfs/known_hosts,port=2222'
        ' root@172.30.77.10:/var/lib/docker/containers /another_rootfs/var/lib/docker/containers',
    ]:
        assert line in lines
    assert not any('insmod' in line or 'qtfs' in line for line in lines)


def test_qtfs_boot_script_lines(vsock):
    lines, plan = _script(vsock[1])
    qtfs = [line for line in lines if ' qtfs ' in line]
    assert len(qtfs) == len([item for item in plan if item['fstype'] == 'qtfs'])
    assert all(line.startswith('mount --no-canonicalize -t qtfs ') for line in qtfs)
    assert 'mount --no-canonicalize -t qtfs -o proc /proc /another_rootfs/proc' in lines
    assert 'mount --no-canonicalize -t qtfs /var/lib/docker/containers /another_rootfs/var/lib/docker/containers' in lines
    assert 'mount -o bind /var/lib /another_rootfs/var/lib' in lines
