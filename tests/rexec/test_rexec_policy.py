# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""In-process tests of the server's policy: allowlist syntax, argument and environment rules, pid rules, peer names."""

import os

import pytest

from dpu_offload_rexec import policy_access, policy_commands, policy_env, policy_words, settings

TARGETS = "comm=containerd-shim*,comm=runc,under=containerd-shim*,exe=/usr/sbin/runc"


class FakeProcs:
    """pid -> (comm, ppid[, exe])."""

    def __init__(self, table):
        self.table = table

    def stat(self, pid):
        entry = self.table.get(pid)
        return None if entry is None else entry[:2]

    def exe(self, pid):
        entry = self.table.get(pid)
        return None if entry is None or len(entry) < 3 else entry[2]


PROCS = FakeProcs({
    1: ("systemd", 0),
    100: ("sshd", 1),
    200: ("containerd-shim", 1),
    201: ("sh", 200),
    202: ("nginx", 201),
    300: ("runc", 1),
    400: ("runc:[2:INIT]", 1, "/usr/sbin/runc"),
    500: ("sleep", 100),
})


def allow(text, real=lambda path: path):
    return policy_commands.parse_allowlist(text.encode(), realpath=real)


def decide(allowlist, argv, env=(), path=None):
    argv = [os.fsencode(arg) for arg in argv]
    return allowlist.decide(path or argv[0], argv, [os.fsencode(entry) for entry in env], PROCS)


def refused(allowlist, argv, env=()):
    with pytest.raises(policy_commands.Refusal) as info:
        decide(allowlist, argv, env)
    return info.value.kind


# --------------------------------------------------------------------------
# syntax


def test_bare_path_allows_no_arguments():
    rules = allow("/bin/tool\n")
    rule, env = decide(rules, ["/bin/tool"])
    assert rule.path == "/bin/tool" and env == dict(policy_env.BASE_ENV)
    assert refused(rules, ["/bin/tool", "x"]) == "arguments"
    assert refused(rules, ["/bin/other"]) == "allowlist"


def test_comments_blank_lines_relative_and_broken_lines():
    assert [n for n, _why in allow("    env A=1\n").problems] == [1]
    rules = allow("# comment\n\n   # indented\nrelative/tool\n/bin/a {nope}\n/bin/b [ x\n/bin/c {re:(}\n/bin/d x ]\n"
                  "/bin/e {any}... x\n    env A=1\n/bin/ok\n")
    assert list(rules.rules) == [b"/bin/ok"]
    assert [number for number, _why in rules.problems] == [4, 5, 6, 7, 8, 9]


def test_literals_quotes_and_escapes():
    rules = allow("/bin/t 'a b' {=\\{any\\}} \"x'y\" {=[}\n")
    assert decide(rules, ["/bin/t", "a b", "\\{any\\}", "x'y", "["])
    assert refused(rules, ["/bin/t", "a", "b", "{any}", "x'y", "["]) == "arguments"


@pytest.mark.parametrize("args,ok", [
    ([], False), (["start"], True), (["-debug", "start"], True), (["-id", "c1", "start"], True),
    (["-id", "c1", "-debug", "start"], True), (["-debug", "-id", "c1", "start"], False),
    (["-id", "-debug", "start"], False), (["-id", "c1", "-id", "c2", "start"], False), (["stop"], False),
])
def test_optional_groups(args, ok):
    rules = allow("/bin/shim [ -id {name} ] [ -debug ] {re:start|delete}\n")
    if ok:
        assert decide(rules, ["/bin/shim"] + args)
    else:
        assert refused(rules, ["/bin/shim"] + args) == "arguments"


def test_repeat_only_at_the_end():
    rules = allow("/bin/t {uint}...\n/bin/u {uint}... x\n")
    assert decide(rules, ["/bin/t", "1", "2", "3"])
    assert refused(rules, ["/bin/t"]) == "arguments"          # one or more
    assert b"/bin/u" not in rules


@pytest.mark.parametrize("placeholder,good,bad", [
    ("{name}", ["moby", "k8s.io", "a-b_c.1", "x" * 128], ["-x", "", "a/b", "a b", "x" * 129, ".hidden"]),
    ("{uint}", ["0", "2", "4294967295"], ["-1", "1.5", "", "12345678901", "0x10"]),
    ("{module}", ["overlay", "nf_conntrack", "fs-overlay"], ["-C", "mod=1", "../x", "a/b", "", "x" * 65]),
    ("{signal}", ["-9", "-KILL", "-SIGTERM", "-0", "-RTMIN+3", "-64"], ["9", "-65", "-NOPE", "-", "-s", "--"]),
    ("{signame}", ["9", "KILL", "SIGHUP"], ["-9", "NOPE", ""]),
    ("{path:/run/containerd/*/*}", ["/run/containerd/ns/id"],
     ["/run/containerd/ns", "/run/containerd/ns/id/x", "/run/containerd/../x/y", "/run//containerd/ns/id",
      "/run/containerd/ns/id/", "run/containerd/ns/id", "/run/containerd/./id"]),
    ("{re:-[a-z]+}", ["-abc"], ["-abc1", "x-abc", "-"]),
    ("{any}", ["", "-rf", "anything at all"], []),
])
def test_placeholders(placeholder, good, bad):
    rules = allow("/bin/t %s\n" % placeholder)
    for value in good:
        assert decide(rules, ["/bin/t", value]), value
    for value in bad:
        assert refused(rules, ["/bin/t", value]) == "arguments", value


# Issue 31: str.isdigit() is true for '²' and '٩'; int('²') raised (a dropped session) and '-٩' was signal 9.
@pytest.mark.parametrize("placeholder,value", [
    ("{signal}", "-\u00b2"), ("{signal}", "-9\u00b2"), ("{signal}", "-\u0669"), ("{signal}", "-\u0661\u0665"),
    ("{signal}", "-RTMIN+\u0663"), ("{signame}", "\u00b2"), ("{signame}", "\u0669"), ("{signame}", "\uff19"),
    ("{uint}", "\u0669"), ("{uint}", "\u00b2"), ("{uint}", "\uff11"),
    ("{pid:%s}" % TARGETS, "\u0662\u0660\u0660"),        # 200 in Arabic-Indic digits: the shim's pid
    ("{re:\\d+}", "\u0669"), ("{re:[\\d,]+}", "1,\u0662"),
])
def test_numbers_are_ascii_digits_only(placeholder, value):
    rules = allow("/bin/t %s\n" % placeholder)
    assert refused(rules, ["/bin/t", value]) == "arguments"


def test_nul_never_matches():
    rules = allow("/bin/t {any}\n")
    assert refused(rules, ["/bin/t", "a\0b"]) == "arguments"


# --------------------------------------------------------------------------
# pids


@pytest.mark.parametrize("pid,ok", [
    ("200", True),      # the shim (comm)
    ("202", True),      # a container process, two levels under the shim
    ("300", True),      # runc
    ("400", True),      # by executable
    ("100", False),     # sshd: not the offload's
    ("500", False),     # under sshd
    ("1", False), ("0", False), ("-1", False), ("-200", False), ("0200", False), ("+200", False), ("999", False),
    ("200 ", False), ("4194304", False),
])
def test_pid_rules(pid, ok):
    rules = allow("/bin/kill {signal} {pid:%s}...\n" % TARGETS)
    if ok:
        assert decide(rules, ["/bin/kill", "-9", pid])
    else:
        assert refused(rules, ["/bin/kill", "-9", pid]) == "arguments"


def test_every_pid_of_a_list_must_belong_to_the_offload():
    rules = allow("/bin/kill {signal} {pid:%s}...\n" % TARGETS)
    assert decide(rules, ["/bin/kill", "-TERM", "200", "202"])
    assert refused(rules, ["/bin/kill", "-TERM", "200", "100"]) == "arguments"
    assert refused(rules, ["/bin/kill", "-9", "-1"]) == "arguments"


def test_bad_pid_selectors_are_refused():
    rules = allow("/bin/kill {pid:anything}\n/bin/k2 {pid:comm=}\n/bin/k3 {pid:}\n")
    assert not rules.rules and len(rules.problems) == 3


def test_under_walk_is_bounded():
    chain = {pid: ("sh", pid - 1) for pid in range(2, 300)}
    chain[2] = ("containerd-shim", 1)
    procs = FakeProcs(chain)
    rule = policy_words.PidRule("under=containerd-shim*")
    assert rule.check("50", procs)
    assert not rule.check("299", procs)        # more than MAX_ANCESTORS up


def test_real_procs_reads_this_process():
    procs = policy_words.Procs()
    comm, ppid = procs.stat(os.getpid())
    assert ppid == os.getppid() and comm
    assert procs.stat(1 << 30) is None
    assert procs.exe(os.getpid())


# --------------------------------------------------------------------------
# environment


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH", "BASH_ENV", "ENV", "BASH_FUNC_id%%",
                                  "PYTHONPATH", "PYTHONWARNINGS", "PYTHONSTARTUP", "PERL5OPT", "PERL5LIB", "RUBYOPT",
                                  "RUBYLIB", "NODE_OPTIONS", "GCONV_PATH", "BROWSER", "SHELLOPTS", "HOME", "PATH",
                                  "LANG", "LC_ALL", "GLIBC_TUNABLES", "OPENSSL_CONF", "ld_preload", "1ABC", "A-B", "",
                                  # issue 31: glibc's secure-execution list and the Go runtime's
                                  "TZ", "tz", "TZDIR", "NLSPATH", "HOSTALIASES", "RES_OPTIONS", "LOCALDOMAIN", "NIS_PATH",
                                  "MALLOC_CHECK_", "MALLOC_ARENA_MAX", "MALLOC_TRACE", "GMON_OUT_PREFIX", "DATEMSK",
                                  "POSIXLY_CORRECT", "RESOLV_SPOOF_CHECK", "MEMUSAGE_OUTPUT", "SEGFAULT_SIGNALS",
                                  "GODEBUG", "GOTRACEBACK", "GORACE", "GOCOVERDIR", "GOROOT", "ZONEINFO", "GOENV",
                                  "GOTOOLCHAIN", "GOFLAGS", "HTTPS_PROXY", "http_proxy", "NO_PROXY"])
def test_loader_interpreter_and_reserved_names_are_never_passed(name):
    assert policy_env.env_name_refused(name) is not None
    rules = allow("/bin/t\n    env %s={any}\n" % name)
    assert not rules.rules, "a rule naming %s must be dropped whole" % name


# GOMAXPROCS and TTRPC_ADDRESS: the stock shim rule passes them; GOGC, GOMEMLIMIT: memory knobs, no files or code.
@pytest.mark.parametrize("name", ["TTRPC_ADDRESS", "GOMAXPROCS", "GOGC", "GOMEMLIMIT", "CONTAINERD_ADDRESS", "SHIM_HOST",
                                  "_X"])
def test_plain_names_may_be_named(name):
    assert policy_env.env_name_refused(name) is None


def test_environment_is_built_by_the_server():
    rules = allow("/bin/shim start\n    env TTRPC_ADDRESS=/run/containerd/containerd.sock.ttrpc GOMAXPROCS={uint}\n"
                  "/bin/shim delete\n")
    sent = ["TTRPC_ADDRESS=/run/containerd/containerd.sock.ttrpc", "GOMAXPROCS=2", "LD_PRELOAD=/x.so", "PATH=/tmp",
            "HOME=/root", "GOMAXPROCS=99"]
    _rule, env = decide(rules, ["/bin/shim", "start"], sent)
    assert env == {b"PATH": policy_env.DEFAULT_PATH, b"LC_ALL": b"C",
                   b"TTRPC_ADDRESS": b"/run/containerd/containerd.sock.ttrpc", b"GOMAXPROCS": b"2"}
    # the environment belongs to the rule: `delete` gets none of it
    _rule, env = decide(rules, ["/bin/shim", "delete"], sent)
    assert env == dict(policy_env.BASE_ENV)
    # a named variable with a value the rule refuses: the request is refused
    assert refused(rules, ["/bin/shim", "start"], ["TTRPC_ADDRESS=/tmp/evil.sock"]) == "environment"
    # a variable that is not sent is not set either
    _rule, env = decide(rules, ["/bin/shim", "start"], [])
    assert b"TTRPC_ADDRESS" not in env


def test_first_matching_rule_wins_and_sets_argv0():
    rules = allow("/usr/bin/kill {signal} {pid:comm=runc}\n", real=lambda path: b"/bin/busybox")
    rule, _env = rules.decide(b"/bin/busybox", [b"/bin/sh", b"-9", b"300"], [], PROCS)
    assert rule.path == "/usr/bin/kill"
    with pytest.raises(policy_commands.Refusal):
        rules.decide(b"/bin/busybox", [b"/bin/sh", b"-c", b"id"], [], PROCS)


def test_parse_env_entries():
    assert policy_env.parse_env_entries([b"A=1", b"A=2", b"B", b"=x", b"C=a=b"]) == {"A": b"1", "C": b"a=b"}


# --------------------------------------------------------------------------
# peers


def test_peers():
    peers = settings.parse_peers(" lab-dpu, Other ,,")
    assert peers == frozenset(("lab-dpu", "other"))
    assert settings.parse_peers("") == frozenset() and settings.parse_peers(None) == frozenset()
    cert = {"subject": ((("commonName", "node7"),),), "subjectAltName": (("DNS", "LAB-DPU"), ("IP Address", "10.0.0.1"))}
    assert policy_access.peer_allowed(cert, peers) == "LAB-DPU"
    assert policy_access.peer_allowed(cert, frozenset(("node7",))) == "node7"
    assert policy_access.peer_allowed(cert, frozenset(("10.0.0.1",))) is None        # addresses are not names
    assert policy_access.peer_allowed(cert, frozenset(("*.example",))) is None
    assert policy_access.peer_allowed({}, peers) is None
    assert policy_access.certificate_names(cert) == ["LAB-DPU", "node7"]
