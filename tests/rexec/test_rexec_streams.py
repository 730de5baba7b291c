# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Protocol 1.1 stream sessions: rexec_forward (unix sockets) and rexec_fiforelay (fifos), on loopback.

Two directories of one temporary tree stand for the two machines: `host/...`
is where the real socket / the shim's end of a fifo lives, `dpu/...` the
other machine.  The tools' --remote-map option (a testing aid) makes them ask
the server for host/... when the local path is dpu/... (and the reverse for
the fifo relay, which runs "on the HOST").
"""

import hashlib
import os
import signal
import struct
import subprocess
import socket
import threading
import time

import pytest

from rexec_testlib import FILES, PYTHON, UnixListener, read_to_eof, run_client, wait_until

from dpu_offload_rexec import daemon, policy_access, resume
from dpu_offload_rexec.settings import parse_allow
from dpu_offload_rexec import wire as proto
from dpu_offload_rexec.dial import Peer

FORWARD = os.path.join(FILES, "rexec_forward")
FIFORELAY = os.path.join(FILES, "rexec_fiforelay")


# --------------------------------------------------------------------------
# helpers


class EchoServer(UnixListener):
    """A unix socket server standing for the shim: echoes every connection, half-closes after the client's EOF."""

    def handle(self, conn):
        conn.settimeout(20)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
            conn.sendall(b"<eof seen>")
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()


def exchange(path, payload, timeout=20.0):
    """Send payload through the socket at path, half-close, return everything received until EOF."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    errors = []

    def sender():
        try:
            view = memoryview(payload)
            while view:
                sent = sock.send(view[:262144])
                view = view[sent:]
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    chunks = []
    try:
        while True:
            try:
                data = sock.recv(1 << 20)
            except ConnectionResetError:
                data = b""
            if not data:
                break
            chunks.append(data)
    finally:
        thread.join(timeout)
        sock.close()
    return b"".join(chunks), errors


def forward_env(server, tree, **extra):
    env = server.client_env(REXEC_SOCKET_ALLOW=os.path.join(tree, "dpu", "s"))
    env.update(extra)
    return env


def start_forward(tools, server, tree, args, name="forward.log", **extra):
    return tools(FORWARD, ["--remote-map", "%s/dpu=%s/host" % (tree, tree), "--interval", "0.1"] + args,
                 forward_env(server, tree, **extra), os.path.join(tree, name), "forwarding to")


# --------------------------------------------------------------------------
# unit: allowlists and mapping


def test_path_allowed(tmp_path):
    base = str(tmp_path)
    os.makedirs(os.path.join(base, "s"))
    os.makedirs(os.path.join(base, "t", "ns", "id"))
    os.symlink(os.path.join(base, "s"), os.path.join(base, "link"))
    allow = parse_allow("%s/s:%s/t/*/*:relative:%s/../x" % (base, base, base))
    assert len(allow) == 2
    ok = os.path.join(base, "s", "abc").encode()
    assert policy_access.path_allowed(ok, allow) == ok
    assert policy_access.path_allowed(os.path.join(base, "link", "abc"), allow) == ok      # resolved through the link
    assert policy_access.path_allowed(os.path.join(base, "t", "ns", "id", "log"), allow) is not None
    for bad in ("%s/s/sub/abc" % base, "%s/t/ns/log" % base, "%s/s/../s/abc" % base, "%s/s/./abc" % base, "s/abc",
                "%s/other/abc" % base, "%s/t/ns/id/x/log" % base):
        assert policy_access.path_allowed(bad, allow) is None, bad
    assert policy_access.path_allowed("/anything", []) is None
    one = parse_allow("%s/s/only.sock" % base)      # an entry may name a single socket
    assert policy_access.path_allowed("%s/s/only.sock" % base, one) is not None
    assert policy_access.path_allowed("%s/s/other.sock" % base, one) is None


def test_remote_map():
    mapping = daemon.parse_map("/a/dpu=/a/host")
    assert daemon.map_path("/a/dpu/s/x", mapping) == "/a/host/s/x"
    assert daemon.map_path("/a/dpux/s", mapping) == "/a/dpux/s"
    assert daemon.map_path("/a/dpu/s/x", None) == "/a/dpu/s/x"
    with pytest.raises(ValueError):
        daemon.parse_map("relative=/x")


def test_hello_minor_is_compatible():
    assert proto.HELLO_PAYLOAD[:6] == b"REXEC\x01" and proto.MINOR >= 1


@pytest.mark.parametrize("settings", [
    {"CMD_NET_ADDR": "nonsense"},
    {"CMD_NET_ADDR": "tcp://127.0.0.1:1", "REXEC_HANDSHAKE_TIMEOUT": "soon"},
    {"CMD_NET_ADDR": "tcp://127.0.0.1:1"},
    {"CMD_NET_ADDR": "tcp://127.0.0.1:1", "REXEC_TLS_CA": "/nonexistent/ca.pem"},
    {"CMD_NET_ADDR": "tcp://127.0.0.1:1", "REXEC_TLS_CA": "/nonexistent/ca.pem", "REXEC_TLS_CERT": "/nonexistent/c.pem",
     "REXEC_TLS_KEY": "/nonexistent/c.key"},
    {"CMD_NET_ADDR": "tcp://127.0.0.1:1", "REXEC_INSECURE": "1"},
    {"CMD_NET_ADDR": "unix:///nonexistent/rexec.sock"},
])
def test_the_stream_tools_reach_the_peer_the_way_rexec_does(settings):
    """One connection path: settings that stop rexec stop a stream session with the same words (and no server code)."""
    client = subprocess.run([PYTHON, os.path.join(FILES, "rexec"), "true"], env=dict(settings, PATH=os.environ["PATH"]),
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=20, check=False)
    assert client.returncode == 255
    with pytest.raises(proto.Failure) as refused:
        Peer(settings).open(proto.T_CONNECT, "/run/containerd/s/x")
    assert refused.value.code is None
    assert client.stderr.decode() == "rexec: %s\n" % refused.value.message


@pytest.mark.parametrize("settings", ["name", "ca"])
def test_the_stream_tools_check_the_server_the_way_rexec_does(server, pki, settings):
    env = server.client_env(**({"REXEC_TLS_SERVER_NAME": "not-the-server.example"} if settings == "name"
                               else {"REXEC_TLS_CA": pki["other_ca"]}))
    client = run_client(server, ["true"], env=env)
    with pytest.raises(proto.Failure) as refused:
        Peer(env).open(proto.T_CONNECT, "/run/containerd/s/x")
    assert refused.value.code is None and "certificate verify failed" in refused.value.message
    assert client.returncode == 255 and client.stderr.decode() == "rexec: %s\n" % refused.value.message


# --------------------------------------------------------------------------
# rexec_forward


def test_forward_bulk_half_close_and_audit(host_server, tools, tree):
    echo = EchoServer(os.path.join(tree, "host", "s", "abc"))
    local = os.path.join(tree, "dpu", "s", "abc")
    fwd = start_forward(tools, host_server, tree, ["--path", local])
    try:
        assert wait_until(lambda: os.path.exists(local), 5)
        assert oct(os.stat(local).st_mode & 0o777) == oct(0o600)
        payload = os.urandom(6 << 20)
        received, errors = exchange(local, payload)
        assert not errors
        expected = payload + b"<eof seen>"
        if received != expected:
            diff = next((i for i in range(min(len(received), len(expected))) if received[i] != expected[i]), None)
            raise AssertionError("len %d vs %d, first diff at %s" % (len(received), len(expected), diff))
        assert hashlib.sha256(received).hexdigest() == hashlib.sha256(payload + b"<eof seen>").hexdigest()
        assert host_server.wait_log('connect="%s/host/s/abc" status=closed sent=%d received=%d'
                                    % (tree, len(payload) + 10, len(payload)))
        assert "forward start %s" % local in fwd.log()
    finally:
        echo.close()


def test_forward_concurrent_connections(host_server, tools, tree):
    echo = EchoServer(os.path.join(tree, "host", "s", "abc"))
    local = os.path.join(tree, "dpu", "s", "abc")
    start_forward(tools, host_server, tree, ["--path", local])
    results = {}

    def one(index):
        payload = os.urandom(100000 + index)
        received, errors = exchange(local, payload)
        results[index] = (received == payload + b"<eof seen>") and not errors

    try:
        assert wait_until(lambda: os.path.exists(local), 5)
        threads = [threading.Thread(target=one, args=(index,)) for index in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert results == {index: True for index in range(12)}
        assert echo.accepted == 12
    finally:
        echo.close()


def test_forward_refused_outside_allowlist(host_server, tools, tree):
    # The HOST's server only allows host/s; host/other is refused (and audited), the local connection just closes.
    echo = EchoServer(os.path.join(tree, "host", "other", "abc"))
    local = os.path.join(tree, "dpu", "other", "abc")
    fwd = start_forward(tools, host_server, tree, ["--path", local], REXEC_SOCKET_ALLOW=os.path.join(tree, "dpu", "other"))
    try:
        assert wait_until(lambda: os.path.exists(local), 5)
        received, _errors = exchange(local, b"hello")
        assert received == b""
        assert echo.accepted == 0
        assert host_server.wait_log('connect="%s/host/other/abc" status=refused:allowlist(126)' % tree)
        assert fwd.wait_log("peer refused the connection")
        # The forwarder's own allowlist: a path outside it is not even created.
        fwd2 = start_forward(tools, host_server, tree, ["--path", os.path.join(tree, "dpu", "x", "abc")], name="fwd2.log",
                             REXEC_SOCKET_ALLOW=os.path.join(tree, "dpu", "s"))
        assert fwd2.wait_log("not in REXEC_SOCKET_ALLOW")
        assert not os.path.exists(os.path.join(tree, "dpu", "x", "abc"))
    finally:
        echo.close()


def test_forward_does_not_clobber(host_server, tools, tree):
    os.makedirs(os.path.join(tree, "dpu", "s"))
    regular = os.path.join(tree, "dpu", "s", "file")
    with open(regular, "w", encoding="ascii") as handle:
        handle.write("keep me")
    live = EchoServer(os.path.join(tree, "dpu", "s", "live"))
    try:
        fwd = start_forward(tools, host_server, tree, ["--path", regular, "--path", live.path])
        assert fwd.wait_log("is not a socket: not replacing it")
        assert fwd.wait_log("is a live socket")
        with open(regular, encoding="ascii") as handle:
            assert handle.read() == "keep me"
        assert exchange(live.path, b"x")[0] == b"x<eof seen>"     # still the local server
    finally:
        live.close()


def write_address(tree, ident, target):
    directory = os.path.join(tree, "dpu", "tasks", "default", ident)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "address")
    with open(path + ".tmp", "w", encoding="ascii") as handle:
        handle.write("unix://" + target)
    os.rename(path + ".tmp", path)
    return path


def test_forward_watch_addresses_and_restart(host_server, tools, tree):
    echo = EchoServer(os.path.join(tree, "host", "s", "h1"))
    echo2 = EchoServer(os.path.join(tree, "host", "s", "h2"))
    local1 = os.path.join(tree, "dpu", "s", "h1")
    local2 = os.path.join(tree, "dpu", "s", "h2")
    os.makedirs(os.path.join(tree, "dpu", "tasks"))
    args = ["--watch-addresses", os.path.join(tree, "dpu", "tasks")]
    fwd = start_forward(tools, host_server, tree, args)
    try:
        address1 = write_address(tree, "c1", local1)
        assert wait_until(lambda: os.path.exists(local1), 5)
        assert exchange(local1, b"one")[0] == b"one<eof seen>"
        address2 = write_address(tree, "c2", local2)
        assert wait_until(lambda: os.path.exists(local2), 5)
        assert exchange(local2, b"two")[0] == b"two<eof seen>"
        # The shim stops: its bundle (address file) goes, so does the forwarded socket.
        os.unlink(address2)
        assert wait_until(lambda: not os.path.exists(local2), 5)
        assert fwd.wait_log("forward stop %s (address file gone)" % local2)
        # Restart: sockets removed on stop, rebuilt from the address files at start.
        fwd.stop()
        assert not os.path.exists(local1)
        fwd.start("forward start %s" % local1)
        assert exchange(local1, b"again")[0] == b"again<eof seen>"
        # A crash leaves a stale socket behind: the next start replaces it.
        fwd.stop(signal.SIGKILL)
        assert os.path.exists(local1)
        before = fwd.log().count("forward start %s" % local1)
        fwd.start("forwarding to")
        assert fwd.wait_log("forward start %s" % local1, count=before + 1)
        assert exchange(local1, b"after crash")[0] == b"after crash<eof seen>"
        assert os.path.exists(address1)
    finally:
        echo.close()
        echo2.close()


def test_forward_peer_down_then_up(host_server, tools, tree):
    echo = EchoServer(os.path.join(tree, "host", "s", "abc"))
    local = os.path.join(tree, "dpu", "s", "abc")
    fwd = start_forward(tools, host_server, tree, ["--path", local, "--retry-for", "8"])
    try:
        assert wait_until(lambda: os.path.exists(local), 5)
        host_server.stop()
        result = {}

        def client():
            result["data"] = exchange(local, b"are you there")[0]

        thread = threading.Thread(target=client)
        thread.start()
        assert fwd.wait_log("unreachable")
        host_server.start()
        thread.join(15)
        assert result.get("data") == b"are you there<eof seen>"
        assert fwd.wait_log("reachable again")
    finally:
        echo.close()


def test_forward_tells_systemd_it_is_ready_once_the_sockets_exist(host_server, tools, tree):
    # Type=notify: containerd (ordered after the forwarder) must find the shims' sockets at its start.
    echo = EchoServer(os.path.join(tree, "host", "s", "h1"))
    local1 = os.path.join(tree, "dpu", "s", "h1")
    os.makedirs(os.path.join(tree, "dpu", "tasks"))
    write_address(tree, "c1", local1)
    notify_path = os.path.join(tree, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(10)
    try:
        start_forward(tools, host_server, tree, ["--watch-addresses", os.path.join(tree, "dpu", "tasks")], NOTIFY_SOCKET=notify_path)
        assert notify.recv(64) == b"READY=1"
        assert os.path.exists(local1)
    finally:
        notify.close()
        echo.close()


# --------------------------------------------------------------------------
# rexec_fiforelay (runs "on the HOST": host/... is local, dpu/... is the peer's side)


def start_relay(tools, server, tree, watch, name="relay.log"):
    args = ["--remote-map", "%s/host=%s/dpu" % (tree, tree), "--interval", "0.1"]
    for item in watch:
        args += ["--watch", item]
    return tools(FIFORELAY, args, server.client_env(), os.path.join(tree, name), "relaying fifos")


def fifo_pair(tree, relative):
    paths = []
    for side in ("dpu", "host"):        # the peer's node first, as on a shared file system
        path = os.path.join(tree, side, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mkfifo(path, 0o600)
        paths.append(path)
    return paths


def in_thread(function, *args):
    result = {}

    def run():
        try:
            result["value"] = function(*args)
        except Exception as exc:  # reported by the test
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def read_fifo(path, progress=None):
    with open(path, "rb", buffering=0) as handle:
        return read_to_eof(handle, progress)


def write_fifo(path, data, pause=None):
    with open(path, "wb") as handle:
        if pause is not None:
            handle.write(data[:1000])
            handle.flush()
            pause.wait(10)
            handle.write(data[1000:])
        else:
            handle.write(data)


def test_fiforelay_stdout_and_stdin(host_server, tools, tree):
    # ctr makes its fifos in a fresh subdirectory: /run/containerd/fifo/<random>/<id>-stdin
    os.makedirs(os.path.join(tree, "host", "fifo"))
    relay = start_relay(tools, host_server, tree, [os.path.join(tree, "host", "fifo", "*")])
    # shim (HOST) writes stdout, client (DPU) reads it
    dpu_out, host_out = fifo_pair(tree, "fifo/123/c1-stdout")
    payload = os.urandom(3 << 20)
    reader, got = in_thread(read_fifo, dpu_out)
    writer, _w = in_thread(write_fifo, host_out, payload)
    # client (DPU) writes stdin, shim (HOST) reads it
    dpu_in, host_in = fifo_pair(tree, "fifo/123/c1-stdin")
    stdin_payload = os.urandom(500000)
    shim_reader, shim_got = in_thread(read_fifo, host_in)
    client_writer, _c = in_thread(write_fifo, dpu_in, stdin_payload)
    for thread in (reader, writer, shim_reader, client_writer):
        thread.join(20)
    assert got.get("value") == payload, (got.get("error"), relay.log())
    assert shim_got.get("value") == stdin_payload, (shim_got.get("error"), relay.log())
    assert relay.wait_log("relay start %s -> peer:%s" % (host_out, dpu_out))
    assert relay.wait_log("relay start peer:%s -> %s" % (dpu_in, host_in))
    assert host_server.wait_log('fifo_write="%s" status=closed' % dpu_out)
    assert host_server.wait_log('fifo_read="%s" status=closed' % dpu_in)
    # The nodes go: the relays stop.
    for path in (dpu_out, host_out, dpu_in, host_in):
        os.unlink(path)
    assert relay.wait_log("relay stop %s (removed" % host_out)
    assert relay.wait_log("relay stop %s (removed" % host_in)


def test_fiforelay_log_fifo_in_bundle_and_second_round(host_server, tools, tree):
    os.makedirs(os.path.join(tree, "host", "tasks"))
    relay = start_relay(tools, host_server, tree, [os.path.join(tree, "host", "tasks", "*", "*")])
    dpu_log, host_log = fifo_pair(tree, "tasks/default/c1/log")
    # The shim opens the log fifo for writing: it must not block (the relay is a local reader).
    for text in (b"first shim log\n", b"second writer\n"):
        reader, got = in_thread(read_fifo, dpu_log)
        writer, wrote = in_thread(write_fifo, host_log, text)
        writer.join(10)
        reader.join(10)
        assert not writer.is_alive() and "error" not in wrote
        assert got.get("value") == text, relay.log()
    assert relay.log().count("relay start") == 1


def test_fiforelay_survives_removed_fifo(host_server, tools, tree):
    os.makedirs(os.path.join(tree, "host", "fifo"))
    relay = start_relay(tools, host_server, tree, [os.path.join(tree, "host", "fifo")])
    dpu_a, host_a = fifo_pair(tree, "fifo/a-stdout")
    pause = threading.Event()
    progress = []
    reader, got = in_thread(read_fifo, dpu_a, progress)
    writer, _w = in_thread(write_fifo, host_a, b"x" * 5000, pause)
    assert relay.wait_log("relay start %s" % host_a)
    assert wait_until(lambda: sum(progress) >= 1000, 10)   # the first bytes went through
    os.unlink(host_a)                                     # removed mid-way
    assert relay.wait_log("relay stop %s (removed" % host_a)
    pause.set()
    writer.join(10)
    reader.join(10)
    assert not reader.is_alive()                          # the peer's reader got EOF
    assert got.get("value", b"").startswith(b"x" * 1000)
    # The relay goes on with other fifos.
    dpu_b, host_b = fifo_pair(tree, "fifo/b-stdout")
    reader, got = in_thread(read_fifo, dpu_b)
    writer, _w = in_thread(write_fifo, host_b, b"still working")
    writer.join(10)
    reader.join(10)
    assert got.get("value") == b"still working"
    assert relay.proc.poll() is None


def test_fiforelay_refused_by_peer_allowlist(host_server, tools, tree):
    os.makedirs(os.path.join(tree, "host", "other"))
    relay = start_relay(tools, host_server, tree, [os.path.join(tree, "host", "other")])
    dpu_x, host_x = fifo_pair(tree, "other/x-stdout")
    assert relay.wait_log("relay stop %s (refused by the peer" % host_x)
    assert host_server.wait_log('fifo_write="%s" status=refused:allowlist(126)' % dpu_x)
    time.sleep(0.5)                                      # not retried while the node stays the same
    assert relay.log().count("relay start") == 1


# --------------------------------------------------------------------------
# --resume-ttrpc: a shim's connection outlives a restart of the peer's server

TTRPC = struct.Struct(">IIBB")


class FakeShim(UnixListener):
    """Answers each ttrpc request with a response on its stream (b"re:" + data); a request for b"held" is
    answered only when it comes a second time (the first one dies with the server). b"exit" closes."""

    def __init__(self, path):
        self.seen = []
        super().__init__(path)

    def handle(self, conn):
        buf = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while len(buf) >= TTRPC.size:
                    length, sid, kind, _flags = TTRPC.unpack_from(buf)
                    if len(buf) < TTRPC.size + length:
                        break
                    payload, buf = buf[TTRPC.size:TTRPC.size + length], buf[TTRPC.size + length:]
                    self.seen.append((sid, payload))
                    if payload == b"exit":
                        return
                    if payload == b"held" and self.seen.count((sid, payload)) < 2:
                        continue
                    reply = b"re:" + payload
                    conn.sendall(TTRPC.pack(len(reply), sid, 2, 0) + reply)
        except OSError:
            pass
        finally:
            conn.close()


def ttrpc_call(sock, sid, payload):
    sock.sendall(TTRPC.pack(len(payload), sid, 1, 0) + payload)


def ttrpc_reply(sock):
    head = b""
    while len(head) < TTRPC.size:
        chunk = sock.recv(TTRPC.size - len(head))
        if not chunk:
            return None
        head += chunk
    length, sid, kind, _flags = TTRPC.unpack(head)
    data = b""
    while len(data) < length:
        data += sock.recv(length - len(data))
    return sid, kind, data


def resume_session(tools, server, tree, window, timeout):
    """A fake shim on the HOST's socket, a resuming forward of it, and a client connected through it."""
    shim = FakeShim(os.path.join(tree, "host", "s", "abc"))
    local = os.path.join(tree, "dpu", "s", "abc")
    fwd = start_forward(tools, server, tree, ["--path", local, "--resume-ttrpc", window])
    assert wait_until(lambda: os.path.exists(local), 5)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(local)
    return shim, fwd, sock


def test_resume_ttrpc_keeps_the_connection_through_a_server_restart(host_server, tools, tree):
    shim, fwd, sock = resume_session(tools, host_server, tree, "20", 20)
    try:
        ttrpc_call(sock, 1, b"a")
        assert ttrpc_reply(sock) == (1, 2, b"re:a")
        ttrpc_call(sock, 3, b"held")
        assert wait_until(lambda: (3, b"held") in shim.seen, 5)
        host_server.proc.kill()                # SIGKILL: every session of the server dies at once
        host_server.proc.wait(5)
        host_server.start()
        # The request in flight is sent again on the new leg and answered there, on the same connection.
        assert ttrpc_reply(sock) == (3, 2, b"re:held")
        ttrpc_call(sock, 5, b"b")
        assert ttrpc_reply(sock) == (5, 2, b"re:b")
        assert shim.seen.count((3, b"held")) == 2 and shim.seen.count((1, b"a")) == 1
        assert fwd.wait_log("1 unanswered request(s) to send again")
        sock.close()
    finally:
        shim.close()


def test_resume_ttrpc_ends_the_connection_when_the_shim_does(host_server, tools, tree):
    shim, dummy, sock = resume_session(tools, host_server, tree, "20", 10)
    try:
        ttrpc_call(sock, 1, b"exit")
        # containerd must see a shim that exits as gone: the local connection closes, nothing is resent.
        assert ttrpc_reply(sock) is None
        assert shim.seen == [(1, b"exit")]
        sock.close()
    finally:
        shim.close()


def test_resume_ttrpc_gives_up_after_its_window(host_server, tools, tree):
    shim, fwd, sock = resume_session(tools, host_server, tree, "1", 15)
    try:
        ttrpc_call(sock, 1, b"held")
        assert wait_until(lambda: (1, b"held") in shim.seen, 5)
        host_server.stop()                     # and it stays down
        assert ttrpc_reply(sock) is None
        assert fwd.wait_log("did not come back within 1s")
        sock.close()
    finally:
        shim.close()


def test_resume_keeps_every_frame_of_a_batch_whose_send_breaks():
    """Frames that arrive together are all kept for sending again, also when the leg breaks under the send."""
    local, containerd = socket.socketpair()
    near, far = socket.socketpair()
    far.close()                                   # the leg is already gone
    leg = type("Leg", (), {"near": near, "answered": False})()
    containerd.sendall(b"".join(TTRPC.pack(1, sid, 1, 0) + b"x" for sid in (1, 3, 5)))
    pending = resume.Pending()
    try:
        with pytest.raises(OSError):
            resume._splice(local, leg, pending, resume.Frames(), resume.Frames())
        assert sorted(pending.streams) == [1, 3, 5]
    finally:
        for sock in (local, containerd, near):
            sock.close()


def test_resume_retries_a_busy_peer_and_gives_up_only_on_a_missing_socket():
    assert 127 in resume.FINAL_REFUSALS and 126 in resume.FINAL_REFUSALS
    assert 255 not in resume.FINAL_REFUSALS      # "server busy, try again later" and failed connects
