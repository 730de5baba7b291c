"""The VM lab's tooling (lab/vm), without QEMU: settings, inventory, the
image's name, the initramfs's module order, the QEMU command lines and
stopping only the lab's own processes. lab/vm/smoke.sh boots the guests."""
import importlib.util
import ipaddress
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / 'lab/vm' / (name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vmlab = _load('vmlab')
image = vmlab.image
SETTINGS = vmlab.load_settings()
INVENTORY = ROOT / 'inventories/vm'


@pytest.fixture
def lab_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv('VM_LAB_STATE', str(tmp_path / 'state'))
    monkeypatch.setenv('VM_LAB_CACHE', str(tmp_path / 'cache'))
    (tmp_path / 'state').mkdir()
    return tmp_path


def _inventory(tmp_path, hosts, dpus):
    directory = tmp_path / 'inv'
    directory.mkdir(exist_ok=True)
    (directory / 'hosts.yml').write_text(yaml.safe_dump(
        {'offload_hosts': {'hosts': hosts}, 'offload_dpus': {'hosts': dpus}}))
    return str(directory)


# --- settings and inventory


def test_the_inventory_is_one_pair_inside_the_subnet_with_its_own_ports():
    host, dpu = vmlab.nodes(str(INVENTORY), SETTINGS)
    assert (host['role'], dpu['role']) == ('host', 'dpu')
    subnet = ipaddress.ip_network(SETTINGS['vm_subnet'])
    assert {ipaddress.ip_address(n['address']) for n in (host, dpu)} <= set(subnet.hosts())
    assert len({host['port'], dpu['port'], SETTINGS['vm_link_port']}) == 3
    data = yaml.safe_load((INVENTORY / 'hosts.yml').read_text())
    assert data['offload_dpus']['hosts'][dpu['name']]['dpu_offload_host'] == host['name']


def test_the_inventory_has_the_container_labs_groups_and_the_qtfs_transport():
    lab = yaml.safe_load((ROOT / 'inventories/lab/hosts.yml').read_text())
    vm = yaml.safe_load((INVENTORY / 'hosts.yml').read_text())
    # The pairs' groups; the container lab's control-plane container (lab_k8s) has no VM.
    assert sorted(vm) == sorted(group for group in lab if group != 'lab_k8s')
    group_vars = yaml.safe_load((INVENTORY / 'group_vars/all.yml').read_text())
    assert group_vars['ansible_connection'] == 'ssh'
    assert group_vars['dpu_offload_transport'] == 'qtfs'
    # No vsock between QEMU guests here: the TCP test-mode build, from a source archive.
    assert group_vars['offload_common_qtfs_connection'] == 'tcp'
    assert group_vars['qtfs_server_source'] == group_vars['qtfs_client_module_source'] == 'build'
    assert group_vars['qtfs_server_source_archive'] == group_vars['qtfs_client_source_archive'] \
        == '{{ lab_qtfs_archive }}'
    assert "lookup('ansible.builtin.env', 'QTFS_SOURCE')" in group_vars['lab_qtfs_archive']
    # The key and known_hosts of the lab, never the user's.
    assert '.lab/vm-image/ssh/id_ed25519' in group_vars['ansible_ssh_private_key_file']
    assert 'UserKnownHostsFile={{ lab_checkout }}/.lab/vm/known_hosts' in group_vars['ansible_ssh_common_args']
    assert (INVENTORY / 'group_vars/offload_hosts.yml').resolve() == ROOT / 'inventories/lab/group_vars/offload_hosts.yml'


def test_ansible_reads_the_inventory_with_its_paths_resolved():
    ansible_inventory = shutil.which('ansible-inventory', path=str(ROOT / '.venv/bin')) or shutil.which(
        'ansible-inventory')
    if not ansible_inventory:
        pytest.skip('no ansible-inventory')
    out = subprocess.run([ansible_inventory, '-i', str(INVENTORY), '--host', 'vm-dpu'], capture_output=True,
                         text=True, check=True, env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg')),
                         cwd=str(ROOT)).stdout
    hostvars = json.loads(out)
    assert hostvars['ansible_port'] == 2222 and hostvars['ansible_host'] == '127.0.0.1'
    assert hostvars['dpu_offload_host'] == 'vm-host'
    out = subprocess.run([ansible_inventory.replace('ansible-inventory', 'ansible'), 'vm-dpu', '-i', str(INVENTORY),
                          '-m', 'ansible.builtin.debug', '-a', 'var=qtfs_client_source_archive'],
                         capture_output=True, text=True, check=True, cwd=str(ROOT),
                         env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), QTFS_SOURCE='/srv/qtfs.tar.gz')).stdout
    assert 'qtfs_client_source_archive: /srv/qtfs.tar.gz' in out
    # The checkout: the inventory's own, or DPU_OFFLOAD_CHECKOUT's (molecule reads the inventory through links).
    for checkout, env in ((ROOT, {}), ('/srv/checkout', {'DPU_OFFLOAD_CHECKOUT': '/srv/checkout'})):
        out = subprocess.run([ansible_inventory.replace('ansible-inventory', 'ansible'), 'vm-dpu', '-i', str(INVENTORY),
                              '-m', 'ansible.builtin.debug', '-a', 'var=ansible_ssh_private_key_file'],
                             capture_output=True, text=True, check=True, cwd=str(ROOT),
                             env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), **env)).stdout
        assert 'ansible_ssh_private_key_file: %s/.lab/vm-image/ssh/id_ed25519' % checkout in out, out


@pytest.mark.parametrize('hosts, dpus, message', [
    ({'a': {'dpu_offload_address': '10.213.0.10', 'ansible_port': 1},
      'b': {'dpu_offload_address': '10.213.0.11', 'ansible_port': 2}},
     {'c': {'dpu_offload_address': '10.213.0.20', 'ansible_port': 3}}, 'exactly one host, not 2'),
    ({'a': {'dpu_offload_address': '10.213.0.10', 'ansible_port': 1}},
     {'c': {'dpu_offload_address': '10.9.0.20', 'ansible_port': 3}}, 'outside vm_subnet'),
    ({'a': {'dpu_offload_address': '10.213.0.10', 'ansible_port': 2}},
     {'c': {'dpu_offload_address': '10.213.0.20', 'ansible_port': 2}}, 'must all differ'),
    ({'a': {'dpu_offload_address': '10.213.0.10'}},
     {'c': {'dpu_offload_address': '10.213.0.20', 'ansible_port': 2}}, 'a has no ansible_port'),
    ({'a': {'dpu_offload_address': '10.213.0.10', 'ansible_port': 1}},
     {'c': {'dpu_offload_address': '10.213.0.10', 'ansible_port': 2}}, 'different addresses'),
])
def test_inventories_the_lab_cannot_make_are_refused(tmp_path, hosts, dpus, message):
    with pytest.raises(vmlab.LabError, match=message):
        vmlab.nodes(_inventory(tmp_path, hosts, dpus), SETTINGS)


# --- the image's name


def _inputs(tmp_path):
    files = []
    for relative in ('vm/image.py', 'vm/init', 'image-packages.txt', 'vm/image-packages.txt'):
        target = tmp_path / 'lab' / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / 'lab' / relative, target)
        files.append(str(target))
    return files


def test_the_image_name_changes_with_every_input_and_only_with_them(tmp_path):
    files = _inputs(tmp_path)
    settings = dict(SETTINGS['vm_image'])
    name = image.image_name(settings, '6.1.0-57-amd64', 'ssh-ed25519 AAAA lab', files)
    assert name.startswith(image.PREFIX)
    # Stable: same inputs, same name (trailing whitespace of a key is no change).
    assert image.image_name(dict(settings), '6.1.0-57-amd64', 'ssh-ed25519 AAAA lab\n', files) == name
    changed = {
        'kernel': image.image_name(settings, '6.1.0-58-amd64', 'ssh-ed25519 AAAA lab', files),
        'key': image.image_name(settings, '6.1.0-57-amd64', 'ssh-ed25519 BBBB lab', files),
        'settings': image.image_name(dict(settings, size='8G'), '6.1.0-57-amd64', 'ssh-ed25519 AAAA lab', files),
    }
    for path in files:
        original = pathlib.Path(path).read_bytes()
        pathlib.Path(path).write_bytes(original + b'\n# edited\n')
        changed[path] = image.image_name(settings, '6.1.0-57-amd64', 'ssh-ed25519 AAAA lab', files)
        pathlib.Path(path).write_bytes(original)
    assert name not in changed.values()
    assert len(set(changed.values())) == len(changed)


def test_the_default_inputs_are_the_files_of_the_checkout():
    assert [os.path.relpath(f, ROOT) for f in image.INPUT_FILES] == [
        'lab/vm/image.py', 'lab/vm/init', 'lab/image-packages.txt', 'lab/vm/image-packages.txt']
    # vmlab.py (bring-up) is no input: editing it rebuilds nothing.
    assert str(ROOT / 'lab/vm/vmlab.py') not in image.INPUT_FILES


def test_an_image_is_cached_only_when_all_four_files_are_there(tmp_path):
    name = image.PREFIX + 'abc'
    files = image.artifacts(str(tmp_path), name)
    for suffix in ('.vmlinuz', '.initrd', '.host_key.pub'):
        pathlib.Path(files[suffix]).write_text('x')
    assert not image.cached(str(tmp_path), name)  # the .img lands last
    pathlib.Path(files['.img']).write_text('x')
    assert image.cached(str(tmp_path), name)


def test_a_new_image_replaces_only_the_labs_older_ones(tmp_path):
    for entry in ('dpu-offload-vm-old.img', 'dpu-offload-vm-old.initrd', 'dpu-offload-vm-new.img',
                  'dpu-offload-vm-new.vmlinuz', 'dpu-offload-vm-old.img.partial', 'someone-else.img', 'notes.txt'):
        (tmp_path / entry).write_text('x')
    image.remove_others(str(tmp_path), keep='dpu-offload-vm-new')
    assert sorted(os.listdir(tmp_path)) == ['dpu-offload-vm-new.img', 'dpu-offload-vm-new.vmlinuz',
                                            'notes.txt', 'someone-else.img']
    image.remove_others(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ['notes.txt', 'someone-else.img']


def test_package_lists_skip_comments_and_blank_lines(tmp_path):
    path = tmp_path / 'list.txt'
    path.write_text('# header\ngcc\n\nmake  # why\n   \nlibc6-dev\n')
    assert image.read_packages(str(path)) == ['gcc', 'make', 'libc6-dev']
    assert 'gcc' in image.read_packages(str(ROOT / 'lab/vm/image-packages.txt'))


# --- the kernel and the mirrors


APT_CACHE_SHOW = """Package: linux-image-amd64
Source: linux-signed-amd64 (6.1.192+3)
Version: 6.1.192-3
Installed-Size: 13
Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)
Description: Linux for 64-bit PCs (meta-package)
"""


def test_the_kernel_abi_comes_from_the_metapackage():
    assert image.abi_from_apt_cache(APT_CACHE_SHOW, 'linux-image-amd64') == '6.1.0-57-amd64'
    with pytest.raises(ValueError, match='no linux-image-<abi>'):
        image.abi_from_apt_cache('Package: x\nDepends: libc6\n', 'x')


def test_a_pinned_abi_wins_and_an_unknown_package_updates_the_lists_first():
    assert image.kernel_abi({'kernel_abi': '6.1.0-50-amd64', 'kernel_package': 'x'}, run=None) == '6.1.0-50-amd64'
    calls = []

    def run(argv, **_):
        calls.append(argv[:2])
        known = ['apt-get', 'update'] in calls
        return subprocess.CompletedProcess(argv, 0 if known or argv[0] == 'apt-get' else 100,
                                           APT_CACHE_SHOW if known else '', '')

    assert image.kernel_abi({'kernel_abi': '', 'kernel_package': 'linux-image-amd64'}, run=run) == '6.1.0-57-amd64'
    assert calls == [['apt-cache', 'show'], ['apt-get', 'update'], ['apt-cache', 'show']]


def test_mirrors_come_from_either_sources_format():
    deb822 = ('Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n'
              'Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n'
              'Suites: bookworm-security\nComponents: main\n')
    assert image.apt_mirrors(deb822, 'bookworm') == ('http://mirror.example/debian',
                                                     'http://mirror.example/debian-security')
    one_line = ('deb [arch=amd64] http://m.example/debian bookworm main\n'
                'deb http://s.example/ bookworm-security main\ndeb https://other.example/apt cloud-sdk main\n')
    assert image.apt_mirrors(one_line, 'bookworm') == ('http://m.example/debian', 'http://s.example/')
    assert image.apt_mirrors('', 'bookworm') == ('http://deb.debian.org/debian', 'http://deb.debian.org/debian-security')


# --- the initramfs


MODULES_DEP = """kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/dummy-net.ko:
"""


def test_modules_load_after_their_dependencies_each_once():
    order = image.load_order(MODULES_DEP, 'kernel/fs/ext4/ext4.ko\n', ['virtio_pci', 'virtio_blk', 'crc32c_generic'])
    names = [image.module_name(p) for p in order]
    assert names == ['virtio_pci_modern_dev', 'virtio_ring', 'virtio', 'virtio_pci', 'virtio_blk', 'crc32c_generic']
    order = image.load_order(MODULES_DEP, '', ['ext4', 'dummy_net'])
    names = [image.module_name(p) for p in order]
    assert names.index('ext4') == 3 and set(names[:3]) == {'crc16', 'mbcache', 'jbd2'}
    assert names[-1] == 'dummy_net'  # '-' and '_' are the same in module names


def test_a_builtin_module_needs_nothing_and_a_missing_one_is_an_error():
    assert image.load_order(MODULES_DEP, 'kernel/fs/ext4/ext4.ko\n', ['ext4']) == []
    with pytest.raises(ValueError, match='no module virtio_scsi'):
        image.load_order(MODULES_DEP, '', ['virtio_scsi'])
    with pytest.raises(ValueError, match='cycle'):
        image.load_order('a.ko: b.ko\nb.ko: a.ko\n', '', ['a'])


def test_the_initramfs_holds_busybox_the_modules_in_order_and_init(tmp_path):
    if not shutil.which('cpio'):
        pytest.skip('no cpio')
    tree = tmp_path / 'tree'
    base = tree / 'lib/modules/6.1.0-57-amd64'
    for line in MODULES_DEP.splitlines():
        path = base / line.split(':')[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(path.name)
    (base / 'modules.dep').write_text(MODULES_DEP)
    (base / 'modules.builtin').write_text('')
    (tree / 'bin').mkdir()
    (tree / 'bin/busybox').write_text('busybox')
    output = tmp_path / 'initrd'
    image.write_initramfs(str(tree), '6.1.0-57-amd64', ['virtio_blk'], str(ROOT / 'lab/vm/init'), str(output))
    unpacked = tmp_path / 'unpacked'
    unpacked.mkdir()
    subprocess.run('gzip -dc %s | cpio --quiet -id' % output, shell=True, cwd=str(unpacked), check=True)
    assert (unpacked / 'modules.order').read_text().split() == [
        'kernel/drivers/virtio/virtio_ring.ko', 'kernel/drivers/virtio/virtio.ko', 'kernel/drivers/block/virtio_blk.ko']
    assert (unpacked / 'lib/modules/kernel/drivers/block/virtio_blk.ko').read_text() == 'virtio_blk.ko'
    assert not (unpacked / 'lib/modules/kernel/fs').exists()
    assert os.access(unpacked / 'init', os.X_OK) and (unpacked / 'bin/busybox').exists()
    assert os.readlink(unpacked / 'bin/sh') == 'busybox'  # init's interpreter


def test_init_is_valid_shell_and_switches_to_systemd():
    text = (ROOT / 'lab/vm/init').read_text()
    assert subprocess.run(['sh', '-n', str(ROOT / 'lab/vm/init')], check=False).returncode == 0
    assert text.startswith('#!/bin/sh\n')
    assert 'switch_root /newroot /sbin/init' in text
    assert 'poweroff -f' in text  # a failed boot ends QEMU instead of hanging until the timeout


def test_the_tree_is_made_a_lab_guest(tmp_path):
    tree = tmp_path / 'tree'
    (tree / 'etc').mkdir(parents=True)
    (tree / 'etc/hostname').write_text('buildhost\n')
    (tree / 'etc/machine-id').write_text('0123\n')
    image.configure_tree(str(tree), SETTINGS['vm_image'], 'ssh-ed25519 AAAA lab\n')
    assert not (tree / 'etc/hostname').exists()
    assert (tree / 'etc/machine-id').read_text() == ''
    assert os.readlink(tree / 'etc/systemd/system/e2scrub_reap.service') == '/dev/null'
    assert os.readlink(tree / 'etc/systemd/system/sysinit.target.wants/systemd-network-generator.service') \
        == '/lib/systemd/system/systemd-network-generator.service'
    keys = tree / 'root/.ssh/authorized_keys'
    assert keys.read_text() == 'ssh-ed25519 AAAA lab\n' and keys.stat().st_mode & 0o077 == 0
    assert (tree / 'etc/fstab').read_text().startswith('/dev/vda / ext4 ')


# --- bring-up


def test_qemu_command_lines(lab_dirs):
    host, dpu = vmlab.nodes(str(INVENTORY), SETTINGS)
    artifacts = image.artifacts('/cache', 'dpu-offload-vm-x')
    argv = {n['role']: vmlab.qemu_argv(n, SETTINGS, artifacts) for n in (host, dpu)}
    for node in (host, dpu):
        args = argv[node['role']]
        assert args[:3] == ['nice', '-n', str(SETTINGS['vm_nice'])]
        assert args[args.index('-accel') + 1] == SETTINGS['vm_accel']
        assert args[args.index('-m') + 1] == str(SETTINGS['vm_memory'])
        assert 'user,id=mgmt,hostfwd=tcp:127.0.0.1:%d-:22' % node['port'] in args
        assert args[args.index('-pidfile') + 1] == vmlab.paths(node)['pid']
        assert 'file=%s,if=virtio,format=qcow2' % vmlab.paths(node)['overlay'] in args
        cmdline = args[args.index('-append') + 1]
        assert 'systemd.hostname=%s' % node['name'] in cmdline.split()
        assert 'ip=%s:::255.255.255.0::eth1:none' % node['address'] in cmdline.split()
        assert cmdline.split()[-len(SETTINGS['vm_kernel_args']):] == SETTINGS['vm_kernel_args']
        assert args[args.index('-kernel') + 1] == '/cache/dpu-offload-vm-x.vmlinuz'
        assert '-daemonize' in args and '-snapshot' not in args
    port = SETTINGS['vm_link_port']
    assert 'socket,id=link,listen=127.0.0.1:%d' % port in argv['host']
    assert 'socket,id=link,connect=127.0.0.1:%d' % port in argv['dpu']
    macs = [a for role in argv for a in argv[role] if 'mac=' in a]
    assert len(set(m.split('mac=')[1].split(',')[0] for m in macs)) == 4


def test_known_hosts_pins_the_image_key_on_each_port():
    found = vmlab.nodes(str(INVENTORY), SETTINGS)
    text = vmlab.known_hosts(found, 'ssh-ed25519 AAAAkey root@build\n')
    assert text == '[127.0.0.1]:2221 ssh-ed25519 AAAAkey root@build\n[127.0.0.1]:2222 ssh-ed25519 AAAAkey root@build\n'


def test_ssh_uses_the_labs_key_and_known_hosts_only(lab_dirs):
    node = vmlab.nodes(str(INVENTORY), SETTINGS)[1]
    argv = vmlab.ssh_argv(node, 'true')
    assert argv[argv.index('-i') + 1] == str(lab_dirs / 'cache/ssh/id_ed25519')
    assert 'UserKnownHostsFile=%s' % (lab_dirs / 'state/known_hosts') in argv
    assert 'StrictHostKeyChecking=yes' in argv and argv[-2:] == ['root@127.0.0.1', 'true']


def _fake_guest(overlay):
    """A process whose command line names overlay, as a guest's QEMU does."""
    return subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', 'file=%s,if=virtio' % overlay])


def test_down_stops_only_the_recorded_guests_and_removes_their_files(lab_dirs):
    state = lab_dirs / 'state'
    guest = _fake_guest(state / 'vm-host.qcow2')
    stranger = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
    try:
        (state / 'vm-host.pid').write_text('%d\n' % guest.pid)
        (state / 'vm-host.qcow2').write_text('overlay')
        (state / 'vm-host.console.log').write_text('log')
        # A pid file whose pid is now another process (reused pid): not ours.
        (state / 'vm-dpu.pid').write_text('%d\n' % stranger.pid)
        (state / 'known_hosts').write_text('x')
        (state / 'unrelated.txt').write_text('kept')
        node = {'name': 'vm-host'}
        assert vmlab.running(node) == guest.pid
        vmlab.down()
        assert guest.wait(timeout=10) is not None
        time.sleep(0.2)
        assert stranger.poll() is None, 'down stopped a process it did not start'
        assert sorted(os.listdir(state)) == ['unrelated.txt']
        assert vmlab.running(node) is None
    finally:
        for proc in (guest, stranger):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_down_with_nothing_running_is_a_no_op(lab_dirs):
    vmlab.down()
    assert os.listdir(lab_dirs / 'state') == []
    shutil.rmtree(lab_dirs / 'state')
    vmlab.down()


def test_main_reports_a_bad_inventory_without_a_traceback(tmp_path, capsys):
    inventory = _inventory(tmp_path, {}, {})
    assert vmlab.main(['status', '-i', inventory]) == 1
    assert 'exactly one host, not 0' in capsys.readouterr().err


def test_deps_installs_only_the_missing_tools_updating_stale_lists_once(tmp_path, monkeypatch):
    """A fresh machine: no QEMU, no debootstrap; apt's lists too old until an update."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    calls = tmp_path / 'calls'
    (bin_dir / 'apt-get').write_text(
        '#!/bin/sh\necho "apt-get $*" >> %s\n'
        '[ "$1" = update ] && { : > %s/updated; exit 0; }\n[ -e %s/updated ] || exit 100\n'
        % (calls, tmp_path, tmp_path))
    (bin_dir / 'apt-get').chmod(0o755)
    for present in ('mkfs.ext4', 'ssh', 'ssh-keygen'):
        (bin_dir / present).write_text('#!/bin/sh\n')
        (bin_dir / present).chmod(0o755)
    monkeypatch.setenv('PATH', str(bin_dir))
    vmlab.deps()
    install = 'apt-get install -y -q --no-install-recommends cpio debootstrap qemu-system-x86 qemu-utils'
    assert calls.read_text().splitlines() == [install, 'apt-get update -q', install]


def test_a_guest_that_died_while_booting_is_reported_with_its_console(lab_dirs):
    node = vmlab.nodes(str(INVENTORY), SETTINGS)[0]
    (lab_dirs / 'state' / (node['name'] + '.console.log')).write_text('initramfs: /dev/vda did not appear\n')
    with pytest.raises(vmlab.LabError, match='QEMU exited while booting(.|\n)*/dev/vda did not appear'):
        vmlab.wait_for(node, time.monotonic(), time.monotonic() + 60)


def _ensure_image_world(lab_dirs, monkeypatch, abis, cached_names=()):
    calls = []
    monkeypatch.setattr(vmlab, 'deps', lambda: None)
    monkeypatch.setattr(vmlab, 'ensure_key', lambda: 'ssh-ed25519 AAAA lab')
    monkeypatch.setattr(image, 'kernel_abi', lambda s: abis.pop(0) if len(abis) > 1 else abis[0])
    monkeypatch.setattr(image, 'cached', lambda d, name: name in cached_names)
    monkeypatch.setattr(image, 'build', lambda d, name, s, abi, key, **_: calls.append(('build', abi)))
    monkeypatch.setattr(vmlab.subprocess, 'run', lambda argv, **_: calls.append(tuple(argv)))
    return calls


def test_a_cached_image_is_used_without_touching_apt(lab_dirs, monkeypatch):
    name = image.image_name(SETTINGS['vm_image'], '6.1.0-57-amd64', 'ssh-ed25519 AAAA lab')
    calls = _ensure_image_world(lab_dirs, monkeypatch, ['6.1.0-57-amd64'], [name])
    assert vmlab.ensure_image(SETTINGS)['.img'].endswith(name + '.img')
    assert calls == []


def test_a_build_resolves_the_kernel_against_fresh_lists_first(lab_dirs, monkeypatch):
    # The machine's lists say -57; after an update the archive has -58 only.
    calls = _ensure_image_world(lab_dirs, monkeypatch, ['6.1.0-57-amd64', '6.1.0-58-amd64'])
    artifacts = vmlab.ensure_image(SETTINGS)
    assert calls == [('apt-get', 'update', '-q'), ('build', '6.1.0-58-amd64')]
    assert artifacts['.img'].endswith(image.image_name(SETTINGS['vm_image'], '6.1.0-58-amd64',
                                                       'ssh-ed25519 AAAA lab') + '.img')
    # A pinned ABI is built as it is.
    calls = _ensure_image_world(lab_dirs, monkeypatch, ['6.1.0-50-amd64'])
    vmlab.ensure_image(dict(SETTINGS, vm_image=dict(SETTINGS['vm_image'], kernel_abi='6.1.0-50-amd64')))
    assert calls == [('build', '6.1.0-50-amd64')]
