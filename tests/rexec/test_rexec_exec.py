# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rexec end to end on loopback: exit codes, streams, environment, allowlist, pid file, audit."""

import hashlib
import json
import os
import re
import shutil
import signal
import time

import pytest

from rexec_testlib import HAVE_IPV6, any_args, read_line, rss_kb, run_client, start_client, wait_until, write_allowlist

SH = shutil.which("sh")


@pytest.mark.parametrize("args,code", [
    (["true"], 0),
    (["false"], 1),
    (["sh", "-c", "exit 42"], 42),
    (["sh", "-c", "exit 255"], 255),
    (["sh", "-c", "kill -TERM $$"], 128 + 15),
    (["sh", "-c", "kill -KILL $$"], 128 + 9),
])
def test_exit_status(server, args, code):
    result = run_client(server, args)
    assert result.returncode == code, result.stderr
    if code < 128:
        assert result.stderr == b""


def test_allowlist_refusal_is_126(server):
    result = run_client(server, ["ls", "/"])
    assert result.returncode == 126
    assert result.stdout == b""
    assert result.stderr.startswith(b"rexec: ") and b"allowlist" in result.stderr
    assert result.stderr.count(b"\n") == 1


def test_missing_command_is_127(server):
    result = run_client(server, ["no-such-command-xyz"])
    assert result.returncode == 127
    assert re.match(rb"^rexec: .*not found.*\n$", result.stderr)
    assert run_client(server, ["/nonexistent/dir/tool"]).returncode == 127


def test_connection_refused_is_255(server):
    env = server.client_env(CMD_NET_ADDR="tcp://127.0.0.1:1")
    result = run_client(server, ["true"], env=env)
    assert result.returncode == 255
    assert re.match(rb"^rexec: cannot connect to tcp://127.0.0.1:1: .*\n$", result.stderr)


def test_usage_and_bad_address_are_255(server):
    assert run_client(server, []).returncode == 255
    result = run_client(server, ["true"], env=server.client_env(CMD_NET_ADDR="nonsense"))
    assert result.returncode == 255 and result.stderr.startswith(b"rexec: ")


def test_stdout_and_stderr_are_separate(server):
    result = run_client(server, ["sh", "-c", "echo out1; echo err1 >&2; echo out2; printf 'err2' >&2"])
    assert result.returncode == 0
    assert result.stdout == b"out1\nout2\n"
    assert result.stderr == b"err1\nerr2"


def test_binary_stdin_roundtrip(server):
    data = os.urandom(6 * 1024 * 1024 + 17)
    result = run_client(server, ["cat"], input=data, stdin=None)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_large_stdout_and_stderr_together(server):
    result = run_client(server, ["sh", "-c", "head -c 3000000 /dev/zero; head -c 2000000 /dev/zero >&2"])
    assert result.returncode == 0
    assert len(result.stdout) == 3000000 and len(result.stderr) == 2000000


def test_stdin_not_read_by_command(server, tmp_path):
    """A command that ignores stdin: the client stops at the window and still exits promptly."""
    big = tmp_path / "big"
    big.write_bytes(b"\0" * (20 * 1024 * 1024))
    started = time.monotonic()
    with open(str(big), "rb") as stdin:
        result = run_client(server, ["sh", "-c", "sleep 0.3; head -c 5"], stdin=stdin)
    assert result.returncode == 0 and result.stdout == b"\0" * 5
    assert time.monotonic() - started < 10


def test_environment_named_by_the_rule_and_cwd_are_passed(make_server, tmp_path):
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    server = make_server("tls", entries=[SH + " {any}...", "    env REXEC_TEST_VAR={any} OTHER={re:x=.*}"])
    env = server.client_env(REXEC_TEST_VAR="hello world", OTHER="x=y", NOT_NAMED="dropped")
    script = 'printf "%s|%s|%s|%s" "$REXEC_TEST_VAR" "$OTHER" "${NOT_NAMED-unset}" "$(pwd)"'
    result = run_client(server, ["sh", "-c", script], env=env, cwd=str(workdir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "hello world|x=y|unset|%s" % workdir
    # A named variable whose value the rule refuses: the request is refused, not run without it.
    result = run_client(server, ["sh", "-c", "true"], env=server.client_env(OTHER="nope"), cwd=str(workdir))
    assert result.returncode == 126 and b"OTHER" in result.stderr
    assert server.wait_log("status=refused:environment(126)")


def test_missing_cwd_falls_back_to_root(server):
    """Protocol-level: the server runs in / and sends a NOTICE when the cwd does not exist there."""
    import socket
    import ssl
    from dpu_offload_rexec import wire as proto
    from dpu_offload_rexec.connection import make_context
    from dpu_offload_rexec.settings import parse_address
    addr = parse_address(server.addr)
    env = server.client_env()
    context = make_context(False, env["REXEC_TLS_CA"], env["REXEC_TLS_CERT"], env["REXEC_TLS_KEY"])
    sock = socket.create_connection((addr.host, addr.port), timeout=5)
    tls = context.wrap_socket(sock, server_hostname=addr.host)
    tls.sendall(proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD)
                + proto.frame(proto.T_REQUEST, proto.encode_request([b"pwd"], [b"PATH=/usr/bin:/bin"], b"/nonexistent/dir"))
                + proto.frame(proto.T_EOF, b"\0"))
    parser = proto.FrameParser(proto.FROM_SERVER)
    events = []
    deadline = time.monotonic() + 10
    while not any(ftype == proto.T_EXIT for ftype, _p in events) and time.monotonic() < deadline:
        try:
            data = tls.recv(65536)
        except ssl.SSLError:
            break
        if not data:
            break
        events.extend((ftype, bytes(payload)) for ftype, payload in parser.feed(data))
    tls.close()
    notices = [payload for ftype, payload in events if ftype == proto.T_NOTICE]
    assert notices and b"/nonexistent/dir" in notices[0]
    assert b"".join(payload for ftype, payload in events if ftype == proto.T_STDOUT) == b"/\n"
    assert (proto.T_EXIT, b"\0\0\0\0\0") in events
    # frame order: HELLO, NOTICE, PID, ..., EXIT last
    assert events[0][0] == proto.T_HELLO and events[-1][0] == proto.T_EXIT


def test_allowlist_symlinks_and_path_lookup(make_server, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    real = bindir / "real-echo"
    real.write_text("#!%s\necho \"real-echo $*\"\n" % SH)
    real.chmod(0o755)
    (bindir / "alias-echo").symlink_to(real)           # requested through a symlink
    other = bindir / "other"
    other.write_text("#!%s\necho other\n" % SH)
    other.chmod(0o755)
    listed_link = bindir / "listed-link"
    listed_link.symlink_to(other)                      # listed as a symlink
    commented = bindir / "commented"
    commented.write_text("#!%s\necho commented\n" % SH)
    commented.chmod(0o755)
    entries = any_args(str(real)) + [str(listed_link), "# " + str(commented) + " {any}...", "   # indented comment"]
    server = make_server("tls", entries=entries)
    env = server.client_env(PATH="%s:/usr/bin:/bin" % bindir)
    assert run_client(server, [str(real), "a"], env=env).stdout == b"real-echo a\n"
    assert run_client(server, [str(bindir / "alias-echo"), "c"], env=env).stdout == b"real-echo c\n"   # symlink to a listed file
    assert run_client(server, [str(other)], env=env).stdout == b"other\n"                  # target of a listed symlink
    assert run_client(server, [str(commented)], env=env).returncode == 126
    assert run_client(server, ["true"], env=env).returncode == 126                        # not listed at all
    # Bare names are looked up in the server's own PATH, never in the client's.
    assert run_client(server, ["real-echo", "b"], env=env).returncode == 127


def test_allowlist_is_reread(make_server):
    server = make_server("tls", entries=[shutil.which("true")])
    assert run_client(server, ["echo", "x"]).returncode == 126
    write_allowlist(server.whitelist, [shutil.which("true")] + any_args(shutil.which("echo")))
    assert run_client(server, ["echo", "x"]).stdout == b"x\n"


def test_pid_file_written_and_removed(server, tmp_path):
    piddir = tmp_path / "pids"
    proc = start_client(server, ["sh", "-c", "echo $$; sleep 0.5"], env=server.client_env(REXEC_PID_DIR=str(piddir)))
    try:
        remote_pid = int(read_line(proc.stdout))
        pidfile = piddir / str(proc.pid)
        assert wait_until(pidfile.exists, 5)
        assert int(pidfile.read_text()) == remote_pid
        assert proc.wait(10) == 0
        assert not pidfile.exists()
    finally:
        proc.kill()
        proc.wait()


def test_pid_file_failure_does_not_break_the_command(server, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_client(server, ["echo", "ok"], env=server.client_env(REXEC_PID_DIR=str(blocker / "pids")))
    assert result.returncode == 0 and result.stdout == b"ok\n"
    if os.geteuid() == 0:
        assert b"warning: cannot record the remote pid" in result.stderr
    else:
        assert result.stderr == b""


def test_audit_line(server):
    assert run_client(server, ["sh", "-c", "exit 3"]).returncode == 3
    assert run_client(server, ["ls"]).returncode == 126
    assert server.wait_log("status=refused:allowlist")
    lines = [line for line in server.log().splitlines() if " audit " in line]
    assert len(lines) == 2
    assert re.match(r'^rexec_server: audit peer=cn:"client"\(127\.0\.0\.1:\d+\) argv=\["sh", "-c", "exit 3"\] cwd=".*" pid=\d+ '
                    r'status=exit:3$', lines[0])
    assert 'argv=["ls"]' in lines[1]
    assert json.loads(lines[0].split("argv=", 1)[1].split(" cwd=")[0]) == ["sh", "-c", "exit 3"]


def test_unix_socket(make_server):
    server = make_server("unix")
    path = server.addr[len("unix://"):]
    assert os.stat(path).st_mode & 0o777 == 0o600
    result = run_client(server, ["sh", "-c", "echo via-unix; exit 5"])
    assert (result.returncode, result.stdout) == (5, b"via-unix\n")
    assert server.wait_log("audit peer=uid:%d" % os.getuid())


@pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback")
def test_ipv6_literal(make_server):
    server = make_server("tls6")
    assert server.addr.startswith("tcp://[::1]:")
    result = run_client(server, ["echo", "v6"])
    assert result.returncode == 0 and result.stdout == b"v6\n"
    assert server.wait_log("([::1]:")


def test_host_port_form_and_server_name_override(server):
    port = server.addr.rsplit(":", 1)[1]
    env = server.client_env(CMD_NET_ADDR="localhost:%s" % port)
    assert run_client(server, ["true"], env=env).returncode == 0
    # the name to verify can be given explicitly
    env = server.client_env(REXEC_TLS_SERVER_NAME="localhost")
    assert run_client(server, ["true"], env=env).returncode == 0


def test_client_config_file(server, tmp_path):
    port = server.addr.rsplit(":", 1)[1]
    conf = tmp_path / "client.json"
    conf.write_text(json.dumps({"Protocol": "tcp", "Ipaddr": "127.0.0.1", "Port": port}))
    env = server.client_env(REXEC_CONFIG=str(conf))
    del env["CMD_NET_ADDR"]
    assert run_client(server, ["echo", "conf"], env=env).stdout == b"conf\n"


def test_insecure_mode(make_server):
    server = make_server("insecure")
    assert "INSECURE" in server.log()
    result = run_client(server, ["echo", "plain"])
    assert result.returncode == 0 and result.stdout == b"plain\n"
    # a client with neither TLS settings nor REXEC_INSECURE refuses to talk plain TCP
    env = server.client_env()
    env.pop("REXEC_INSECURE")
    result = run_client(server, ["true"], env=env)
    assert result.returncode == 255 and b"REXEC_TLS_CA" in result.stderr


def test_concurrent_sessions(server):
    procs = [start_client(server, ["sh", "-c", "echo $0", "n%d" % index]) for index in range(24)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        outputs.append((proc.returncode, out, err))
    assert all(code == 0 for code, _o, _e in outputs), outputs
    assert sorted(out for _c, out, _e in outputs) == sorted(b"n%d\n" % index for index in range(24))


def test_slow_reader_does_not_grow_server_memory(server):
    """Backpressure: nobody reads the client's stdout; the server must not buffer the output."""
    total = 96 * 1024 * 1024
    proc = start_client(server, ["head", "-c", str(total), "/dev/zero"])
    try:
        time.sleep(1.0)

        assert rss_kb(server.proc.pid) < 80 * 1024
        got = 0
        while True:
            chunk = proc.stdout.read(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        assert got == total
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        proc.wait()


def test_client_stdout_closed_gives_sigpipe(server):
    proc = start_client(server, ["yes"])
    try:
        assert proc.stdout.read(10) == b"y\ny\ny\ny\ny\n"
        proc.stdout.close()
        assert proc.wait(10) == 128 + 13
    finally:
        proc.kill()
        proc.wait()


def test_background_child_holding_pipes_does_not_hang(server):
    """A leftover child keeps stdout open: the client still ends about a second after the command."""
    started = time.monotonic()
    result = run_client(server, ["sh", "-c", "sleep 5 & echo $!; echo parent-done"])
    try:
        assert result.returncode == 0 and result.stdout.endswith(b"\nparent-done\n")
        assert time.monotonic() - started < 4
    finally:
        os.kill(int(result.stdout.split()[0]), signal.SIGKILL)
