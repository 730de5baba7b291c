# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the idempotent check of dpu.offload.qtfs_mount over 40 mounts.

Creates 40 real mounts (20 tmpfs, 20 bind mounts) below a temporary
directory, then times a state=mounted pass that finds nothing to do:

  ours   decision logic only (one mountinfo read + planning), in-process
  ours   the module's main() in-process (argument parsing included)
  ours   the module file run as a subprocess (interpreter start + imports)
  ours   40 separate single-mount main() calls (no batching), in-process
  peer   40 x `mountpoint -q PATH`
  peer   40 x `findmnt -n -o FSTYPE,SOURCE --mountpoint PATH`
  peer   40 x ansible.posix.mount state=mounted main() in-process, against a
         throw-away fstab already holding the 40 entries

Needs root (it mounts). Everything it mounts is unmounted afterwards.
Usage: python bench/bench_mounts.py [--rounds N] [--count N] [--json FILE] [--quick]

--quick (make bench-quick, part of make test): 8 mounts, 3 rounds, so that
the benchmark keeps working; its figures are no benchmark results.
"""

from __future__ import absolute_import, division, print_function

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

CHECKOUT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
COUNT = 40
QUICK = {'rounds': 3, 'count': 8}


def collection_path():
    """Directory to put on sys.path so ansible_collections.dpu.offload imports."""
    here = CHECKOUT
    parts = here.split(os.sep)
    if len(parts) >= 3 and parts[-3] == 'ansible_collections':
        return os.sep.join(parts[:-3])
    base = os.path.join(tempfile.gettempdir(), 'dpu-offload-bench-%d' % os.getuid())
    ns = os.path.join(base, 'ansible_collections', 'dpu')
    link = os.path.join(ns, 'offload')
    if not os.path.isdir(ns):
        os.makedirs(ns)
    if os.path.islink(link) and os.readlink(link) != CHECKOUT:
        os.unlink(link)
    if not os.path.lexists(link):
        os.symlink(CHECKOUT, link)
    return base


COLL_PATH = collection_path()
sys.path.insert(0, COLL_PATH)

from ansible.module_utils import basic  # noqa: E402
from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import MountTable, read_filesystems  # noqa: E402
from ansible_collections.dpu.offload.plugins.module_utils.mount_plan import plan_mounted  # noqa: E402
from ansible_collections.dpu.offload.plugins.module_utils.mount_spec import normalize_specs  # noqa: E402
from ansible_collections.dpu.offload.plugins.modules import qtfs_mount  # noqa: E402

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:
    patch_module_args = None


class Exit(Exception):
    def __init__(self, result):
        super(Exit, self).__init__(result)
        self.result = result


@contextlib.contextmanager
def module_args(args):
    if patch_module_args is not None:
        with patch_module_args(args):
            yield
        return
    old = basic._ANSIBLE_ARGS
    basic._ANSIBLE_ARGS = json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode()
    try:
        yield
    finally:
        basic._ANSIBLE_ARGS = old


def call_main(main, args):
    def exit_json(self, **kw):
        raise Exit(kw)

    def fail_json(self, msg, **kw):
        kw.update(failed=True, msg=msg)
        raise Exit(kw)

    saved = (basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json)
    basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json = exit_json, fail_json
    try:
        with module_args(args):
            main()
    except Exit as e:
        return e.result
    finally:
        basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json = saved
    raise RuntimeError('module did not exit')


def setup(base, count):
    items = []
    for i in range(count // 2):
        path = os.path.join(base, 'root', 'tmpfs_%02d' % i)
        os.makedirs(path)
        subprocess.check_call(['mount', '-t', 'tmpfs', '-o', 'size=1m,nosuid', 'tmpfs', path])
        items.append({'path': path, 'fstype': 'tmpfs', 'opts': 'size=1m,nosuid'})
    for i in range(count - count // 2):
        src = os.path.join(base, 'src', 'd%02d' % i)
        path = os.path.join(base, 'root', 'bind_%02d' % i)
        os.makedirs(src)
        os.makedirs(path)
        subprocess.check_call(['mount', '--bind', src, path])
        items.append({'path': path, 'src': src, 'opts': 'bind'})
    return items


def teardown(base):
    for dummy in range(200):
        table = MountTable.from_file('/proc/self/mountinfo')
        left = [e for e in table.entries if e.mountpoint.startswith(base + '/')]
        if not left:
            break
        parents = set(e.parent_id for e in table.entries)
        leaves = [e for e in left if table.visible(e) and e.mount_id not in parents] or left
        for e in leaves:
            subprocess.call(['umount', '-l', e.mountpoint])
    shutil.rmtree(base, ignore_errors=True)


def timed(fn, rounds):
    samples = []
    for dummy in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--rounds', type=int, help='default 20')
    parser.add_argument('--count', type=int, help='mounts to create (default %d)' % COUNT)
    parser.add_argument('--json', help='also write the figures to this file')
    parser.add_argument('--quick', action='store_true',
                        help='%(count)d mounts, %(rounds)d rounds: checks the benchmark runs' % QUICK)
    opts = parser.parse_args()
    for key, value in (QUICK if opts.quick else {'rounds': 20, 'count': COUNT}).items():
        if getattr(opts, key) is None:
            setattr(opts, key, value)
    count = opts.count
    if count < 2:
        parser.error('--count: at least 2')
    if os.geteuid() != 0:
        print('bench_mounts.py needs root: it creates %d real mounts' % count, file=sys.stderr)
        return 2

    base = tempfile.mkdtemp(prefix='dpu-bench-mounts-')
    rows = []
    notes = []
    try:
        items = setup(base, count)
        args = {'mounts': items}

        def decision():
            table = MountTable.from_file('/proc/self/mountinfo')
            specs = normalize_specs(items)
            actions, dummy = plan_mounted(specs, table, filesystems=read_filesystems)
            if any(a.changes for a in actions):
                raise RuntimeError('expected every mount unchanged')

        def module_inproc():
            res = call_main(qtfs_mount.main, args)
            if res.get('failed') or res['changed']:
                raise RuntimeError('unexpected result: %r' % res)

        def module_per_item():
            for item in items:
                res = call_main(qtfs_mount.main, dict(item))
                if res.get('failed') or res['changed']:
                    raise RuntimeError('unexpected result: %r' % res)

        argfile = os.path.join(base, 'args.json')
        with open(argfile, 'w') as f:
            json.dump({'ANSIBLE_MODULE_ARGS': args}, f)
        env = dict(os.environ, PYTHONPATH=COLL_PATH)
        module_file = os.path.join(CHECKOUT, 'plugins', 'modules', 'qtfs_mount.py')

        def module_subprocess():
            out = subprocess.check_output([sys.executable, module_file, argfile], env=env)
            res = json.loads(out.decode())
            if res.get('failed') or res['changed']:
                raise RuntimeError('unexpected result: %r' % res)

        def mountpoint_q():
            for item in items:
                subprocess.check_call(['mountpoint', '-q', item['path']])

        def findmnt():
            for item in items:
                subprocess.check_output(['findmnt', '-n', '-o', 'FSTYPE,SOURCE', '--mountpoint', item['path']])

        rows.append(('ours: decision logic, one mountinfo read', timed(decision, opts.rounds)))
        rows.append(('ours: module main(), one call for %d' % count, timed(module_inproc, opts.rounds)))
        rows.append(('ours: module as a subprocess (python start)', timed(module_subprocess, max(3, opts.rounds // 4))))
        rows.append(('ours: %d single-mount main() calls' % count, timed(module_per_item, max(3, opts.rounds // 4))))
        rows.append(('peer: %d x mountpoint -q' % count, timed(mountpoint_q, max(3, opts.rounds // 4))))
        rows.append(('peer: %d x findmnt --mountpoint' % count, timed(findmnt, max(3, opts.rounds // 4))))

        try:
            from ansible_collections.ansible.posix.plugins.modules import mount as posix_mount
        except ImportError:
            posix_mount = None
            notes.append('ansible.posix is not installed: its row is left out')
        if posix_mount is not None:
            fstab = os.path.join(base, 'fstab')
            open(fstab, 'w').close()

            def posix_args(item):
                return {'path': item['path'], 'src': item.get('src', 'tmpfs'),
                        'fstype': 'none' if 'src' in item else 'tmpfs',
                        'opts': item['opts'], 'state': 'mounted', 'fstab': fstab}

            for item in items:  # first pass writes the throw-away fstab
                call_main(posix_mount.main, posix_args(item))

            def posix_pass():
                for item in items:
                    res = call_main(posix_mount.main, posix_args(item))
                    if res.get('failed') or res['changed']:
                        raise RuntimeError('ansible.posix.mount changed: %r' % res)

            rows.append(('peer: %d x ansible.posix.mount main()' % count, timed(posix_pass, max(3, opts.rounds // 4))))
    finally:
        teardown(base)

    print('Idempotent pass over %d mounts (%d tmpfs + %d bind), nothing to change%s'
          % (count, count // 2, count - count // 2,
             ' (QUICK MODE: %d rounds; not benchmark figures)' % opts.rounds if opts.quick else ''))
    print('python %s, %s' % (sys.version.split()[0], os.uname().release))
    print('%-46s %10s %10s %8s' % ('what', 'median ms', 'min ms', 'runs'))
    figures = []
    ref = statistics.median(rows[1][1])
    for label, samples in rows:
        med = statistics.median(samples)
        figures.append({'what': label, 'median_ms': round(med * 1000, 2),
                        'min_ms': round(min(samples) * 1000, 2), 'runs': len(samples),
                        'x_module_call': round(med / ref, 2)})
        print('%-46s %10.2f %10.2f %8d   (%.1fx the module call)'
              % (label, med * 1000, min(samples) * 1000, len(samples), med / ref))
    for n in notes:
        print('note:', n)
    if opts.json:
        with open(opts.json, 'w') as f:
            json.dump({'count': count, 'quick': opts.quick, 'figures': figures, 'notes': notes}, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
