# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loopback attacks of the second review (issue 31), played by a client with a valid certificate.

As in test_rexec_attacks.py, each test failed on the programs before its
fix: run with REXEC_TEST_FILES=<old roles/rexec/files> to see it.
"""

import os
import shutil

import pytest

from rexec_testlib import FILES, raw_exec

KILL = shutil.which("kill")
TARGETS = "comm=containerd-shim*,comm=runc,under=containerd-shim*,under=runc"
KILL_RULES = [KILL + " {signal} {pid:%s}..." % TARGETS, KILL + " -s {signame} {pid:%s}..." % TARGETS]


# --------------------------------------------------------------------------
# Point 2: a number that is not ASCII, and any error while deciding


@pytest.mark.parametrize("args", [["-\u00b2", "4000000"], ["-9\u00b2", "4000000"], ["-s", "\u00b2", "4000000"]])
def test_a_superscript_signal_is_refused_with_an_audit_line(make_server, args):
    # str.isdigit() says yes, int() raises: the session used to end without an answer or an audit line.
    server = make_server("tls", entries=KILL_RULES)
    status, _out, _err, message = raw_exec(server, [KILL] + args)
    assert status == 126 and "arguments not allowed" in message, (status, message, server.log())
    assert server.wait_log("status=refused:arguments(126)"), server.log()
    assert "internal error" not in server.log()


@pytest.fixture
def broken_policy(tmp_path):
    """A copy of the programs whose allowlist code raises while matching arguments (a bug yet to come)."""
    files = tmp_path / "files"
    shutil.copytree(FILES, str(files))
    rules = files / "dpu_offload_rexec" / "policy_commands.py"
    if not rules.exists():
        rules = files / "rexec_policy.py"       # a copy from before the package
    with open(str(rules), "a", encoding="utf-8") as handle:
        handle.write("\n\ndef _injected_fault(self, args, procs):\n    raise RuntimeError('injected fault')\n\n\n"
                     "Rule.args_match = _injected_fault\n")
    return str(files / "rexec_server")


def test_an_error_while_deciding_is_a_refusal_with_an_audit_line(make_server, broken_policy):
    true = shutil.which("true")
    server = make_server("tls", entries=[true], program=broken_policy)
    for _attempt in range(2):           # and the server goes on answering
        status, _out, _err, message = raw_exec(server, [true])
        assert status == 126 and "could not evaluate" in message, (status, message, server.log())
    assert server.log().count('argv=["%s"] cwd="/" status=refused:policy-error(126)' % true) == 2, server.log()
    assert "RuntimeError('injected fault')" in server.log()
    assert os.path.exists(broken_policy)


# --------------------------------------------------------------------------
# Point 3: variables that make glibc or the Go runtime read files, run code or change behaviour

# Forbidden since issue 31 (the older ones are in test_rexec_policy.py).
NEWLY_FORBIDDEN = [
    # glibc: what it drops for secure-execution (setuid) programs, TZ first
    "TZ", "NIS_PATH", "NIS_DEFAULTS", "NIS_GROUP", "GMON_OUT_PREFIX", "DATEMSK", "ARGP_HELP_FMT", "MSGVERB", "SEV_LEVEL",
    "POSIXLY_CORRECT", "PWD", "HESIOD_CONFIG", "HES_DOMAIN", "PCPROFILE_OUTPUT", "RESOLV_MULTI", "RESOLV_REORDER",
    "MEMUSAGE_OUTPUT", "SEGFAULT_OUTPUT_NAME",
    # Go: the runtime, its time zone lookup, the race detector, coverage, the go command
    "GOTRACEBACK", "GORACE", "GOCOVERDIR", "GOROOT", "ZONEINFO", "GOENV", "GOTOOLCHAIN",
    # Go's net/http (and curl): where an HTTP client sends its requests
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
]
PYTHON3 = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")


def test_a_rule_naming_a_newly_forbidden_variable_is_dropped_whole(make_server, tmp_path):
    # One command per variable, each with a rule that names it: before, the client's value reached the command.
    entries, tools = [], {}
    for name in NEWLY_FORBIDDEN:
        tool = tmp_path / ("show-" + name)
        tool.write_text("#!%s\nimport os\nfor key in sorted(os.environ):\n    print(key + '=' + os.environ[key])\n" % PYTHON3)
        tool.chmod(0o755)
        tools[name] = str(tool)
        entries += [str(tool), "    env %s={any}" % name]
    server = make_server("tls", entries=entries)
    for name in NEWLY_FORBIDDEN:
        status, out, _err, message = raw_exec(server, [tools[name]], ["%s=/tmp/attacker-file" % name])
        assert b"attacker-file" not in out, (name, out)
        assert status == 126 and "not allowed" in message, (name, status, message)
        assert "env %s: " % name in server.log(), (name, server.log())     # the warning at start-up
    assert server.log().count("is dropped") == len(NEWLY_FORBIDDEN)
