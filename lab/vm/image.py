"""The VM lab's guest image, built offline from Debian packages.

One build makes four files in the cache directory, all named after a hash
of the build's inputs (this file, lab/vm/init, the package lists, the
vm_image settings, the kernel ABI and the lab's public key):
  NAME.img           ext4 root file system (raw, sparse), the guests' backing file
  NAME.vmlinuz       the guest kernel, for QEMU's -kernel
  NAME.initrd        a busybox initramfs that loads virtio and ext4, then switches to /dev/vda
  NAME.host_key.pub  the image's SSH host key, for the lab's known_hosts
The .img is renamed into place last: its presence means the build finished.
vmlab.py runs this; nothing here starts a guest.
"""
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
LAB = os.path.dirname(HERE)
PREFIX = 'dpu-offload-vm-'
SUFFIXES = ('.img', '.vmlinuz', '.initrd', '.host_key.pub')
# What every guest gets on top of the package lists: a boot, a login, networkd.
BOOT_PACKAGES = ('systemd', 'systemd-sysv', 'udev', 'dbus', 'openssh-server', 'kmod', 'iproute2', 'python3',
                 'busybox-static')
INPUT_FILES = (os.path.join(HERE, 'image.py'), os.path.join(HERE, 'init'),
               os.path.join(LAB, 'image-packages.txt'), os.path.join(HERE, 'image-packages.txt'))


def log(message):
    print('vm lab: %s' % message, file=sys.stderr, flush=True)


def read_packages(path):
    """Package names of a list file: one a line, # comments and blank lines skipped."""
    with open(path, encoding='utf-8') as handle:
        lines = (line.split('#', 1)[0].strip() for line in handle)
        return [line for line in lines if line]


def _file_hash(path):
    with open(path, 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def input_hash(image_settings, kernel_abi, public_key, files=INPUT_FILES):
    """The hash that names the image: any change of an input gives a new name."""
    digest = hashlib.sha256()
    inputs = {'settings': image_settings, 'kernel_abi': kernel_abi, 'public_key': public_key.strip(),
              'files': {os.path.relpath(f, LAB): _file_hash(f) for f in files}}
    digest.update(json.dumps(inputs, sort_keys=True).encode())
    return digest.hexdigest()


def image_name(image_settings, kernel_abi, public_key, files=INPUT_FILES):
    return PREFIX + input_hash(image_settings, kernel_abi, public_key, files)[:16]


def artifacts(cache_dir, name):
    """The four files of one image, by suffix."""
    return {suffix: os.path.join(cache_dir, name + suffix) for suffix in SUFFIXES}


def cached(cache_dir, name):
    return all(os.path.exists(path) for path in artifacts(cache_dir, name).values())


def abi_from_apt_cache(text, package):
    """The ABI package a kernel metapackage depends on, from `apt-cache show` output: 6.1.0-57-amd64."""
    match = re.search(r'^Depends:.*?\blinux-image-(\d[^ ,(]*)', text, re.M)
    if not match:
        raise ValueError('%s depends on no linux-image-<abi> package' % package)
    return match.group(1)


def kernel_abi(image_settings, run=subprocess.run):
    """vm_image.kernel_abi if set, else what vm_image.kernel_package resolves to on this machine's apt."""
    if image_settings.get('kernel_abi'):
        return image_settings['kernel_abi']
    package = image_settings['kernel_package']
    argv = ['apt-cache', 'show', '--no-all-versions', package]
    shown = run(argv, capture_output=True, text=True, check=False)
    if shown.returncode != 0 or 'Depends:' not in shown.stdout:
        # A fresh machine may have no package lists yet.
        run(['apt-get', 'update', '-q'], stdout=sys.stderr, check=True)
        shown = run(argv, capture_output=True, text=True, check=True)
    return abi_from_apt_cache(shown.stdout, package)


def apt_mirrors(sources_text, suite):
    """(main mirror, security mirror) of `suite` in apt sources (deb822 or one-line), Debian's own if absent."""
    main = security = None
    for stanza in re.split(r'\n\s*\n', sources_text):
        fields = dict(re.findall(r'^([A-Za-z-]+):\s*(.*)$', stanza, re.M))
        entries = [(u, s) for u in fields.get('URIs', '').split() for s in fields.get('Suites', '').split()]
        entries += re.findall(r'^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)', stanza, re.M)
        for uri, entry_suite in entries:
            if entry_suite == suite and main is None:
                main = uri
            elif entry_suite == suite + '-security' and security is None:
                security = uri
    return main or 'http://deb.debian.org/debian', security or 'http://deb.debian.org/debian-security'


def machine_mirrors(suite):
    texts = []
    parts = '/etc/apt/sources.list.d'
    for path in ['/etc/apt/sources.list'] + sorted(
            os.path.join(parts, f) for f in (os.listdir(parts) if os.path.isdir(parts) else [])
            if f.endswith(('.list', '.sources'))):
        if os.path.exists(path):
            with open(path, encoding='utf-8') as handle:
                texts.append(handle.read())
    return apt_mirrors('\n\n'.join(texts), suite)


def module_name(path):
    base = os.path.basename(path)
    return re.sub(r'\.ko(\.(xz|zst|gz))?$', '', base).replace('-', '_')


def load_order(modules_dep, modules_builtin, wanted):
    """Module paths (relative to /lib/modules/<abi>) to insmod, dependencies first, for the `wanted` modules.

    modules_dep is the text of modules.dep, modules_builtin of
    modules.builtin; a wanted module built into the kernel needs nothing.
    """
    deps, by_name = {}, {}
    for line in modules_dep.splitlines():
        path, sep, rest = line.partition(':')
        if sep:
            deps[path] = rest.split()
            by_name[module_name(path)] = path
    builtin = {module_name(line) for line in modules_builtin.split()}
    order = []

    def visit(path, chain):
        if path in order:
            return
        if path in chain:
            raise ValueError('modules.dep has a cycle through %s' % path)
        for dep in deps.get(path, []):
            visit(dep, chain + [path])
        order.append(path)

    for module in wanted:
        name = module.replace('-', '_')
        if name in builtin:
            continue
        if name not in by_name:
            raise ValueError('no module %s in this kernel' % module)
        visit(by_name[name], [])
    return order


def _run(argv, **kwargs):
    log('+ ' + ' '.join(argv))
    return subprocess.run(argv, check=True, stdout=sys.stderr, **kwargs)


def _unmount_below(tree):
    with open('/proc/mounts', encoding='utf-8') as handle:
        points = [line.split()[1] for line in handle]
    for point in sorted((p for p in points if p.startswith(tree.rstrip('/') + '/')), reverse=True):
        subprocess.run(['umount', '-l', point], check=False)


def _remove_tree(tree):
    # A failed chroot step can leave /proc mounted inside: never cross into it.
    _unmount_below(tree)
    subprocess.run(['rm', '-rf', '--one-file-system', tree], check=False)


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(text)
    os.chmod(path, mode)


def _symlink(target, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(target, path)


def configure_tree(tree, image_settings, public_key):
    """What makes a debootstrapped tree a lab guest (no kernel or packages here)."""
    etc = os.path.join(tree, 'etc')
    _write(os.path.join(etc, 'fstab'), '/dev/vda / ext4 rw,errors=remount-ro 0 0\n')
    # QEMU's user network answers DNS on 10.0.2.3 (the roles install packages).
    _write(os.path.join(etc, 'resolv.conf'), 'nameserver 10.0.2.3\n')
    _write(os.path.join(etc, 'hosts'), '127.0.0.1 localhost\n::1 localhost\n')
    # Each boot gets its own machine-id and takes its name from systemd.hostname=.
    _write(os.path.join(etc, 'machine-id'), '', 0o444)
    for path in ('etc/hostname', 'var/lib/dbus/machine-id'):
        if os.path.lexists(os.path.join(tree, path)):
            os.unlink(os.path.join(tree, path))
    for unit in image_settings.get('masked_units', []):
        _symlink('/dev/null', os.path.join(etc, 'systemd/system', unit))
    # systemd-network-generator turns the ip= arguments of the kernel
    # command line (vmlab.py writes them per guest) into networkd's files.
    units = '/lib/systemd/system/'
    for wants, unit in (('multi-user.target.wants', 'systemd-networkd.service'),
                        ('sockets.target.wants', 'systemd-networkd.socket'),
                        ('sysinit.target.wants', 'systemd-network-generator.service')):
        _symlink(units + unit, os.path.join(etc, 'systemd/system', wants, unit))
    ssh = os.path.join(tree, 'root/.ssh')
    os.makedirs(ssh, mode=0o700, exist_ok=True)
    _write(os.path.join(ssh, 'authorized_keys'), public_key.strip() + '\n', 0o600)


def write_initramfs(tree, abi, modules, init, output):
    """A gzip'd newc cpio: busybox, the modules in load order, /modules.order and init."""
    base = os.path.join(tree, 'lib/modules', abi)
    with open(os.path.join(base, 'modules.dep'), encoding='utf-8') as handle:
        dep = handle.read()
    with open(os.path.join(base, 'modules.builtin'), encoding='utf-8') as handle:
        builtin = handle.read()
    order = load_order(dep, builtin, modules)
    stage = tempfile.mkdtemp(prefix='dpu-offload-vm-initramfs.')
    try:
        os.makedirs(os.path.join(stage, 'bin'))
        shutil.copy2(os.path.join(tree, 'bin/busybox'), os.path.join(stage, 'bin/busybox'))
        os.symlink('busybox', os.path.join(stage, 'bin/sh'))
        for path in order:
            target = os.path.join(stage, 'lib/modules', path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(base, path), target)
        _write(os.path.join(stage, 'modules.order'), ''.join(p + '\n' for p in order))
        shutil.copy2(init, os.path.join(stage, 'init'))
        os.chmod(os.path.join(stage, 'init'), 0o755)
        files = subprocess.run(['find', '.', '-mindepth', '1'], cwd=stage, check=True, capture_output=True).stdout
        archive = subprocess.run(['cpio', '--quiet', '-o', '-H', 'newc', '-R', '0:0'], cwd=stage, input=files,
                                 check=True, capture_output=True).stdout
        with gzip.open(output, 'wb') as handle:
            handle.write(archive)
    finally:
        shutil.rmtree(stage)
    return order


def build(cache_dir, name, image_settings, abi, public_key, nice=10, tmp_dir=None):
    """Build the image `name` into cache_dir; remove older images of the lab once it is there."""
    suite = image_settings['suite']
    mirror, security = machine_mirrors(suite)
    base = sorted(set(read_packages(INPUT_FILES[2])) | set(BOOT_PACKAGES))
    extra = read_packages(INPUT_FILES[3]) + ['linux-image-' + abi, 'linux-headers-' + abi]
    niced = ['nice', '-n', str(nice)]
    os.makedirs(cache_dir, exist_ok=True)
    out = artifacts(cache_dir, name)
    tree = tempfile.mkdtemp(prefix='dpu-offload-vm-rootfs.', dir=tmp_dir or '/var/tmp')
    # The guest's / (mkdtemp makes it 0700, which also keeps apt's _apt user out).
    os.chmod(tree, 0o755)
    try:
        log('building %s (kernel %s) from %s, once' % (name, abi, mirror))
        _run(niced + ['debootstrap', '--variant=minbase', '--include=' + ','.join(base), suite, tree, mirror])
        _write(os.path.join(tree, 'etc/apt/sources.list'),
               'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n'
               % (mirror, suite, mirror, suite, security, suite))
        # Nothing starts inside the tree while packages install.
        _write(os.path.join(tree, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', 0o755)
        _run(['mount', '-t', 'proc', 'proc', os.path.join(tree, 'proc')])
        env = dict(os.environ, DEBIAN_FRONTEND='noninteractive', INITRD='No', LC_ALL='C')
        _run(niced + ['chroot', tree, 'apt-get', 'update', '-q'], env=env)
        _run(niced + ['chroot', tree, 'apt-get', 'install', '-y', '-q', '--no-install-recommends'] + extra, env=env)
        _run(['chroot', tree, 'apt-get', 'clean'], env=env)
        _run(['chroot', tree, 'systemctl', 'disable', 'systemd-networkd-wait-online.service'], env=env)
        _unmount_below(tree)
        os.unlink(os.path.join(tree, 'usr/sbin/policy-rc.d'))
        for initrd in os.listdir(os.path.join(tree, 'boot')):
            if initrd.startswith('initrd.img'):
                os.unlink(os.path.join(tree, 'boot', initrd))
        configure_tree(tree, image_settings, public_key)
        partial = {suffix: path + '.partial' for suffix, path in out.items()}
        shutil.copy2(os.path.join(tree, 'boot/vmlinuz-' + abi), partial['.vmlinuz'])
        shutil.copy2(os.path.join(tree, 'etc/ssh/ssh_host_ed25519_key.pub'), partial['.host_key.pub'])
        order = write_initramfs(tree, abi, image_settings['initramfs_modules'], os.path.join(HERE, 'init'),
                                partial['.initrd'])
        log('initramfs modules: ' + ' '.join(module_name(p) for p in order))
        _run(niced + ['mkfs.ext4', '-q', '-F', '-L', 'dpu-offload-vm', '-d', tree, partial['.img'],
                      image_settings['size']])
        for suffix in SUFFIXES:
            os.replace(partial[suffix], out[suffix])
    finally:
        _remove_tree(tree)
        for path in out.values():
            if os.path.exists(path + '.partial'):
                os.unlink(path + '.partial')
    remove_others(cache_dir, keep=name)
    return out


def remove_others(cache_dir, keep=None):
    """Remove this lab's images other than `keep` (all of them when keep is None)."""
    if not os.path.isdir(cache_dir):
        return
    for entry in os.listdir(cache_dir):
        if entry.startswith(PREFIX) and entry.endswith(SUFFIXES + tuple(s + '.partial' for s in SUFFIXES)):
            if keep is None or not entry.startswith(keep + '.'):
                os.unlink(os.path.join(cache_dir, entry))
