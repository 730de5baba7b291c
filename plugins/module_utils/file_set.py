# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan and apply a set of directories, files and links in one pass.

Each remote module run costs far more than the file operations it makes, so
a role's files go to a node in one run. Everything here works on paths and
plain values so the unit tests can drive it against a temporary directory.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import grp
import os
import pwd
import stat
import tempfile

STATES = ('file', 'directory', 'link', 'absent')
# Larger files are compared and written, but not shown in the diff.
DIFF_LIMIT = 64 * 1024


class FileSetError(Exception):
    pass


def parse_mode(value, path):
    """Return an octal mode given as "0755", "755" or an int; None stays None."""
    if value is None or value == '':
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    try:
        mode = int(text, 8)
    except ValueError:
        raise FileSetError('%s: mode %r is not an octal number such as "0644" '
                           '(symbolic modes are not supported)' % (path, value))
    if mode > 0o7777:
        raise FileSetError('%s: mode %r is out of range' % (path, value))
    return mode


def resolve_id(value, kind, path, lookup=None):
    """Return the numeric id of a user (kind 'owner') or group name or number."""
    if value is None or value == '':
        return None
    text = str(value)
    if text.isdigit():
        return int(text)
    if lookup is None:
        lookup = (lambda n: pwd.getpwnam(n).pw_uid) if kind == 'owner' else (lambda n: grp.getgrnam(n).gr_gid)
    try:
        return lookup(text)
    except KeyError:
        raise FileSetError('%s: %s %r does not exist on this node' % (path, kind, text))


def normalize(entries, defaults=None, lookup_owner=None, lookup_group=None):
    """Check the entries and fill in defaults; returns a list of dicts.

    Fields: path, state, content, src, mode, uid, gid, force, parents, validate, if_empty.
    """
    defaults = defaults or {}
    seen = set()
    result = []
    for index, raw in enumerate(entries):
        if not isinstance(raw, dict):
            raise FileSetError('entry %d is not a dictionary' % index)
        path = raw.get('path')
        if not path or not str(path).startswith('/'):
            raise FileSetError('entry %d: path %r must be absolute' % (index, path))
        path = os.path.normpath(str(path))
        if path in seen:
            raise FileSetError('%s: listed twice; keep one entry per path' % path)
        seen.add(path)
        state = raw.get('state') or ('link' if raw.get('src') is not None else
                                     'file' if raw.get('content') is not None else 'directory')
        if state not in STATES:
            raise FileSetError('%s: state %r is not one of %s' % (path, state, ', '.join(STATES)))
        if state == 'file' and raw.get('content') is None:
            raise FileSetError('%s: a file needs content' % path)
        if state == 'link' and not raw.get('src'):
            raise FileSetError('%s: a link needs src, the path it points to' % path)
        if state != 'file' and raw.get('content') is not None:
            raise FileSetError('%s: content is only for state=file' % path)
        if state != 'link' and raw.get('src') is not None:
            raise FileSetError('%s: src is only for state=link' % path)
        if state != 'absent' and raw.get('if_empty'):
            raise FileSetError('%s: if_empty is only for state=absent' % path)

        def pick(key):
            value = raw.get(key)
            return defaults.get(key) if value is None else value

        mode = parse_mode(raw.get('mode'), path)
        if mode is None and state in ('file', 'directory'):
            mode = parse_mode(defaults.get('file_mode' if state == 'file' else 'directory_mode'), path)
        owned = state in ('file', 'directory')
        result.append(dict(
            path=path,
            state=state,
            content=raw.get('content'),
            src=raw.get('src'),
            mode=mode,
            uid=resolve_id(pick('owner'), 'owner', path, lookup_owner) if owned else None,
            gid=resolve_id(pick('group'), 'group', path, lookup_group) if owned else None,
            force=bool(True if raw.get('force') is None else raw.get('force')),
            parents=bool(pick('parents')),
            validate=raw.get('validate') or None,
            if_empty=bool(raw.get('if_empty')),
        ))
    return result


def inspect(path):
    """Describe what stands at path: kind, mode, uid, gid, link target."""
    try:
        st = os.lstat(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return dict(kind='absent')
        raise
    if stat.S_ISLNK(st.st_mode):
        return dict(kind='link', target=os.readlink(path))
    kind = 'file' if stat.S_ISREG(st.st_mode) else 'directory' if stat.S_ISDIR(st.st_mode) else 'other'
    return dict(kind=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid)


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


def _text(data):
    if len(data) > DIFF_LIMIT:
        return None
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        return None


def _attr_actions(entry, current):
    actions = []
    if entry['mode'] is not None and current.get('mode') != entry['mode']:
        actions.append('chmod')
    if (entry['uid'] is not None and current.get('uid') != entry['uid']) or \
            (entry['gid'] is not None and current.get('gid') != entry['gid']):
        actions.append('chown')
    return actions


def _describe(info, mode=None):
    if info['kind'] == 'absent':
        return 'absent\n'
    if info['kind'] == 'link':
        return 'link -> %s\n' % info['target']
    shown = info.get('mode') if mode is None else mode
    return '%s mode %s uid %s gid %s\n' % (
        info['kind'], '%04o' % shown if shown is not None else '-', info.get('uid', '-'), info.get('gid', '-'))


def missing_parents(path, planned_dirs=frozenset()):
    """The ancestors of path that neither exist nor are planned, outermost first."""
    missing = []
    parent = os.path.dirname(path)
    while parent not in planned_dirs and not os.path.isdir(parent):
        if os.path.lexists(parent):
            raise FileSetError('%s: %s is not a directory' % (path, parent))
        missing.insert(0, parent)
        parent = os.path.dirname(parent)
    return missing


def plan_entry(entry, planned_dirs=frozenset(), predict=False, removed=frozenset()):
    """Return (actions, diff) for one normalized entry; raises FileSetError.

    planned_dirs holds directories an earlier entry of the same run creates,
    so that check mode predicts files inside them instead of failing. With
    predict (check mode), a missing parent is taken as made by an earlier
    task, whose creation check mode only predicted. removed holds the paths
    earlier entries remove, so a directory they empty can go too.
    """
    path = entry['path']
    current = inspect(path)
    kind = current['kind']
    state = entry['state']
    missing = [] if state == 'absent' or kind != 'absent' else missing_parents(path, planned_dirs)
    if missing and not entry['parents'] and not predict:
        raise FileSetError('%s: the directory %s does not exist; list it as a state=directory entry '
                           'before this one, or set parents' % (path, missing[-1]))

    before = _describe(current)
    diff = None
    actions = ['parents'] if missing and entry['parents'] else []
    if state == 'directory':
        if kind == 'absent':
            actions += ['create']
        elif kind == 'directory':
            actions = _attr_actions(entry, current)
        else:
            raise FileSetError('%s: a %s stands where a directory belongs; remove it first' % (path, kind))
        after = dict(kind='directory', mode=entry['mode'] if entry['mode'] is not None else current.get('mode'),
                     uid=entry['uid'] if entry['uid'] is not None else current.get('uid'),
                     gid=entry['gid'] if entry['gid'] is not None else current.get('gid'))
        if actions:
            diff = dict(before_header=path, after_header=path, before=before, after=_describe(after))

    elif state == 'link':
        if kind == 'absent':
            actions += ['link']
        elif kind == 'link':
            actions = [] if current['target'] == entry['src'] else ['relink']
        else:
            raise FileSetError('%s: a %s stands where the link to %s belongs; remove it first'
                               % (path, kind, entry['src']))
        if actions:
            diff = dict(before_header=path, after_header=path, before=before,
                        after='link -> %s\n' % entry['src'])

    elif state == 'file':
        new = entry['content'].encode('utf-8')
        old = None
        if kind in ('absent', 'link'):
            # A link is replaced by the file (rename), never written through:
            # it may point at a file that belongs to someone else (the DPU's
            # own /usr/sbin/modprobe).
            actions += ['write']
        elif kind == 'file':
            old = _read(path)
            if old != new and entry['force']:
                actions = ['write']
            actions += _attr_actions(entry, current)
        else:
            raise FileSetError('%s: a %s stands where a file belongs; remove it first' % (path, kind))
        if actions:
            old_text = '' if old is None else _text(old)
            new_text = _text(new)
            if 'write' in actions and old_text is not None and new_text is not None:
                diff = dict(before_header=path, after_header=path, before=old_text if kind == 'file' else before,
                            after=new_text)
            else:
                diff = dict(before_header=path, after_header=path, before=before,
                            after=_describe(dict(kind='file', uid=entry['uid'], gid=entry['gid']),
                                            entry['mode']))

    else:  # absent
        if kind == 'absent':
            actions = []
        elif kind == 'directory':
            if not [name for name in os.listdir(path) if os.path.join(path, name) not in removed]:
                actions = ['rmdir']
            elif entry['if_empty']:
                # Something else lives there: it stays, and so does the directory.
                actions = []
            else:
                raise FileSetError('%s: the directory is not empty; it is removed only when empty' % path)
        else:
            actions = ['remove']
        if actions:
            diff = dict(before_header=path, after_header=path, before=before, after='absent\n')
    return actions, diff


def plan(entries, predict=False):
    """Plan every entry in order; returns a list of (entry, actions, diff)."""
    planned_dirs = set()
    removed = set()
    planned = []
    for entry in entries:
        actions, diff = plan_entry(entry, planned_dirs, predict, removed)
        if 'parents' in actions or (predict and entry['state'] != 'absent'):
            planned_dirs.update(missing_parents(entry['path'], planned_dirs))
        if entry['state'] == 'absent' and (actions or not os.path.lexists(entry['path'])):
            planned_dirs.discard(entry['path'])
            removed.add(entry['path'])
        elif entry['state'] == 'directory':
            planned_dirs.add(entry['path'])
        planned.append((entry, actions, diff))
    return planned


def _chown(path, uid, gid):
    if uid is None and gid is None:
        return
    os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)


def write_file(entry):
    """Write the content beside the path, then rename it into place."""
    path = entry['path']
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % name, dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(entry['content'].encode('utf-8'))
            f.flush()
            os.fsync(f.fileno())
        mode = entry['mode']
        if mode is None:
            current = inspect(path)
            mode = current.get('mode', 0o644) if current['kind'] == 'file' else 0o644
        os.chmod(tmp, mode)
        _chown(tmp, entry['uid'], entry['gid'])
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def validate_planned(planned, run):
    """Check the new content of every entry that has a validate command.

    Runs before anything is applied, so a bad file leaves the whole set as it
    was. run(command, tmp_path, path) raises FileSetError when the check fails.
    """
    for entry, actions, _diff in planned:
        if 'write' not in actions or not entry['validate']:
            continue
        directory = os.path.dirname(entry['path'])
        fd, tmp = tempfile.mkstemp(prefix='.%s.check.' % os.path.basename(entry['path']),
                                   dir=directory if os.path.isdir(directory) else None)
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(entry['content'].encode('utf-8'))
            os.chmod(tmp, 0o600)
            run(entry['validate'], tmp, entry['path'])
        finally:
            os.unlink(tmp)


def apply_entry(entry, actions):
    """Carry out the planned actions of one entry."""
    path = entry['path']
    for action in actions:
        if action == 'parents':
            # Like the file module: created ancestors get the entry's mode and owner.
            mode = entry['mode'] if entry['state'] == 'directory' and entry['mode'] is not None else 0o755
            for parent in missing_parents(path):
                os.mkdir(parent, mode)
                os.chmod(parent, mode)
                _chown(parent, entry['uid'], entry['gid'])
        elif action == 'create':
            os.mkdir(path, entry['mode'] if entry['mode'] is not None else 0o755)
            # mkdir's mode passes through the umask; set it exactly.
            if entry['mode'] is not None:
                os.chmod(path, entry['mode'])
            _chown(path, entry['uid'], entry['gid'])
        elif action == 'link':
            os.symlink(entry['src'], path)
        elif action == 'relink':
            tmp = '%s/.%s.dpu-offload-link' % os.path.split(path)
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(entry['src'], tmp)
            os.rename(tmp, path)
        elif action == 'remove':
            os.unlink(path)
        elif action == 'rmdir':
            os.rmdir(path)
        elif action == 'write':
            write_file(entry)
        elif action == 'chmod':
            os.chmod(path, entry['mode'])
        elif action == 'chown':
            _chown(path, entry['uid'], entry['gid'])
        else:
            raise FileSetError('%s: unknown action %r' % (path, action))
