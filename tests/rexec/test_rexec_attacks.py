# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loopback attack suite (issue 13): a client that holds a valid certificate, or none, tries what an intruder would.

One test per finding of the security review (each failed on the programs as
they were before the fix: run with REXEC_TEST_FILES=<old roles/rexec/files>
to see it), and one per attack that already held, so that none regresses.
Allowlists carry a bare line next to the rule lines where a test also has to
run against the old programs, which knew only bare paths.
"""

import ctypes
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings

import pytest

from dpu_offload_rexec import wire as proto
from dpu_offload_rexec.dial import Peer
from dpu_offload_rexec.settings import parse_address
from rexec_testlib import (UnixListener, any_args, compile_c, connect_raw, pid_gone, raw_events, raw_exec, read_line, rss_kb,
                           run_client, start_client, wait_until)

TRUE = shutil.which("true")
SH = shutil.which("sh")
KILL = shutil.which("kill")
PYTHON3 = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
KILL_TARGETS = "comm=containerd-shim*,comm=runc,under=containerd-shim*,under=runc"
KILL_RULES = [KILL, KILL + " {signal} {pid:%s}..." % KILL_TARGETS, KILL + " -s {signame} {pid:%s}..." % KILL_TARGETS,
              KILL + " {pid:%s}..." % KILL_TARGETS]


@pytest.fixture
def marker(tmp_path):
    """A file that only the attacker's code would create."""
    return tmp_path / "pwned"


def script(path, text, mode=0o755):
    path.write_text(text)
    path.chmod(mode)
    return str(path)


# --------------------------------------------------------------------------
# Finding 1 (critical): the client's environment became the command's


def _so(tmp_path, marker, body):
    source = ('#include <fcntl.h>\n#include <unistd.h>\n'
              'static void mark(void) { int fd = open("%s", O_WRONLY | O_CREAT, 0600); if (fd >= 0) close(fd); }\n'
              % marker) + body
    path = compile_c(tmp_path, "evil.so", source, shared=True)
    if path is None:
        pytest.skip("no C compiler")
    return path


def test_ld_preload_does_not_reach_the_command(make_server, tmp_path, marker):
    evil = _so(tmp_path, marker, "__attribute__((constructor)) static void init(void) { mark(); }\n")
    server = make_server("tls", entries=[TRUE])
    status, _out, _err, _msg = raw_exec(server, [TRUE], ["LD_PRELOAD=" + evil, "PATH=/usr/bin:/bin"])
    assert status == 0
    assert not marker.exists(), "the attacker's code ran"


def test_ld_audit_does_not_reach_the_command(make_server, tmp_path, marker):
    evil = _so(tmp_path, marker, "unsigned int la_version(unsigned int v) { mark(); return v; }\n")
    server = make_server("tls", entries=[TRUE])
    status, _out, _err, _msg = raw_exec(server, [TRUE], ["LD_AUDIT=" + evil, "LD_LIBRARY_PATH=" + str(tmp_path)])
    assert status == 0
    assert not marker.exists(), "the attacker's code ran"


@pytest.fixture
def bash_wrapper(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    return script(tmp_path / "wrapper", "#!%s\nid -u >/dev/null\necho done\n" % bash)


def test_bash_env_does_not_reach_an_allowed_bash_wrapper(make_server, tmp_path, marker, bash_wrapper):
    evil = script(tmp_path / "evil.sh", "touch %s\n" % marker)
    server = make_server("tls", entries=[bash_wrapper])
    status, out, _err, _msg = raw_exec(server, [bash_wrapper], ["BASH_ENV=" + evil, "ENV=" + evil])
    assert (status, out) == (0, b"done\n")
    assert not marker.exists(), "the attacker's code ran"


def test_exported_bash_function_does_not_reach_an_allowed_bash_wrapper(make_server, marker, bash_wrapper):
    server = make_server("tls", entries=[bash_wrapper])
    status, out, _err, _msg = raw_exec(server, [bash_wrapper], ["BASH_FUNC_id%%=() { touch " + str(marker) + "; }"])
    assert (status, out) == (0, b"done\n")
    assert not marker.exists(), "the attacker's code ran"


def test_client_path_neither_finds_commands_nor_reaches_them(make_server, tmp_path, marker, bash_wrapper):
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    script(fakebin / "id", "#!/bin/sh\ntouch %s\n" % marker)
    server = make_server("tls", entries=[bash_wrapper])
    status, out, _err, _msg = raw_exec(server, [bash_wrapper], ["PATH=%s:/usr/bin:/bin" % fakebin])
    assert (status, out) == (0, b"done\n")
    # and a bare name is looked up in the server's PATH, not in the one the client sends
    status, _out, _err, _msg = raw_exec(server, ["wrapper"], ["PATH=%s" % tmp_path])
    assert status == 127
    assert not marker.exists(), "the attacker's code ran"


def test_pythonpath_does_not_reach_an_allowed_python_script(make_server, tmp_path, marker):
    tool = script(tmp_path / "tool.py", "#!%s\nprint('done')\n" % PYTHON3)
    lib = tmp_path / "pylib"
    lib.mkdir()
    (lib / "sitecustomize.py").write_text("open(%r, 'w').close()\n" % str(marker))
    server = make_server("tls", entries=[tool])
    status, out, _err, _msg = raw_exec(server, [tool], ["PYTHONPATH=%s" % lib, "PYTHONSTARTUP=%s" % (lib / "sitecustomize.py")])
    assert (status, out) == (0, b"done\n")
    assert not marker.exists(), "the attacker's code ran"


def test_pythonwarnings_and_browser_do_not_reach_an_allowed_python_script(make_server, tmp_path, marker):
    tool = script(tmp_path / "tool.py", "#!%s\nprint('done')\n" % PYTHON3)
    browser = script(tmp_path / "browser", "#!/bin/sh\ntouch %s\n" % marker)
    server = make_server("tls", entries=[tool])
    status, out, _err, _msg = raw_exec(server, [tool], ["PYTHONWARNINGS=all:0:antigravity.x:0:0", "BROWSER=" + browser])
    assert (status, out) == (0, b"done\n")
    assert not marker.exists(), "the attacker's code ran"


def test_environment_is_the_servers_own_plus_what_the_rule_names(make_server):
    env = shutil.which("env")
    server = make_server("tls", entries=[env, "    env TTRPC_ADDRESS={path:/run/containerd/*} GOMAXPROCS={uint} LD_PRELOAD={any}"])
    assert "LD_PRELOAD" in server.log() and "dropped" in server.log()      # the rule naming a loader variable is refused
    server = make_server("tls", entries=[env, "    env TTRPC_ADDRESS={path:/run/containerd/*} GOMAXPROCS={uint}"])
    sent = ["TTRPC_ADDRESS=/run/containerd/containerd.sock.ttrpc", "GOMAXPROCS=2", "HOME=/tmp", "LD_PRELOAD=/x.so",
            "PATH=/tmp", "LC_ALL=de_DE", "FOO=bar"]
    status, out, _err, _msg = raw_exec(server, [env], sent)
    assert status == 0
    assert sorted(out.decode().splitlines()) == sorted([
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C",
        "TTRPC_ADDRESS=/run/containerd/containerd.sock.ttrpc", "GOMAXPROCS=2"])
    status, _out, _err, message = raw_exec(server, [env], ["GOMAXPROCS=2; touch /tmp/x"])
    assert status == 126 and "GOMAXPROCS" in message


# --------------------------------------------------------------------------
# Finding 2 (high): any certificate of the deployment CA worked on every server


def test_tcp_server_without_tls_peers_refuses_to_start(make_server):
    server = make_server("tls", start=False, REXEC_TLS_PEERS=None)
    server.start(expect_ready=False)
    assert server.proc.wait(10) == 1
    assert "REXEC_TLS_PEERS" in server.log() and "comma-separated" in server.log()


def test_another_pairs_certificate_is_refused(server, pki, marker):
    env = server.client_env(REXEC_TLS_CERT=pki["other_pair_cert"], REXEC_TLS_KEY=pki["other_pair_key"])
    result = run_client(server, ["sh", "-c", "touch %s" % marker], env=env)
    assert result.returncode == 255 and b"REXEC_TLS_PEERS" in result.stderr
    assert server.wait_log('audit peer=cn:"other-dpu"')
    assert "status=refused:peer(255)" in server.log()
    assert run_client(server, ["echo", "ok"]).stdout == b"ok\n"
    assert not marker.exists(), "the attacker's code ran"


def test_peer_is_matched_by_dns_name_or_common_name(make_server, pki):
    server = make_server("tls", REXEC_TLS_PEERS="san-peer, someone-else")
    env = server.client_env(REXEC_TLS_CERT=pki["san_peer_cert"], REXEC_TLS_KEY=pki["san_peer_key"])
    assert run_client(server, ["echo", "ok"], env=env).stdout == b"ok\n"       # DNS subjectAltName
    assert run_client(server, ["echo", "ok"]).returncode == 255                  # "client" is not listed here
    server = make_server("tls", REXEC_TLS_PEERS="Client")                        # commonName, case-insensitive
    assert run_client(server, ["echo", "ok"]).stdout == b"ok\n"


# --------------------------------------------------------------------------
# Finding 3 (high): allowlisted commands took any arguments


@pytest.fixture
def bystander():
    """A root process that has nothing to do with the offload."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_kill_refuses_a_process_outside_the_offload(make_server, bystander):
    server = make_server("tls", entries=KILL_RULES)
    result = run_client(server, ["kill", "-9", str(bystander.pid)])
    assert result.returncode == 126 and b"arguments" in result.stderr
    time.sleep(0.2)
    assert bystander.poll() is None
    assert server.wait_log('argv=["kill", "-9", "%d"]' % bystander.pid)
    assert "status=refused:arguments(126)" in server.log()


@pytest.mark.parametrize("args", [["-0", "1"], ["-0", "0"], ["-0", "-1"], ["-s", "0", "--", "-1"], ["-0", "--", "-%d"],
                                  ["-0", "-%d"], ["-0", "01"], ["-0", "+%d"], ["-l"]])
def test_kill_refuses_init_zero_negative_pids_and_groups(make_server, args):
    # Signal 0 only: on the old programs these ran, and must stay harmless.
    server = make_server("tls", entries=KILL_RULES)
    args = [arg % os.getpgrp() if "%d" in arg else arg for arg in args]
    result = run_client(server, ["kill"] + args)
    assert result.returncode == 126, (args, result.stderr)


def test_kill_reaches_the_offloads_processes(make_server, tmp_path):
    # A stand-in shim: a script's command name is its file name, cut to 15 characters ("containerd-shim").
    shim = script(tmp_path / "containerd-shim-runc-v2", "#!/bin/sh\nsleep 60 &\necho $!\nwait\nwhile :; do sleep 1; done\n")
    proc = subprocess.Popen([shim], stdout=subprocess.PIPE)
    try:
        child = int(read_line(proc.stdout))
        assert wait_until(lambda: open("/proc/%d/comm" % child).read().strip() == "sleep", 5)
        server = make_server("tls", entries=KILL_RULES)
        assert run_client(server, ["kill", "-TERM", str(child)]).returncode == 0       # under a shim
        assert wait_until(lambda: pid_gone(child), 5)
        assert run_client(server, ["kill", "-s", "KILL", str(proc.pid)]).returncode == 0    # the shim itself
        assert proc.wait(5) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("args", [["-C", "CONF", "overlay"], ["-d", "DIR", "overlay"], ["--config=CONF", "overlay"],
                                  ["--dry-run", "overlay"], ["overlay", "param=1"], ["-v"], ["../overlay"], []])
def test_modprobe_takes_only_a_plain_module_name(make_server, tmp_path, marker, args):
    # A stand-in modprobe: acting on an option would run an `install` line of the caller's file.
    conf = tmp_path / "evil.conf"
    conf.write_text("install overlay touch %s\n" % marker)
    modprobe = script(tmp_path / "modprobe", '#!/bin/sh\nfor a; do case $a in -C|-d) touch %s;; esac; done\n'
                      'case "$*" in *=*|*CONF*|*DIR*|-*) touch %s;; esac\necho "loaded $*"\n' % (marker, marker))
    server = make_server("tls", entries=[modprobe, modprobe + " {module}"])
    args = [arg.replace("CONF", str(conf)).replace("DIR", str(tmp_path)) for arg in args]
    result = run_client(server, [modprobe] + args)
    if args:
        assert result.returncode == 126
    assert run_client(server, [modprobe, "overlay"]).stdout == b"loaded overlay\n"
    assert not marker.exists(), "the attacker's code ran"


def test_a_multi_call_binary_runs_as_the_program_its_rule_names(make_server, tmp_path, marker):
    multi = compile_c(tmp_path, "multi", (
        '#include <string.h>\n#include <unistd.h>\n'
        'int main(int argc, char **argv) {\n'
        '  const char *name = strrchr(argv[0], \'/\'); name = name ? name + 1 : argv[0];\n'
        '  if (strcmp(name, "shell") == 0) { execv("/bin/sh", argv); return 126; }\n'
        '  return 0; }\n'))
    if multi is None:
        pytest.skip("no C compiler")
    os.symlink(multi, str(tmp_path / "harmless"))
    os.symlink(multi, str(tmp_path / "shell"))
    harmless = str(tmp_path / "harmless")
    server = make_server("tls", entries=any_args(harmless))
    result = run_client(server, [str(tmp_path / "shell"), "-c", "touch %s" % marker])
    assert result.returncode == 0
    assert not marker.exists(), "the attacker's code ran"


# --------------------------------------------------------------------------
# Finding 4 (medium): socket CONNECT raced with a symlink swap


def _renameat2():
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        func = libc.renameat2
    except AttributeError:
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return func


def _connect_once(peer, path):
    """One CONNECT session; True when the server said READY."""
    try:
        conn, parser, events = peer.open(proto.T_CONNECT, path)
    except proto.Failure:
        return False
    try:
        conn.sock.setblocking(True)
        conn.sock.settimeout(5)
        while True:
            for ftype, _payload in events:
                if ftype == proto.T_READY:
                    return True
                if ftype == proto.T_ERROR:
                    return False
            try:
                chunks = conn.recv()
            except (proto.ConnectionLost, OSError, ssl.SSLError):
                return False
            events = [event for chunk in chunks for event in parser.feed(chunk)]
    finally:
        conn.close()


def test_connect_does_not_follow_a_directory_swapped_for_a_symlink(make_server, tmp_path):
    renameat2 = _renameat2()
    if renameat2 is None:
        pytest.skip("no renameat2 in libc")
    base = tmp_path / "r"
    (base / "d").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    os.symlink(str(tmp_path / "out"), str(base / "l"))
    inside = UnixListener(str(base / "d" / "s"))
    outside = UnixListener(str(tmp_path / "out" / "s"))
    server = make_server("unix", REXEC_SOCKET_ALLOW=str(base / "*"))
    peer = Peer(server.client_env())
    stop = threading.Event()
    swaps = []

    def swap():
        a, b = os.fsencode(str(base / "d")), os.fsencode(str(base / "l"))
        while not stop.is_set():
            if renameat2(-100, a, -100, b, 2) != 0:          # AT_FDCWD, RENAME_EXCHANGE
                swaps.append(ctypes.get_errno())
                return
            swaps.append(0)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    try:
        ready = sum(_connect_once(peer, str(base / "d" / "s")) for _attempt in range(400))
    finally:
        stop.set()
        thread.join(5)
        inside.close()
        outside.close()
    if swaps and swaps[-1] != 0:
        pytest.skip("RENAME_EXCHANGE not supported here (errno %d)" % swaps[-1])
    assert outside.accepted == 0, "%d connections reached a socket outside the allowlist" % outside.accepted
    assert inside.accepted == ready


def test_connect_through_a_symlink_is_refused(make_server, tmp_path):
    (tmp_path / "allowed").mkdir()
    (tmp_path / "out").mkdir()
    outside = UnixListener(str(tmp_path / "out" / "s"))
    os.symlink(str(tmp_path / "out" / "s"), str(tmp_path / "allowed" / "link"))       # final component
    os.symlink(str(tmp_path / "out"), str(tmp_path / "allowed" / "dir"))              # a directory on the way
    server = make_server("unix", REXEC_SOCKET_ALLOW="%s:%s" % (tmp_path / "allowed", tmp_path / "allowed" / "*"))
    peer = Peer(server.client_env())
    try:
        for path in ("allowed/link", "allowed/dir/s", "allowed/../out/s", "allowed//link"):
            assert not _connect_once(peer, "%s/%s" % (tmp_path, path)), path
    finally:
        outside.close()
    assert outside.accepted == 0


def test_fifo_open_does_not_follow_a_swapped_symlink(make_server, tmp_path):
    """FIFO_READ of an allowed fifo raced with RENAME_EXCHANGE against a symlink to a fifo outside: nothing of it relayed."""
    renameat2 = _renameat2()
    if renameat2 is None:
        pytest.skip("no renameat2 in libc")
    (tmp_path / "f").mkdir()
    (tmp_path / "out").mkdir()
    os.mkfifo(str(tmp_path / "f" / "log"))
    os.mkfifo(str(tmp_path / "out" / "secret"))
    os.symlink(str(tmp_path / "out" / "secret"), str(tmp_path / "f" / "swap"))
    server = make_server("unix", REXEC_FIFO_ALLOW=str(tmp_path / "f"))
    stop = threading.Event()
    swaps = []

    def swap():
        a, b = os.fsencode(str(tmp_path / "f" / "log")), os.fsencode(str(tmp_path / "f" / "swap"))
        while not stop.is_set():
            if renameat2(-100, a, -100, b, 2) != 0:         # AT_FDCWD, RENAME_EXCHANGE
                swaps.append(ctypes.get_errno())
                return
            swaps.append(0)

    def secret_writer():
        # Writes into the outside fifo whenever someone has it open for reading.
        while not stop.is_set():
            try:
                fd = os.open(str(tmp_path / "out" / "secret"), os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.0005)
                continue
            try:
                os.write(fd, b"SECRET")
            except OSError:
                pass
            os.close(fd)

    threads = [threading.Thread(target=swap, daemon=True), threading.Thread(target=secret_writer, daemon=True)]
    for thread in threads:
        thread.start()
    received = []
    try:
        for _attempt in range(60):
            sock = connect_raw(server)
            sock.sendall(proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD)
                         + proto.frame(proto.T_FIFO_READ, os.fsencode(str(tmp_path / "f" / "log"))))
            received.extend(payload for ftype, payload in raw_events(sock, 0.05) if ftype == proto.T_STDOUT)
            sock.close()
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    if swaps and swaps[-1] != 0:
        pytest.skip("RENAME_EXCHANGE not supported here")
    assert b"SECRET" not in b"".join(received)


# --------------------------------------------------------------------------
# Finding 5 (medium): unauthenticated idle connections took every session slot


def test_idle_connections_do_not_lock_out_a_valid_client(make_server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    server = make_server("tls", REXEC_HANDSHAKE_TIMEOUT="30")
    addr = parse_address(server.addr)
    idle = []
    try:
        for _index in range(1000):
            idle.append(socket.create_connection((addr.host, addr.port), timeout=5))
        time.sleep(1.5)
        started = time.monotonic()
        result = run_client(server, ["echo", "through"], timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"through\n"
        assert time.monotonic() - started < 10
        assert server.proc.poll() is None
    finally:
        for sock in idle:
            sock.close()
    assert server.wait_log("handshake slots full")


# --------------------------------------------------------------------------
# Finding 6 (low): a request cost far more memory than it carried


def test_requests_held_just_short_of_the_limit_do_not_grow_memory(make_server):
    server = make_server("tls", REXEC_HANDSHAKE_TIMEOUT="60", REXEC_MAX_HANDSHAKES="200",
                         REXEC_MAX_HANDSHAKES_PER_ADDRESS="200")
    assert run_client(server, ["true"]).returncode == 0
    before = rss_kb(server.proc.pid)
    limit = proto.MAX_REQUEST
    body = b"\0" * (limit - 1)
    socks = []
    errors = []

    def hold():
        try:
            sock = connect_raw(server)
            socks.append(sock)
            sock.sendall(proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD) + proto.header(proto.T_REQUEST, limit) + body)
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hold) for _index in range(64)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        time.sleep(1.0)
        grown = rss_kb(server.proc.pid) - before
        print("server RSS grew by %d KiB" % grown)
        assert grown < 40 * 1024, "server RSS grew by %d KiB for 64 requests of %d bytes" % (grown, limit)
        assert run_client(server, ["echo", "small"]).stdout == b"small\n"
    finally:
        for sock in socks:
            sock.close()


def test_client_refuses_a_request_over_the_limit(server):
    # In the environment (one argument may not exceed 128 KiB at exec).
    big = {"BIG%d" % index: "x" * (100 * 1024) for index in range(proto.MAX_REQUEST // (100 * 1024) + 1)}
    result = run_client(server, ["echo", "x"], env=server.client_env(**big))
    assert result.returncode == 255 and b"too long" in result.stderr


# --------------------------------------------------------------------------
# Server stop (issue 18): every client of a running command gets 255


def test_server_stop_gives_every_client_255(make_server):
    server = make_server("tls")
    procs = [start_client(server, ["sh", "-c", "echo up; exec sleep 30"]) for _index in range(24)]
    try:
        for proc in procs:
            assert read_line(proc.stdout) == b"up\n"
        server.proc.terminate()
        assert server.proc.wait(10) == 0
        codes = [proc.wait(15) for proc in procs]
        assert codes == [255] * len(procs)
        assert server.log().count("status=server-stopped(killed;signal:KILL(9))") == len(procs)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------
# Attacks that held before the review: keep them holding


@pytest.mark.parametrize("which", ["rogue", "expired", "server_auth_only", "leaf_issued"])
def test_bad_client_certificates_are_refused(server, pki, marker, which):
    env = server.client_env(REXEC_TLS_CERT=pki[which + "_cert"], REXEC_TLS_KEY=pki[which + "_key"])
    result = run_client(server, ["sh", "-c", "touch %s" % marker], env=env)
    assert result.returncode == 255
    assert " audit " not in server.log()
    assert run_client(server, ["echo", "ok"]).stdout == b"ok\n"
    assert not marker.exists(), "the attacker's code ran"


def _touch_request(marker):
    argv = [SH.encode(), b"-c", b"touch " + os.fsencode(str(marker))]
    return proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD) + proto.frame(proto.T_REQUEST, proto.encode_request(argv, [], b"/"))


def test_no_client_certificate_is_refused(server, marker):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(server.client_env()["REXEC_TLS_CA"])
    try:
        sock = connect_raw(server, context=context)
        sock.sendall(_touch_request(marker))
        events = raw_events(sock, 5)
        sock.close()
    except (ssl.SSLError, OSError):
        events = []
    assert not any(ftype == proto.T_PID for ftype, _payload in events)
    assert " audit " not in server.log()
    assert not marker.exists(), "the attacker's code ran"


def test_plaintext_on_the_tls_port_is_refused(server, marker):
    addr = parse_address(server.addr)
    with socket.create_connection((addr.host, addr.port), timeout=5) as sock:
        sock.sendall(_touch_request(marker))
        sock.settimeout(5)
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
    assert " audit " not in server.log()
    assert run_client(server, ["echo", "ok"]).stdout == b"ok\n"
    assert not marker.exists(), "the attacker's code ran"


def test_tls_1_1_is_refused(server):
    env = server.client_env()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(env["REXEC_TLS_CA"])
    context.load_cert_chain(env["REXEC_TLS_CERT"], env["REXEC_TLS_KEY"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1_1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with pytest.raises((ssl.SSLError, OSError)):
        connect_raw(server, context=context).close()
    assert run_client(server, ["echo", "ok"]).stdout == b"ok\n"


@pytest.mark.parametrize("argv0", ["/usr/bin/../bin/sh", "//bin/sh", "/bin//sh", "./sh", "sh", "LINK"])
def test_path_tricks_do_not_reach_an_unlisted_command(make_server, tmp_path, marker, argv0):
    os.symlink(SH, str(tmp_path / "true"))        # named like an allowed command, pointing at a shell
    server = make_server("tls", entries=any_args(TRUE))
    if argv0 == "LINK":
        argv0 = str(tmp_path / "true")
    cwd = os.path.dirname(os.path.realpath(SH)) if argv0 == "./sh" else str(tmp_path)
    result = run_client(server, [argv0, "-c", "touch %s" % marker], cwd=cwd)
    assert result.returncode in (126, 127), result.stderr
    assert not marker.exists(), "the attacker's code ran"


@pytest.mark.parametrize("where", ["argv0", "argv", "env", "cwd"])
def test_nul_bytes_are_refused(make_server, marker, where):
    server = make_server("tls", entries=any_args(TRUE) + any_args(SH))
    argv = [SH.encode(), b"-c", b"true"]
    env = [b"A=1"]
    cwd = b"/"
    if where == "argv0":
        argv[0] = TRUE.encode() + b"\0" + SH.encode()
    elif where == "argv":
        argv[2] = b"true\0; touch " + os.fsencode(str(marker))
    elif where == "env":
        env = [b"A=1\0LD_PRELOAD=/x"]
    else:
        cwd = b"/\0/tmp"
    sock = connect_raw(server)
    sock.sendall(proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD) + proto.frame(proto.T_REQUEST, proto.encode_request(argv, env, cwd)))
    events = raw_events(sock, 5)
    sock.close()
    assert events[-1][0] == proto.T_ERROR and events[-1][1][:1] == b"\xff"
    assert not any(ftype == proto.T_PID for ftype, _payload in events)
    # and a stream path with a NUL byte
    server2 = make_server("unix", REXEC_SOCKET_ALLOW="/tmp")
    sock = connect_raw(server2)
    sock.sendall(proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD) + proto.frame(proto.T_CONNECT, b"/tmp/x\0/etc"))
    events = raw_events(sock, 5)
    sock.close()
    assert events[-1][0] == proto.T_ERROR and events[-1][1][:1] == b"\x7e"
    assert not marker.exists(), "the attacker's code ran"
