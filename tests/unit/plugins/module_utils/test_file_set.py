# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat

import pytest

from ansible_collections.dpu.offload.plugins.module_utils.file_set import (
    FileSetError,
    apply_entry,
    normalize,
    parse_mode,
    plan,
    validate_planned,
)

ME = dict(owner=str(os.getuid()), group=str(os.getgid()))


def run(entries, defaults=None, predict=False):
    """Plan and apply; return [(path, actions)]."""
    planned = plan(normalize(entries, dict(ME, **(defaults or {}))), predict=predict)
    for entry, actions, _diff in planned:
        apply_entry(entry, actions)
    return [(entry['path'], actions) for entry, actions, _diff in planned]


def mode_of(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


def test_parse_mode():
    assert parse_mode('0755', '/x') == 0o755
    assert parse_mode('644', '/x') == 0o644
    assert parse_mode(0o600, '/x') == 0o600
    assert parse_mode(None, '/x') is None
    with pytest.raises(FileSetError, match='octal'):
        parse_mode('u+rwx', '/x')
    with pytest.raises(FileSetError, match='range'):
        parse_mode('17777', '/x')


@pytest.mark.parametrize('entries, message', [
    ([{'path': 'relative', 'content': ''}], 'must be absolute'),
    ([{'path': '/a', 'content': ''}, {'path': '/a/', 'content': ''}], 'listed twice'),
    ([{'path': '/a', 'state': 'file'}], 'needs content'),
    ([{'path': '/a', 'state': 'link'}], 'needs src'),
    ([{'path': '/a', 'state': 'directory', 'content': 'x'}], 'only for state=file'),
    ([{'path': '/a', 'state': 'fifo'}], 'is not one of'),
    ([{'path': '/a', 'owner': 'no-such-user-dpu-offload'}], 'does not exist on this node'),
])
def test_bad_entries_are_named(entries, message):
    with pytest.raises(FileSetError, match=message):
        normalize(entries)


def test_state_follows_from_the_fields():
    states = [e['state'] for e in normalize([{'path': '/d'}, {'path': '/f', 'content': ''}, {'path': '/l', 'src': '/f'}])]
    assert states == ['directory', 'file', 'link']


def test_a_set_is_created_then_left_alone(tmp_path):
    root = str(tmp_path)
    entries = [
        {'path': root + '/opt', 'mode': '0750'},
        {'path': root + '/opt/prog', 'content': '#!/bin/sh\necho hi\n', 'mode': '0755'},
        {'path': root + '/opt/lib.py', 'content': 'x = 1\n', 'mode': '0644'},
        {'path': root + '/prog', 'src': root + '/opt/prog'},
    ]
    first = run(entries)
    assert [a for _p, a in first] == [['create'], ['write'], ['write'], ['link']]
    assert mode_of(tmp_path / 'opt') == 0o750
    assert mode_of(tmp_path / 'opt' / 'prog') == 0o755
    assert (tmp_path / 'opt' / 'prog').read_text() == '#!/bin/sh\necho hi\n'
    assert os.readlink(root + '/prog') == root + '/opt/prog'
    assert [a for _p, a in run(entries)] == [[], [], [], []]


def test_only_what_differs_is_done(tmp_path):
    target = tmp_path / 'f'
    target.write_text('old\n')
    os.chmod(str(target), 0o600)
    assert run([{'path': str(target), 'content': 'old\n', 'mode': '0644'}]) == [(str(target), ['chmod'])]
    assert run([{'path': str(target), 'content': 'new\n', 'mode': '0644'}]) == [(str(target), ['write'])]
    assert target.read_text() == 'new\n' and mode_of(target) == 0o644


def test_a_rewrite_keeps_the_mode_when_none_is_asked(tmp_path):
    target = tmp_path / 'f'
    target.write_text('old\n')
    os.chmod(str(target), 0o640)
    run([{'path': str(target), 'content': 'new\n'}])
    assert mode_of(target) == 0o640


def test_force_false_never_rewrites_content(tmp_path):
    target = tmp_path / 'authorized_keys'
    target.write_text('ssh-ed25519 AAAA dpu\n')
    assert run([{'path': str(target), 'content': '', 'force': False, 'mode': '0600'}]) == [(str(target), ['chmod'])]
    assert target.read_text() == 'ssh-ed25519 AAAA dpu\n'
    missing = tmp_path / 'new_keys'
    run([{'path': str(missing), 'content': '', 'force': False}])
    assert missing.read_text() == ''


def test_a_link_where_a_file_belongs_is_replaced_not_written_through(tmp_path):
    # The DPU image's usr/sbin/modprobe -> /bin/kmod: the wrapper must not land in kmod.
    kmod = tmp_path / 'kmod'
    kmod.write_text('ELF\n')
    link = tmp_path / 'modprobe'
    os.symlink(str(kmod), str(link))
    assert run([{'path': str(link), 'content': 'wrapper\n', 'mode': '0755'}]) == [(str(link), ['write'])]
    assert not os.path.islink(str(link)) and link.read_text() == 'wrapper\n'
    assert kmod.read_text() == 'ELF\n'


def test_a_link_is_repointed(tmp_path):
    link = str(tmp_path / 'l')
    os.symlink('/old', link)
    assert run([{'path': link, 'src': '/new'}]) == [(link, ['relink'])]
    assert os.readlink(link) == '/new'


@pytest.mark.parametrize('entry, existing, message', [
    ({'content': 'x'}, 'dir', 'a directory stands where a file belongs'),
    ({'state': 'directory'}, 'file', 'a file stands where a directory belongs'),
    ({'src': '/x'}, 'file', 'a file stands where the link to /x belongs'),
])
def test_nothing_is_replaced_by_something_of_another_kind(tmp_path, entry, existing, message):
    path = tmp_path / 'p'
    if existing == 'dir':
        path.mkdir()
    else:
        path.write_text('keep\n')
    with pytest.raises(FileSetError, match=message):
        run([dict(entry, path=str(path))])


def test_a_missing_parent_is_an_error_unless_parents(tmp_path):
    deep = tmp_path / 'a' / 'b' / 'c'
    with pytest.raises(FileSetError, match='does not exist; list it'):
        run([{'path': str(deep), 'mode': '0710'}])
    assert not (tmp_path / 'a').exists()
    assert run([{'path': str(deep), 'mode': '0710', 'parents': True}]) == [(str(deep), ['parents', 'create'])]
    # Like the file module, the created ancestors get the directory's mode.
    assert mode_of(tmp_path / 'a') == 0o710 and mode_of(tmp_path / 'a' / 'b') == 0o710
    record = tmp_path / 'etc' / 'engine.json'
    run([{'path': str(record), 'content': '{}\n', 'parents': True}])
    assert mode_of(tmp_path / 'etc') == 0o755


def test_check_mode_plans_files_in_directories_not_yet_made(tmp_path):
    entries = normalize([{'path': str(tmp_path / 'd')}, {'path': str(tmp_path / 'd' / 'f'), 'content': 'x'},
                         {'path': str(tmp_path / 'p' / 'q'), 'content': 'y', 'parents': True},
                         {'path': str(tmp_path / 'p' / 'r'), 'content': 'z'}])
    assert [a for _e, a, _d in plan(entries)] == [['create'], ['write'], ['parents', 'write'], ['write']]
    assert os.listdir(str(tmp_path)) == []
    # A directory an earlier task would make is taken as made in check mode only.
    other = normalize([{'path': str(tmp_path / 'earlier' / 'f'), 'content': 'x'}])
    assert [a for _e, a, _d in plan(other, predict=True)] == [['write']]
    with pytest.raises(FileSetError):
        plan(other)


def test_absent_removes_files_links_and_empty_directories_only(tmp_path):
    d = tmp_path / 'd'
    d.mkdir()
    (d / 'f').write_text('x')
    os.symlink('/nowhere', str(d / 'l'))
    result = run([{'path': str(d / 'f'), 'state': 'absent'}, {'path': str(d / 'l'), 'state': 'absent'},
                  {'path': str(d), 'state': 'absent'}, {'path': str(tmp_path / 'gone'), 'state': 'absent'}])
    assert [a for _p, a in result] == [['remove'], ['remove'], ['rmdir'], []]
    assert os.listdir(str(tmp_path)) == []
    full = tmp_path / 'full'
    full.mkdir()
    (full / 'keep').write_text('x')
    with pytest.raises(FileSetError, match='not empty'):
        run([{'path': str(full), 'state': 'absent'}])


def test_if_empty_removes_an_empty_directory_and_keeps_one_with_something_else_in_it(tmp_path):
    # Teardown's drop-in directory: the role's file goes, then the directory if nothing else is there.
    dropins = tmp_path / 'rexec.service.d'
    dropins.mkdir()
    (dropins / 'ours.conf').write_text('x')
    entries = [{'path': str(dropins / 'ours.conf'), 'state': 'absent'},
               {'path': str(dropins), 'state': 'absent', 'if_empty': True}]
    assert [a for _p, a in run(entries)] == [['remove'], ['rmdir']]
    assert not dropins.exists()
    assert [a for _p, a in run(entries)] == [[], []]
    # Someone else's drop-in stays, and so does the directory, and its parent too.
    dropins.mkdir()
    (dropins / 'ours.conf').write_text('x')
    (dropins / 'theirs.conf').write_text('y')
    entries.append({'path': str(tmp_path), 'state': 'absent', 'if_empty': True})
    assert [a for _p, a in run(entries)] == [['remove'], [], []]
    assert sorted(os.listdir(str(dropins))) == ['theirs.conf']
    # Check mode predicts the same from the same tree.
    (dropins / 'ours.conf').write_text('x')
    assert [a for _e, a, _d in plan(normalize(entries, ME), predict=True)] == [['remove'], [], []]
    with pytest.raises(FileSetError, match='if_empty is only for state=absent'):
        normalize([{'path': str(dropins), 'if_empty': True}])


def test_the_diff_shows_content_and_state(tmp_path):
    target = tmp_path / 'f'
    target.write_text('a\n')
    entries = normalize([{'path': str(target), 'content': 'b\n'}, {'path': str(tmp_path / 'd'), 'mode': '0700'}])
    (_e1, _a1, d1), (_e2, _a2, d2) = plan(entries)
    assert (d1['before'], d1['after']) == ('a\n', 'b\n')
    assert d2['before'] == 'absent\n' and d2['after'].startswith('directory mode 0700')


def test_validation_runs_before_anything_changes(tmp_path):
    good = tmp_path / 'good.conf'
    bad = tmp_path / 'bad.conf'
    planned = plan(normalize([{'path': str(good), 'content': 'ok\n'},
                              {'path': str(bad), 'content': 'broken\n', 'validate': 'check %s'}]))
    seen = []

    def check(command, tmp, path):
        seen.append((command, path, open(tmp).read()))
        raise FileSetError('%s fails its check' % path)

    with pytest.raises(FileSetError, match='bad.conf fails'):
        validate_planned(planned, check)
    assert seen == [('check %s', str(bad), 'broken\n')]
    assert sorted(os.listdir(str(tmp_path))) == []
