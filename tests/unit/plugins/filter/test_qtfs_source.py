# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The samples below are written for these tests: they only have the shapes the
filter tells apart (a call's argument count, a version guard, the tree's layout)."""
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.qtfs_source import (
    call_arg_counts,
    kernel_version,
    qtfs_source_problems,
)

MAKEFILES = {'qtfs/Makefile': 'obj-m := client.o\n', 'qtfs_server/Makefile': 'obj-m := server.o\n'}

ONE_ARG = '''
static struct socket *peer_socket(int fd)
{
\tstruct fd f = fdget(fd);
\tstruct socket *s = sock_from_file(f.file);  /* one argument */
\treturn s;
}
'''

TWO_ARGS = '''
static struct socket *peer_socket(int fd, int *err)
{
\tstruct fd f = fdget(fd);
\treturn sock_from_file(f.file,
\t\t\t      err);
}
'''

NO_CALL = 'int connect_peer(const char *addr, int port) { return tcp_connect(addr, port); }\n'

TWO_ARGS_GUARDED = '''
#if (LINUX_VERSION_CODE < KERNEL_VERSION(5, 11, 0))
\ts = sock_from_file(f.file, &err);
#else
\ts = sock_from_file(f.file);
#endif
'''

TWO_ARGS_IN_COMMENT = '''
// older kernels: sock_from_file(file, &err)
/* sock_from_file(a,
   b) */
s = sock_from_file(f.file);
'''

FSOPS_61 = '''
static int do_setattr(struct dentry *d, struct iattr *a)
{
#if (LINUX_VERSION_CODE >= KERNEL_VERSION(6,1,0))
\treturn notify_change(&nop_mnt_idmap, d, a, NULL);
#else
\treturn notify_change(d, a, NULL);
#endif
}
'''

FSOPS_OLD = '''
static int do_setattr(struct dentry *d, struct iattr *a)
{
\treturn notify_change(d, a, NULL);   /* KERNEL_VERSION(6, 1, 0) only in a comment */
}
'''

VSOCK_HEADER = 'struct conn_addr { unsigned int vsock_cid; unsigned int port; };\n'


def tree(**files):
    out = dict(MAKEFILES)
    out.update(files)
    return out


# A v1.3-like tree: common code in qtfs_common/, no two-argument call, a 6.1 case, TCP only.
GOOD = tree(**{'qtfs_common/conn.c': NO_CALL, 'qtfs_server/fsops.c': FSOPS_61})


def test_a_v13_like_tree_passes_on_6_1_over_tcp():
    assert qtfs_source_problems(GOOD, '6.1.0-57-amd64') == []
    assert qtfs_source_problems(GOOD, '6.1.0-57-amd64', connection='tcp') == []


def test_a_one_argument_call_passes():
    files = tree(**{'qtfs_common/conn.c': ONE_ARG, 'qtfs_server/fsops.c': FSOPS_61})
    assert qtfs_source_problems(files, '6.1.0-57-amd64') == []


def test_a_two_argument_call_is_refused_from_5_11_naming_the_tag():
    files = tree(**{'qtfs_common/conn.c': TWO_ARGS, 'qtfs_server/fsops.c': FSOPS_61})
    problems = qtfs_source_problems(files, '6.1.0-57-amd64')
    assert len(problems) == 1
    assert 'sock_from_file' in problems[0] and '5.11' in problems[0] and 'v1.3' in problems[0]
    assert len(qtfs_source_problems(files, '5.11.0')) == 1


def test_a_two_argument_call_is_fine_before_5_11():
    files = tree(**{'qtfs_common/conn.c': TWO_ARGS, 'qtfs_server/fsops.c': FSOPS_61})
    assert qtfs_source_problems(files, '5.10.0-28-amd64') == []
    assert qtfs_source_problems(files, '4.19.90-2102.2.0.0062.oe1.x86_64') == []


def test_a_guarded_two_argument_call_counts_as_adapted():
    files = tree(**{'qtfs_common/conn.c': TWO_ARGS_GUARDED, 'qtfs_server/fsops.c': FSOPS_61})
    assert qtfs_source_problems(files, '6.1.0-57-amd64') == []


def test_calls_in_comments_are_ignored():
    assert call_arg_counts(TWO_ARGS_IN_COMMENT) == [1]
    files = tree(**{'qtfs_common/conn.c': TWO_ARGS_IN_COMMENT, 'qtfs_server/fsops.c': FSOPS_61})
    assert qtfs_source_problems(files, '6.1.0-57-amd64') == []


def test_argument_counts_follow_nested_parentheses():
    assert call_arg_counts('x = sock_from_file(get(a, b));') == [1]
    assert call_arg_counts('x = sock_from_file(get(a), (b));') == [2]
    assert call_arg_counts('x = sock_from_file();') == [0]
    assert call_arg_counts(NO_CALL) == []


def test_a_tree_before_qtfs_common_is_refused_on_6_1_only():
    old = tree(**{'conn.c': NO_CALL, 'qtfs_server/fsops.c': FSOPS_61})
    problems = qtfs_source_problems(old, '6.1.0-57-amd64')
    assert len(problems) == 1 and 'qtfs_common' in problems[0] and 'dev-6.1' in problems[0] and 'v1.3' in problems[0]
    assert qtfs_source_problems(old, '5.10.0-28-amd64') == []


def test_a_server_without_the_6_1_case_is_refused_on_6_1_and_later():
    files = tree(**{'qtfs_common/conn.c': NO_CALL, 'qtfs_server/fsops.c': FSOPS_OLD})
    problems = qtfs_source_problems(files, '6.1.0-57-amd64')
    assert len(problems) == 1 and 'fsops.c' in problems[0] and 'v1.3' in problems[0]
    assert len(qtfs_source_problems(files, '6.6.13')) == 1
    assert qtfs_source_problems(files, '6.0.12') == []


def test_both_faults_are_reported_together():
    files = tree(**{'qtfs_common/conn.c': TWO_ARGS, 'qtfs_server/fsops.c': FSOPS_OLD})
    problems = qtfs_source_problems(files, '6.1.0-57-amd64')
    assert len(problems) == 2
    assert 'fsops.c' in problems[0] and 'sock_from_file' in problems[1]


def test_vsock_needs_vsock_code_in_the_source():
    problems = qtfs_source_problems(GOOD, '6.1.0-57-amd64', connection='vsock')
    assert len(problems) == 1 and 'TCP only' in problems[0] and 'offload_common_qtfs_connection' in problems[0]
    with_vsock = dict(GOOD, **{'include/conn.h': VSOCK_HEADER})
    assert qtfs_source_problems(with_vsock, '6.1.0-57-amd64', connection='vsock') == []
    commented = dict(GOOD, **{'include/conn.h': '/* vsock: not yet */\n'})
    assert len(qtfs_source_problems(commented, '6.1.0-57-amd64', connection='vsock')) == 1


def test_a_tree_without_the_makefiles_is_not_a_qtfs_tree():
    problems = qtfs_source_problems({'qtfs_common/conn.c': NO_CALL, 'qtfs/Makefile': None}, '6.1.0-57-amd64')
    assert len(problems) == 1
    assert 'qtfs/Makefile' in problems[0] and 'qtfs_server/Makefile' in problems[0]
    assert qtfs_source_problems({}, '6.1.0')[0].startswith('not a dpu-utilities qtfs tree')


def test_kernel_releases():
    assert kernel_version('6.1.0-57-amd64') == (6, 1, 0)
    assert kernel_version('6.18.44-fc-v1045') == (6, 18, 44)
    assert kernel_version('5.10') == (5, 10, 0)
    with pytest.raises(AnsibleFilterError, match='not a kernel release'):
        kernel_version('')
    with pytest.raises(AnsibleFilterError, match='not a kernel release'):
        qtfs_source_problems(GOOD, 'linux')


def test_bad_inputs():
    with pytest.raises(AnsibleFilterError, match='dict'):
        qtfs_source_problems(['qtfs/Makefile'], '6.1.0')
    with pytest.raises(AnsibleFilterError, match='tcp or vsock'):
        qtfs_source_problems(GOOD, '6.1.0', connection='rdma')


def test_the_role_reads_the_files_the_filter_looks_at():
    import pathlib
    import yaml
    from ansible_collections.dpu.offload.plugins.filter.qtfs_source import SOURCE_FILES
    root = pathlib.Path(__file__).resolve().parents[4]
    role_vars = yaml.safe_load((root / 'roles/offload_common/vars/main.yml').read_text())
    assert role_vars['__offload_common_qtfs_source_files'] == list(SOURCE_FILES)
