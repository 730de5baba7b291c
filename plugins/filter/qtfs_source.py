# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: why a dpu-utilities qtfs tree will not work on a kernel, read from its source.

What is known, from builds against Debian 12's 6.1 kernel (see the
qtfs_server README): tag v1.3 builds and runs; v1.4, master and the
file_mode branch call sock_from_file() with the second argument that Linux
5.11 removed; dev-6.1 (and v1.0/v1.1) predate the move of the common code to
qtfs_common/ and have no 6.1 adaptation in the server's file operations.
v1.3 speaks TCP only (no vsock).
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# The tag to point people at, and the kernels it was built and run on.
GOOD_TAG = 'v1.3'
GOOD_KERNELS = '6.1'

# The files the role reads from the tree (paths relative to it).
SOURCE_FILES = (
    'qtfs/Makefile',
    'qtfs_server/Makefile',
    'qtfs_common/conn.c',
    'conn.c',
    'qtfs_server/fsops.c',
    'include/conn.h',
)

_COMMENT = re.compile(r'/\*.*?\*/|//[^\n]*', re.S)
# A call whose argument list holds a comma at the top level: two arguments.
_SOCK_FROM_FILE = re.compile(r'\bsock_from_file\s*\(')
_RELEASE = re.compile(r'^(\d+)\.(\d+)(?:\.(\d+))?')


def _version_guard(major, minor):
    return re.compile(r'KERNEL_VERSION\s*\(\s*%d\s*,\s*%d\s*,' % (major, minor))


def kernel_version(release):
    """(major, minor, patch) of a kernel release such as 6.1.0-57-amd64."""
    match = _RELEASE.match(str(release).strip())
    if not match:
        raise AnsibleFilterError('qtfs_source_problems: %r is not a kernel release (uname -r)' % (release,))
    return tuple(int(part or 0) for part in match.groups())


def strip_comments(text):
    return _COMMENT.sub(' ', text)


def call_arg_counts(text, name_re=_SOCK_FROM_FILE):
    """Number of arguments of each call matched by name_re (comments ignored)."""
    code = strip_comments(text)
    counts = []
    for match in name_re.finditer(code):
        depth, args, seen = 1, 1, False
        for char in code[match.end():]:
            if char == '(':
                depth += 1
            elif char == ')':
                depth -= 1
                if depth == 0:
                    break
            elif char == ',' and depth == 1:
                args += 1
            elif not char.isspace():
                seen = True
        counts.append(args if seen or args > 1 else 0)
    return counts


def qtfs_source_problems(files, kernel_release, connection='tcp'):
    """Return why the tree will not build or run on kernel_release; empty when none is known.

    files maps paths relative to the qtfs tree (SOURCE_FILES) to their text,
    or to None / no key when the file is missing. connection is the pair's
    offload_common_qtfs_connection (tcp or vsock).
    """
    if not isinstance(files, dict):
        raise AnsibleFilterError('qtfs_source_problems expects a dict of path: text, got %s' % type(files).__name__)
    if connection not in ('tcp', 'vsock'):
        raise AnsibleFilterError('qtfs_source_problems: connection must be tcp or vsock, got %r' % (connection,))
    kernel = kernel_version(kernel_release)
    texts = dict((path, text) for path, text in files.items() if isinstance(text, str))
    use = 'use dpu-utilities tag %s (built and run on Linux %s)' % (GOOD_TAG, GOOD_KERNELS)

    missing = [path for path in ('qtfs/Makefile', 'qtfs_server/Makefile') if path not in texts]
    if missing:
        return ['not a dpu-utilities qtfs tree: %s missing; %s' % (', '.join(missing), use)]

    problems = []
    conn = texts.get('qtfs_common/conn.c')
    if conn is None:
        conn = texts.get('conn.c', '')
        if kernel >= (6, 1, 0):
            problems.append('the tree has the layout before qtfs_common/ (v1.0, v1.1, dev-6.1), which predates '
                            'the adaptation to Linux 6.1 and does not compile on %s; %s' % (kernel_release, use))
    fsops = texts.get('qtfs_server/fsops.c', '')
    if kernel >= (6, 1, 0) and not problems and not _version_guard(6, 1).search(strip_comments(fsops)):
        problems.append('qtfs_server/fsops.c has no Linux 6.1 adaptation (no KERNEL_VERSION(6, 1, ...) case), '
                        'so it does not compile on %s; %s' % (kernel_release, use))
    # A source that still calls it with two arguments only for old kernels names 5.11 in a guard.
    if (kernel >= (5, 11, 0) and 2 in call_arg_counts(conn)
            and not _version_guard(5, 11).search(strip_comments(conn))):
        problems.append('its conn.c calls sock_from_file() with two arguments, which Linux 5.11 reduced to one '
                        '(v1.4, master, file_mode); it does not compile on %s, and forced through it fails at run '
                        'time ("Bad address", "scheduling while atomic"); %s' % (kernel_release, use))
    if connection == 'vsock' and not any('vsock' in strip_comments(texts.get(path, ''))
                                         for path in ('qtfs_common/conn.c', 'conn.c', 'include/conn.h')):
        problems.append('this source speaks TCP only (no vsock; v1.3 is such a source): set '
                        'offload_common_qtfs_connection to tcp (a test-mode link) or use a vsock-capable source')
    return problems


class FilterModule:
    """Checks of a dpu-utilities source tree against the kernel it is built for."""

    def filters(self):
        return {'qtfs_source_problems': qtfs_source_problems}
