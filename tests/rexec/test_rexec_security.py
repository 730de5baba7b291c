# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS refusals, server start-up refusals, hostile or broken connections, session limit."""

import os
import socket
import ssl
import threading
import time

import pytest

from dpu_offload_rexec import wire as proto
from dpu_offload_rexec.settings import parse_address
from rexec_testlib import read_line, run_client, start_client, wait_until, write_allowlist


def tcp_addr(server):
    addr = parse_address(server.addr)
    return addr.host, addr.port


def test_client_cert_from_another_ca_is_refused(server, pki):
    env = server.client_env(REXEC_TLS_CERT=pki["rogue_cert"], REXEC_TLS_KEY=pki["rogue_key"])
    result = run_client(server, ["echo", "nope"], env=env)
    assert result.returncode == 255 and result.stdout == b""
    assert result.stderr.startswith(b"rexec: ") and result.stderr.count(b"\n") == 1
    assert server.wait_log("TLS handshake with")
    assert run_client(server, ["echo", "ok"]).stdout == b"ok\n"      # the server keeps serving


def test_client_without_certificate_is_refused(server):
    """A TLS client that presents no certificate at all."""
    host, port = tcp_addr(server)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(server.client_env()["REXEC_TLS_CA"])
    with socket.create_connection((host, port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            tls.sendall(proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD)
                        + proto.frame(proto.T_REQUEST, proto.encode_request([b"true"], [], b"/")))
            with pytest.raises((ssl.SSLError, ConnectionError)):
                while tls.recv(4096):
                    pass
                raise ConnectionError("closed")
    assert server.wait_log("certificate")
    assert " audit " not in server.log()
    # and the real client with its certificate removed refuses to talk plain to a TLS port
    env = server.client_env()
    for key in ("REXEC_TLS_CA", "REXEC_TLS_CERT", "REXEC_TLS_KEY"):
        del env[key]
    env["REXEC_INSECURE"] = "1"
    result = run_client(server, ["true"], env=env)
    assert result.returncode == 255


def test_client_rejects_server_with_wrong_name(server):
    result = run_client(server, ["true"], env=server.client_env(REXEC_TLS_SERVER_NAME="not-the-server.example"))
    assert result.returncode == 255
    assert b"TLS handshake" in result.stderr and b"certificate verify failed" in result.stderr


def test_client_rejects_server_from_another_ca(server, pki):
    result = run_client(server, ["true"], env=server.client_env(REXEC_TLS_CA=pki["other_ca"]))
    assert result.returncode == 255 and b"certificate verify failed" in result.stderr


def test_client_with_incomplete_tls_settings(server):
    env = server.client_env()
    del env["REXEC_TLS_KEY"]
    result = run_client(server, ["true"], env=env)
    assert result.returncode == 255 and b"REXEC_TLS_KEY" in result.stderr


def test_server_refuses_tcp_without_tls(make_server):
    server = make_server("insecure", start=False, REXEC_INSECURE=None)
    server.start(expect_ready=False)
    assert server.proc.wait(10) == 1
    log = server.log()
    assert "without TLS" in log and "REXEC_TLS_CA" in log and "REXEC_INSECURE=1" in log


def test_server_refuses_missing_allowlist(make_server, tmp_path):
    server = make_server("tls", start=False, REXEC_WHITELIST=str(tmp_path / "absent"))
    server.start(expect_ready=False)
    assert server.proc.wait(10) == 1
    assert "does not exist" in server.log()


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_server_refuses_writable_allowlist(make_server, tmp_path, mode):
    path = write_allowlist(str(tmp_path / "loose"), ["/bin/true"], mode=mode)
    server = make_server("tls", start=False, REXEC_WHITELIST=path)
    server.start(expect_ready=False)
    assert server.proc.wait(10) == 1
    assert "writable by group or others" in server.log()


def test_allowlist_made_writable_later_refuses_commands(server):
    os.chmod(server.whitelist, 0o666)
    try:
        result = run_client(server, ["true"])
        assert result.returncode == 126 and b"allowlist" in result.stderr
    finally:
        os.chmod(server.whitelist, 0o600)
    assert run_client(server, ["true"]).returncode == 0


def test_garbage_and_silent_clients_do_not_hurt(make_server):
    server = make_server("tls", REXEC_HANDSHAKE_TIMEOUT="0.5")
    host, port = tcp_addr(server)
    silent = socket.create_connection((host, port), timeout=5)
    try:
        with socket.create_connection((host, port), timeout=5) as garbage:
            garbage.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(512))
            garbage.settimeout(5)
            try:
                while garbage.recv(4096):
                    pass
            except OSError:
                pass
        assert run_client(server, ["echo", "fine"]).stdout == b"fine\n"
        silent.settimeout(5)
        started = time.monotonic()
        try:
            assert silent.recv(4096) == b""                   # dropped after the handshake timeout
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 3
        assert server.wait_log("no request within 0.5s")
    finally:
        silent.close()
    assert run_client(server, ["echo", "still-fine"]).stdout == b"still-fine\n"


@pytest.mark.parametrize("payload,answer", [
    (b"\x00" * 64, "error"),                                                               # not a HELLO
    (proto.frame(proto.T_HELLO, b"REXEC\x63"), "error"),                                   # wrong version
    (proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD) + proto.header(proto.T_REQUEST, 100) + b"trunc", "hello"),  # truncated
    (proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD) + proto.frame(proto.T_REQUEST, b"\xff" * 20), "error"),     # bad request
    (proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD) + proto.header(proto.T_STDIN, 1 << 30), "error"),          # oversized
])
def test_protocol_garbage_on_plain_socket(make_server, payload, answer):
    server = make_server("unix", REXEC_HANDSHAKE_TIMEOUT="1")
    path = server.addr[len("unix://"):]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while True:
                data = sock.recv(4096)
                if not data:
                    break
                received += data
        except OSError:
            pass
    events = proto.FrameParser(proto.FROM_SERVER).feed(received)
    if answer == "error":
        # a one-frame ERROR with exit status 255 and a reason (maybe after the server's HELLO)
        assert events[-1][0] == proto.T_ERROR and bytes(events[-1][1][:1]) == b"\xff"
        assert b"protocol" in bytes(events[-1][1])
    else:
        assert events == [(proto.T_HELLO, proto.HELLO_PAYLOAD)]     # peer vanished mid-frame: just closed
    assert run_client(server, ["echo", "ok"]).stdout == b"ok\n"
    assert " audit " in server.log()


def test_client_exits_255_on_server_garbage(server):
    """A 'server' that answers with nonsense (e.g. the wrong service on the port)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve():
        listener.settimeout(10)
        try:
            conn, _peer = listener.accept()
        except OSError:
            return
        with conn:
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n" + b"\x99" * 100)
            conn.settimeout(2)
            try:
                conn.recv(65536)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        env = server.client_env(CMD_NET_ADDR="tcp://127.0.0.1:%d" % port, REXEC_INSECURE="1")
        for key in ("REXEC_TLS_CA", "REXEC_TLS_CERT", "REXEC_TLS_KEY"):
            del env[key]
        result = run_client(server, ["true"], env=env)
        assert result.returncode == 255
        assert result.stderr.startswith(b"rexec: protocol error") and result.stderr.count(b"\n") == 1
    finally:
        thread.join(5)
        listener.close()


def test_session_limit(make_server):
    server = make_server("tls", REXEC_MAX_SESSIONS="1")
    first = start_client(server, ["sh", "-c", "echo started; sleep 20"])
    try:
        assert read_line(first.stdout) == b"started\n"
        result = run_client(server, ["echo", "second"])
        assert result.returncode == 255
        assert b"busy" in result.stderr and b"REXEC_MAX_SESSIONS" in result.stderr
        first.kill()
        first.wait()
        assert wait_until(lambda: run_client(server, ["echo", "third"]).returncode == 0, 5)
    finally:
        first.kill()
        first.wait()


def test_handshake_timeout_applies_to_client(make_server):
    """A server that accepts but never answers: the client gives up after REXEC_HANDSHAKE_TIMEOUT."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        server = make_server("tls", start=False)
        env = server.client_env(CMD_NET_ADDR="tcp://127.0.0.1:%d" % listener.getsockname()[1], REXEC_HANDSHAKE_TIMEOUT="0.5")
        started = time.monotonic()
        result = run_client(server, ["true"], env=env)
        assert result.returncode == 255 and b"timed out" in result.stderr
        assert time.monotonic() - started < 5
    finally:
        listener.close()
