"""The VM lab: the HOST and the DPU of an inventory as two QEMU guests.

  vmlab.py deps                 install the tools it needs from Debian, where missing
  vmlab.py image                build the guest image once (lab/vm/image.py), print its path
  vmlab.py up [-i INVENTORY]    boot both guests copy-on-write from the image, wait for SSH and systemd
  vmlab.py status               pids, ports and memory of the running guests
  vmlab.py ssh NODE [COMMAND]   a shell (or a command) on a guest, as root
  vmlab.py down                 stop the guests this lab started (by pid) and remove their files
  vmlab.py clean                down, then remove the cached images and the lab's key

Settings: lab/vm/settings.yml. The inventory (default inventories/vm) names
one HOST (offload_hosts) and one DPU (offload_dpus), each with its
dpu_offload_address on the private link and ansible_port, the controller's
port forwarded to the guest's SSH. Runtime files are under .lab/vm/ (or
$VM_LAB_STATE), the image and the lab's key under .lab/vm-image/ (or
$VM_LAB_CACHE); nothing else on the machine is touched.
"""
import argparse
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import image  # noqa: E402  pylint: disable=wrong-import-position

SETTINGS = os.path.join(HERE, 'settings.yml')
DEFAULT_INVENTORY = os.path.join(ROOT, 'inventories', 'vm')
# command -> Debian package, for `deps`.
TOOLS = {'qemu-system-x86_64': 'qemu-system-x86', 'qemu-img': 'qemu-utils', 'debootstrap': 'debootstrap',
         'mkfs.ext4': 'e2fsprogs', 'cpio': 'cpio', 'ssh': 'openssh-client', 'ssh-keygen': 'openssh-client'}
# QEMU's user network: the guest's fixed address, its gateway and DNS.
USER_NET = ('10.0.2.15', '10.0.2.2', '255.255.255.0')
log = image.log


class LabError(Exception):
    pass


def state_dir():
    return os.environ.get('VM_LAB_STATE', os.path.join(ROOT, '.lab', 'vm'))


def cache_dir():
    return os.environ.get('VM_LAB_CACHE', os.path.join(ROOT, '.lab', 'vm-image'))


def key_path():
    return os.path.join(cache_dir(), 'ssh', 'id_ed25519')


def known_hosts_path():
    return os.path.join(state_dir(), 'known_hosts')


def load_settings(path=SETTINGS):
    with open(path, encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def nodes(inventory, settings):
    """[host, dpu] of the inventory directory, each a dict: name, role, address, port, index."""
    with open(os.path.join(inventory, 'hosts.yml'), encoding='utf-8') as handle:
        data = yaml.safe_load(handle) or {}
    found = []
    for group, role in (('offload_hosts', 'host'), ('offload_dpus', 'dpu')):
        hosts = (data.get(group) or {}).get('hosts') or {}
        if len(hosts) != 1:
            raise LabError('%s: the VM lab is one pair, so %s needs exactly one host, not %d'
                           % (inventory, group, len(hosts)))
        for name, values in hosts.items():
            values = values or {}
            for key in ('dpu_offload_address', 'ansible_port'):
                if key not in values:
                    raise LabError('%s: %s has no %s' % (inventory, name, key))
            found.append({'name': name, 'role': role, 'address': values['dpu_offload_address'],
                          'port': int(values['ansible_port']), 'index': len(found) + 1})
    subnet = ipaddress.ip_network(settings['vm_subnet'])
    for node in found:
        if ipaddress.ip_address(node['address']) not in subnet:
            raise LabError('%s: %s is outside vm_subnet %s (lab/vm/settings.yml)'
                           % (node['name'], node['address'], subnet))
    ports = [n['port'] for n in found] + [settings['vm_link_port']]
    if len(set(ports)) != len(ports):
        raise LabError('the SSH ports and vm_link_port must all differ: %s' % ports)
    if found[0]['address'] == found[1]['address']:
        raise LabError('the HOST and the DPU need different addresses')
    return found


def paths(node):
    base = os.path.join(state_dir(), node['name'])
    return {'overlay': base + '.qcow2', 'pid': base + '.pid', 'console': base + '.console.log'}


def mac(node, nic):
    """Fixed, distinct MACs: the private link is one segment, so its two ends must differ."""
    return '52:54:00:d0:%02x:%02x' % (nic, node['index'])


def kernel_cmdline(node, settings):
    netmask = ipaddress.ip_network(settings['vm_subnet']).netmask
    guest, gateway, user_mask = USER_NET
    return ' '.join([
        'console=ttyS0', 'root=/dev/vda', 'rw', 'quiet', 'net.ifnames=0',
        'systemd.hostname=' + node['name'],
        # systemd-network-generator's syntax: address::gateway:netmask::interface:none
        'ip=%s::%s:%s::eth0:none' % (guest, gateway, user_mask),
        'ip=%s:::%s::eth1:none' % (node['address'], netmask),
    ] + list(settings.get('vm_kernel_args', [])))


def qemu_argv(node, settings, artifacts):
    """The command that starts one guest, daemonized, its pid in its pid file."""
    files = paths(node)
    link = 'listen' if node['role'] == 'host' else 'connect'
    return [
        'nice', '-n', str(settings['vm_nice']),
        'qemu-system-x86_64', '-name', node['name'], '-nodefaults', '-no-user-config',
        '-accel', settings['vm_accel'], '-cpu', settings['vm_cpu'],
        '-m', str(settings['vm_memory']), '-smp', str(settings['vm_smp']),
        '-kernel', artifacts['.vmlinuz'], '-initrd', artifacts['.initrd'],
        '-append', kernel_cmdline(node, settings),
        '-drive', 'file=%s,if=virtio,format=qcow2' % files['overlay'],
        '-netdev', 'user,id=mgmt,hostfwd=tcp:127.0.0.1:%d-:22' % node['port'],
        '-device', 'virtio-net-pci,netdev=mgmt,mac=%s,addr=0x3' % mac(node, 1),
        '-netdev', 'socket,id=link,%s=127.0.0.1:%d' % (link, settings['vm_link_port']),
        '-device', 'virtio-net-pci,netdev=link,mac=%s,addr=0x4' % mac(node, 2),
        '-device', 'virtio-rng-pci',
        '-display', 'none', '-monitor', 'none', '-serial', 'file:' + files['console'],
        '-daemonize', '-pidfile', files['pid'],
    ]


def ssh_argv(node, command=None, connect_timeout=10):
    argv = ['ssh', '-i', key_path(), '-p', str(node['port']), '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
            '-o', 'UserKnownHostsFile=' + known_hosts_path(), '-o', 'StrictHostKeyChecking=yes',
            '-o', 'ConnectTimeout=%d' % connect_timeout, '-o', 'LogLevel=ERROR', 'root@127.0.0.1']
    return argv + ([command] if command else [])


def known_hosts(found, host_key):
    """The lab's known_hosts: every guest has the image's host key, on its own port."""
    return ''.join('[127.0.0.1]:%d %s\n' % (node['port'], host_key.strip()) for node in found)


def read_pid(path):
    try:
        with open(path, encoding='utf-8') as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def ours(pid, overlay):
    """True when pid is alive and is the QEMU of this overlay (a reused pid is someone else's)."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            argv = handle.read().split(b'\0')
    except OSError:
        return False
    return any(overlay.encode() in arg for arg in argv)


def running(node):
    files = paths(node)
    pid = read_pid(files['pid'])
    return pid if pid and ours(pid, files['overlay']) else None


def stop(pid_file, overlay, wait=15):
    """Stop the QEMU recorded in pid_file if it is still the one of overlay; True if one was stopped."""
    pid = read_pid(pid_file)
    if not pid or not ours(pid, overlay):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while ours(pid, overlay) and time.monotonic() < deadline:
        time.sleep(0.2)
    if ours(pid, overlay):
        os.kill(pid, signal.SIGKILL)
        while ours(pid, overlay):
            time.sleep(0.1)
    return True


def ensure_key():
    path = key_path()
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'dpu-offload-vm-lab', '-f', path],
                       check=True)
    with open(path + '.pub', encoding='utf-8') as handle:
        return handle.read()


def apt_install(packages):
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    argv = ['apt-get', 'install', '-y', '-q', '--no-install-recommends'] + packages
    if subprocess.run(argv, env=env, stdout=sys.stderr, check=False).returncode != 0:
        subprocess.run(['apt-get', 'update', '-q'], env=env, stdout=sys.stderr, check=True)
        subprocess.run(argv, env=env, stdout=sys.stderr, check=True)


def deps():
    missing = sorted({package for command, package in TOOLS.items() if not shutil.which(command)})
    if missing:
        log('installing ' + ' '.join(missing))
        apt_install(missing)


def ensure_image(settings):
    deps()
    public_key = ensure_key()
    abi = image.kernel_abi(settings['vm_image'])
    name = image.image_name(settings['vm_image'], abi, public_key)
    if not image.cached(cache_dir(), name) and not settings['vm_image'].get('kernel_abi'):
        # A build takes minutes anyway: resolve the kernel against fresh lists,
        # since the archive keeps only the newest ABI package.
        subprocess.run(['apt-get', 'update', '-q'], stdout=sys.stderr, check=True)
        abi = image.kernel_abi(settings['vm_image'])
        name = image.image_name(settings['vm_image'], abi, public_key)
    if not image.cached(cache_dir(), name):
        started = time.monotonic()
        image.build(cache_dir(), name, settings['vm_image'], abi, public_key, nice=settings['vm_nice'],
                    tmp_dir=os.environ.get('VM_LAB_TMPDIR'))
        log('built %s in %.0f s' % (name, time.monotonic() - started))
    return image.artifacts(cache_dir(), name)


def console_tail(node, lines=30):
    try:
        with open(paths(node)['console'], encoding='utf-8', errors='replace') as handle:
            return ''.join(handle.readlines()[-lines:])
    except OSError:
        return '(no console log)'


def wait_for(node, started, deadline):
    """Seconds from QEMU's start to SSH answering, and to systemd having booted."""
    ssh_at = None
    while ssh_at is None:
        if not running(node):
            raise LabError('%s: QEMU exited while booting; its console:\n%s' % (node['name'], console_tail(node)))
        if time.monotonic() > deadline:
            raise LabError('%s: no SSH within the boot timeout; its console:\n%s'
                           % (node['name'], console_tail(node)))
        if subprocess.run(ssh_argv(node, 'true', 5), capture_output=True, check=False,
                          timeout=30).returncode == 0:
            ssh_at = time.monotonic() - started
        else:
            time.sleep(2)
    try:
        state = subprocess.run(ssh_argv(node, 'systemctl is-system-running --wait'), capture_output=True, text=True,
                               check=False, timeout=max(deadline - time.monotonic(), 1)).stdout.strip()
    except subprocess.TimeoutExpired:
        state = 'starting (timed out)'
    if state not in ('running', 'degraded'):
        raise LabError('%s: systemd is %s' % (node['name'], state))
    if state == 'degraded':
        failed = subprocess.run(ssh_argv(node, 'systemctl --failed --no-legend'), capture_output=True, text=True,
                                check=False).stdout
        log('%s: degraded, failed units:\n%s' % (node['name'], failed))
    return ssh_at, time.monotonic() - started


def up(inventory, settings):
    found = nodes(inventory, settings)
    artifacts = ensure_image(settings)
    os.makedirs(state_dir(), exist_ok=True)
    with open(artifacts['.host_key.pub'], encoding='utf-8') as handle:
        host_key = handle.read()
    with open(known_hosts_path(), 'w', encoding='utf-8') as handle:
        handle.write(known_hosts(found, host_key))
    up_now = [node for node in found if running(node)]
    if len(up_now) == len(found):
        log('both guests are running already (lab-down first for clean ones)')
        return
    # The private link is one socket the DPU connected to when it started:
    # a guest alone cannot rejoin it, so both start again.
    for node in up_now:
        log('%s runs without its peer: restarting both' % node['name'])
        stop(paths(node)['pid'], paths(node)['overlay'])
    started = time.monotonic()
    deadline = started + settings['vm_boot_timeout']
    for node in found:  # the HOST first: it listens on the link, the DPU connects
        files = paths(node)
        for path in (files['overlay'], files['pid'], files['console']):
            if os.path.exists(path):
                os.unlink(path)
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', artifacts['.img'],
                        files['overlay']], check=True)
        subprocess.run(qemu_argv(node, settings, artifacts), check=True)
        log('%s: QEMU pid %s, SSH on 127.0.0.1:%d' % (node['name'], running(node), node['port']))
    times = {}
    for node in found:
        ssh_at, booted_at = wait_for(node, started, deadline)
        times[node['name']] = {'ssh': round(ssh_at, 1), 'running': round(booted_at, 1)}
        log('%s: SSH after %.0f s, systemd up after %.0f s' % (node['name'], ssh_at, booted_at))
    with open(os.path.join(state_dir(), 'boot-times.json'), 'w', encoding='utf-8') as handle:
        json.dump(times, handle)


def rss_mib(pid):
    with open('/proc/%d/status' % pid, encoding='utf-8') as handle:
        for line in handle:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) // 1024
    return 0


def status(inventory, settings):
    for node in nodes(inventory, settings):
        pid = running(node)
        where = '127.0.0.1:%d, link %s' % (node['port'], node['address'])
        state = 'pid %d, %d MiB, %s' % (pid, rss_mib(pid), where) if pid else 'not running'
        print('%s (%s): %s' % (node['name'], node['role'], state))


def down():
    """Stop every guest whose pid file is in the state directory; remove what up made."""
    directory = state_dir()
    if not os.path.isdir(directory):
        return
    for entry in sorted(os.listdir(directory)):
        if entry.endswith('.pid'):
            name = entry[:-len('.pid')]
            files = paths({'name': name})
            if stop(files['pid'], files['overlay']):
                log('%s: stopped' % name)
            for path in files.values():
                if os.path.exists(path):
                    os.unlink(path)
    for extra in (known_hosts_path(), os.path.join(directory, 'boot-times.json')):
        if os.path.exists(extra):
            os.unlink(extra)


def clean():
    down()
    image.remove_others(cache_dir())
    for path in (key_path(), key_path() + '.pub'):
        if os.path.exists(path):
            os.unlink(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('command', choices=['deps', 'image', 'up', 'status', 'ssh', 'down', 'clean'])
    parser.add_argument('-i', '--inventory', default=DEFAULT_INVENTORY)
    parser.add_argument('rest', nargs='*', help='ssh: NODE [COMMAND...]')
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        if args.command == 'deps':
            deps()
        elif args.command == 'image':
            print(ensure_image(settings)['.img'])
        elif args.command == 'up':
            up(args.inventory, settings)
        elif args.command == 'status':
            status(args.inventory, settings)
        elif args.command == 'ssh':
            by_name = {n['name']: n for n in nodes(args.inventory, settings)}
            if not args.rest or args.rest[0] not in by_name:
                raise LabError('ssh needs a node: %s' % ', '.join(by_name))
            argv = ssh_argv(by_name[args.rest[0]], ' '.join(args.rest[1:]) or None)
            os.execvp(argv[0], argv[:1] + ['-t'] + argv[1:] if len(args.rest) == 1 else argv)
        elif args.command == 'down':
            down()
        else:
            clean()
    except (LabError, ValueError, subprocess.CalledProcessError) as exc:
        log(str(exc))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
