# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.dpu.offload.plugins.module_utils.proc_holders import describe_holders, holders


def fake_process(proc, pid, comm, cwd='/', root='/', exe='/usr/bin/true', fds=()):
    d = proc / str(pid)
    (d / 'fd').mkdir(parents=True)
    (d / 'comm').write_text(comm + '\n')
    os.symlink(cwd, str(d / 'cwd'))
    os.symlink(root, str(d / 'root'))
    os.symlink(exe, str(d / 'exe'))
    for n, target in enumerate(fds):
        os.symlink(target, str(d / 'fd' / str(n)))


def test_holders_by_cwd_root_exe_and_open_files(tmp_path):
    proc = tmp_path / 'proc'
    point = '/run/containerd/io.containerd.runtime.v2.task'
    fake_process(proc, 1, 'systemd')
    fake_process(proc, 40, 'containerd-shim', cwd=point + '/default/abc')
    fake_process(proc, 41, 'sleep', root=point + '/default/abc/rootfs')
    fake_process(proc, 42, 'cat', fds=['/dev/null', point + '/default/abc/log (deleted)'])
    fake_process(proc, 43, 'other', cwd=point + '-not-below')
    fake_process(proc, 44, 'exe', exe=point)
    (proc / 'self').mkdir()
    assert holders(point, proc=str(proc)) == [(40, 'containerd-shim'), (41, 'sleep'), (42, 'cat'), (44, 'exe')]
    assert holders(point, proc=str(proc), limit=2) == [(40, 'containerd-shim'), (41, 'sleep')]
    assert describe_holders(point, proc=str(proc)).startswith(' (in use by pid 40 (containerd-shim), pid 41 (sleep)')


def test_no_holders_and_unreadable_processes(tmp_path):
    proc = tmp_path / 'proc'
    fake_process(proc, 1, 'systemd')
    (proc / '7').mkdir()  # a process that went away while being read
    assert holders('/srv', proc=str(proc)) == []
    assert describe_holders('/srv', proc=str(proc)) == ''
    assert holders('/srv', proc=str(tmp_path / 'missing')) == []
