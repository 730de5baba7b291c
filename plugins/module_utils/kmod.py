# -*- coding: utf-8 -*-
# Copyright: Contributors to the dpu.offload collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Kernel module state and decisions for dpu.offload.kmod.

Functions take the sysfs and procfs roots as arguments so that tests can
build a fake /sys/module tree in a temporary directory.

Parameter comparison: values read from /sys/module/<name>/parameters/<p>
are compared as strings after stripping white space. Requested booleans
(true/false, yes/no, on/off, y/n, 1/0) compare equal to the kernel's Y/N
when the running value is Y or N. Integers are compared as their decimal
text.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

NO_MODULE_SUPPORT_MSG = (
    'this kernel was built without loadable module support (%s is missing); '
    '%s cannot be loaded here; on a lab machine use the sshfs transport instead of qtfs')

TRUE_WORDS = frozenset(['y', 'yes', 'true', 'on', '1'])
FALSE_WORDS = frozenset(['n', 'no', 'false', 'off', '0'])


class KmodError(Exception):
    """A request that cannot be carried out; nothing was changed."""

    def __init__(self, msg, mismatches=None):
        super(KmodError, self).__init__(msg)
        self.mismatches = mismatches or []


def module_name_from_path(path):
    """Kernel name of a module file: basename without .ko(.xz/.gz/.zst), '-' as '_'."""
    base = os.path.basename(path)
    for suffix in ('.ko.xz', '.ko.gz', '.ko.zst', '.ko'):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
            break
    return base.replace('-', '_')


def canonical_name(name):
    return name.replace('-', '_')


def loadable_modules_supported(proc_root='/proc'):
    """True when the kernel supports loadable modules (/proc/modules exists)."""
    return os.path.exists(os.path.join(proc_root, 'modules'))


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (IOError, OSError):
        return None


def read_params(name, sys_root='/sys', only=None):
    """Parameters exposed in /sys/module/<name>/parameters.

    Returns a dict name -> value; a file that exists but cannot be read maps
    to None. With only, just those names are looked at (missing ones left out).
    """
    pdir = os.path.join(sys_root, 'module', name, 'parameters')
    if only is not None:
        names = [p for p in only if os.path.exists(os.path.join(pdir, p))]
    else:
        try:
            names = sorted(os.listdir(pdir))
        except (IOError, OSError):
            names = []
    return dict((p, _read(os.path.join(pdir, p))) for p in names)


def module_state(name, sys_root='/sys', params=None):
    """What /sys says about a module.

    Keys: present, builtin, initstate, refcnt, holders, params.
    A module built into the kernel has a /sys/module entry (when it has
    parameters) but no initstate file.
    """
    mdir = os.path.join(sys_root, 'module', name)
    state = {'name': name, 'present': False, 'builtin': False, 'initstate': None,
             'refcnt': None, 'holders': [], 'params': {}}
    if not os.path.isdir(mdir):
        return state
    initstate = _read(os.path.join(mdir, 'initstate'))
    state['initstate'] = initstate
    state['builtin'] = initstate is None
    state['present'] = True
    refcnt = _read(os.path.join(mdir, 'refcnt'))
    if refcnt is not None:
        try:
            state['refcnt'] = int(refcnt)
        except ValueError:
            state['refcnt'] = None
    try:
        state['holders'] = sorted(os.listdir(os.path.join(mdir, 'holders')))
    except (IOError, OSError):
        state['holders'] = []
    state['params'] = read_params(name, sys_root, only=params)
    return state


def param_text(value):
    """Requested parameter value as the text given to insmod/modprobe."""
    if isinstance(value, bool):
        return 'Y' if value else 'N'
    if value is None:
        return ''
    return str(value).strip()


def param_equal(requested, running):
    """Compare one requested value with the running text from /sys."""
    want = param_text(requested)
    have = (running or '').strip()
    if want == have:
        return True
    if have in ('Y', 'N'):
        low = want.lower()
        if low in TRUE_WORDS:
            return have == 'Y'
        if low in FALSE_WORDS:
            return have == 'N'
    return False


def compare_params(requested, running):
    """Return (mismatches, unchecked).

    mismatches: list of (name, requested text, running text).
    unchecked: names not readable in /sys (not exported, or unreadable).
    """
    mismatches = []
    unchecked = []
    for pname in sorted(requested):
        if pname not in running or running[pname] is None:
            unchecked.append(pname)
            continue
        if not param_equal(requested[pname], running[pname]):
            mismatches.append((pname, param_text(requested[pname]), running[pname]))
    return mismatches, unchecked


def param_args(params):
    """Arguments for insmod/modprobe: ['k=v', ...]; values with blanks quoted."""
    args = []
    for pname in sorted(params):
        text = param_text(params[pname])
        if any(c in text for c in ' \t"'):
            text = '"%s"' % text.replace('"', '')
        args.append('%s=%s' % (pname, text))
    return args


def in_use_message(state):
    holders = ', '.join(state['holders']) if state['holders'] else 'none'
    return ('module %s is in use (refcnt %s, holders: %s); stop its users first '
            '(for qtfs: unmount every qtfs mount)' % (state['name'], state['refcnt'], holders))


def is_in_use(state):
    return bool(state['holders']) or bool(state['refcnt'])


def plan(name=None, path=None, params=None, state='present', reload_on_change=False,
         sys_root='/sys', proc_root='/proc'):
    """Decide what to do. Returns a dict:

    name, action (unchanged|load|reload|unload), commands (list of argv lists
    with the programs named insmod, modprobe and rmmod), warnings, before
    (module_state) and mismatches.

    Raises KmodError with an actionable message.
    """
    params = dict(params or {})
    if not name and not path:
        raise KmodError('give name or path')
    if path and not os.path.isabs(path):
        raise KmodError('path %r is relative; give the absolute path of the .ko file' % path)
    kname = canonical_name(name) if name else module_name_from_path(path)
    what = os.path.basename(path) if path else kname
    before = module_state(kname, sys_root, params=list(params) if params else None)
    decision = {'name': kname, 'action': 'unchanged', 'commands': [], 'warnings': [],
                'before': before, 'mismatches': []}
    loadable = loadable_modules_supported(proc_root)
    modules_file = os.path.join(proc_root, 'modules')

    if state == 'absent':
        if not before['present']:
            return decision
        if before['builtin'] or not loadable:
            raise KmodError('module %s is built into the kernel and cannot be unloaded' % kname)
        if is_in_use(before):
            raise KmodError(in_use_message(before))
        decision['action'] = 'unload'
        decision['commands'] = [['rmmod', kname]]
        return decision

    load_cmd = (['insmod', path] if path else ['modprobe', kname]) + param_args(params)

    if before['present']:
        mismatches, unchecked = compare_params(params, before['params'])
        decision['mismatches'] = mismatches
        for pname in unchecked:
            decision['warnings'].append(
                'parameter %s of %s is not readable in %s (not exported by the module); '
                'its running value cannot be checked'
                % (pname, kname, os.path.join(sys_root, 'module', kname, 'parameters')))
        if not mismatches:
            return decision
        listing = ', '.join('%s (requested %r, running %r)' % m for m in mismatches)
        if before['builtin']:
            raise KmodError('module %s is built into the kernel with other parameter values: %s'
                            % (kname, listing), mismatches)
        if not reload_on_change:
            raise KmodError('module %s is loaded with other parameter values: %s; the kernel keeps '
                            'the values of a loaded module, set reload_on_change: true to unload '
                            'and load it again' % (kname, listing), mismatches)
        if is_in_use(before):
            raise KmodError('cannot reload to change %s: %s' % (listing, in_use_message(before)), mismatches)
        if path and not os.path.isfile(path):
            raise KmodError('module file %s not found' % path, mismatches)
        decision['action'] = 'reload'
        decision['commands'] = [['rmmod', kname], load_cmd]
        return decision

    if not loadable:
        raise KmodError(NO_MODULE_SUPPORT_MSG % (modules_file, what))
    if path and not os.path.isfile(path):
        raise KmodError('module file %s not found' % path)
    decision['action'] = 'load'
    decision['commands'] = [load_cmd]
    return decision


def describe_state(state):
    """Text for diff output."""
    if not state['present']:
        return 'module %s: not loaded\n' % state['name']
    lines = ['module %s: %s' % (state['name'], 'built-in' if state['builtin'] else 'loaded')]
    for pname in sorted(state['params']):
        lines.append('  %s=%s' % (pname, state['params'][pname]))
    return '\n'.join(lines) + '\n'


def predicted_state(decision, params):
    """What module_state would report after a successful run (check mode)."""
    after = dict(decision['before'])
    if decision['action'] == 'unload':
        after.update(present=False, params={}, holders=[], refcnt=None, initstate=None)
    elif decision['action'] in ('load', 'reload'):
        after.update(present=True, builtin=False, initstate='live', refcnt=0,
                     params=dict((k, param_text(v)) for k, v in (params or {}).items()))
    return after
