# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""In-process tests of the package's pieces: settings (addresses), frames, requests, the server's allowlist
file code, stream sessions; and which modules each program loads."""

import json
import os
import socket
import subprocess
import types

import pytest

from dpu_offload_rexec import connection, policy_commands, pump, settings, stream_session
from dpu_offload_rexec import wire as proto
from dpu_offload_rexec.settings import ConfigError, parse_address, resolve_address, tls_settings
from rexec_testlib import PACKAGE_DIR, PYTHON, write_allowlist


@pytest.mark.parametrize("text,kind,host,port,path", [
    ("tcp://10.0.0.1:7777", "tcp", "10.0.0.1", 7777, None),
    ("10.0.0.1:7777", "tcp", "10.0.0.1", 7777, None),
    ("tcp://dpu.example:7777/", "tcp", "dpu.example", 7777, None),
    ("tcp://[::1]:7777", "tcp", "::1", 7777, None),
    ("[fe80::1]:1", "tcp", "fe80::1", 1, None),
    ("unix:///run/rexec/rexec.sock", "unix", None, None, "/run/rexec/rexec.sock"),
])
def test_parse_address(text, kind, host, port, path):
    addr = parse_address(text)
    assert (addr.kind, addr.host, addr.port, addr.path) == (kind, host, port, path)


@pytest.mark.parametrize("text", ["", "tcp://host", "host:0", "host:70000", "host:x", "::1:7777", "udp://h:1",
                                  "unix://relative", "tcp://:7777", "[::1]7777"])
def test_parse_address_rejects(text):
    with pytest.raises(ValueError):
        parse_address(text)


def test_address_from_upstream_json(tmp_path):
    conf = tmp_path / "client.json"
    conf.write_text(json.dumps({"Protocol": "tcp", "Ipaddr": "192.0.2.7", "Port": "7777"}))
    addr = resolve_address({}, str(conf))
    assert (addr.kind, addr.host, addr.port) == ("tcp", "192.0.2.7", 7777)
    conf.write_text(json.dumps({"Protocol": "tcp", "Ipaddr": "::1", "Port": 7000}))
    assert str(resolve_address({}, str(conf))) == "tcp://[::1]:7000"
    # CMD_NET_ADDR wins over the file
    assert resolve_address({"CMD_NET_ADDR": "unix:///x"}, str(conf)).path == "/x"
    with pytest.raises(ValueError, match="CMD_NET_ADDR"):
        resolve_address({}, str(tmp_path / "missing.json"))


def test_request_roundtrip_binary_safe():
    argv = [b"/bin/echo", b"\xff\xfe raw", b"", b"sp ace"]
    env = [b"A=1", b"B=\xc3(", b"EMPTY="]
    payload = proto.encode_request(argv, env, b"/tmp/\xe9")
    assert proto.decode_request(payload) == (argv, env, b"/tmp/\xe9")


@pytest.mark.parametrize("payload", [b"", b"\0\0\0\0\0\0\0\0", b"\0\0\0\1\0\0\0\0\0\0\0\5/x",
                                     proto.encode_request([b"a"], [], b"/") + b"x",
                                     proto.encode_request([b"a\0b"], [], b"/")])
def test_request_rejects_malformed(payload):
    with pytest.raises(proto.ProtocolError):
        proto.decode_request(payload)


def test_frame_parser_streams_and_reassembles():
    data = (proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD) + proto.frame(proto.T_STDOUT, b"x" * 1000)
            + proto.frame(proto.T_EXIT, b"\0\0\0\0\3") + proto.frame(proto.T_EOF, b"\1"))
    parser = proto.FrameParser(proto.FROM_SERVER)
    events = []
    for index in range(0, len(data), 7):          # dribble in 7-byte pieces
        events.extend(parser.feed(data[index:index + 7]))
    assert parser.idle()
    assert events[0] == (proto.T_HELLO, proto.HELLO_PAYLOAD)
    stdout = b"".join(bytes(piece) for ftype, piece in events if ftype == proto.T_STDOUT)
    assert stdout == b"x" * 1000
    assert (proto.T_EXIT, b"\0\0\0\0\3") in events
    assert events[-1] == (proto.T_EOF, b"\1")


def test_frame_parser_rejects_unknown_and_oversized():
    with pytest.raises(proto.ProtocolError):
        proto.FrameParser(proto.FROM_CLIENT).feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(proto.ProtocolError):
        proto.FrameParser(proto.FROM_CLIENT).feed(proto.header(proto.T_STDIN, proto.MAX_DATA + 1))
    with pytest.raises(proto.ProtocolError):
        # a server frame type is not accepted from a client
        proto.FrameParser(proto.FROM_CLIENT).feed(proto.frame(proto.T_EXIT, b"\0\0\0\0\0"))
    parser = proto.FrameParser(proto.FROM_CLIENT)
    assert parser.feed(proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD)[:3]) == []
    assert not parser.idle()


def test_tls_settings_partial_is_an_error():
    assert tls_settings({}) is None
    with pytest.raises(ValueError, match="REXEC_TLS_KEY"):
        tls_settings({"REXEC_TLS_CA": "a", "REXEC_TLS_CERT": "b"})


def test_allowlist_parsing_and_symlinks(tmp_path):
    target = tmp_path / "real-tool"
    target.write_text("#!/bin/sh\n")
    target.chmod(0o755)
    link = tmp_path / "tool-link"
    link.symlink_to(target)
    entries = [str(link), "# " + str(tmp_path / "commented"), "relative/path", "  ", "  " + str(tmp_path / "spaced") + "  "]
    listed = write_allowlist(str(tmp_path / "wl"), entries)
    allowed = policy_commands.load_allowlist(listed)
    assert os.fsencode(str(target)) in allowed          # symlink entry resolved to its target
    assert os.fsencode(str(tmp_path / "spaced")) in allowed
    assert not any(b"commented" in entry for entry in allowed.rules)
    assert not any(b"relative" in entry for entry in allowed.rules)
    assert [number for number, _problem in allowed.problems] == [4]     # the relative entry is reported


def test_allowlist_file_checks(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        policy_commands.check_allowlist_file(str(tmp_path / "nope"))
    path = write_allowlist(str(tmp_path / "wl"), ["/bin/true"], mode=0o620)
    with pytest.raises(ConfigError, match="writable by group or others"):
        policy_commands.check_allowlist_file(path)
    os.chmod(path, 0o602)
    with pytest.raises(ConfigError, match="chmod go-w"):
        policy_commands.check_allowlist_file(path)
    os.chmod(path, 0o644)
    policy_commands.check_allowlist_file(path)


def test_find_command(tmp_path):
    tool = tmp_path / "bin" / "mytool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    # Bare names: the server's own PATH only.
    assert policy_commands.find_command(b"mytool", b"/") is None
    assert policy_commands.find_command(b"sh", b"/").startswith(b"/")
    assert policy_commands.find_command(b"bin/mytool", os.fsencode(str(tmp_path))) == os.fsencode(str(tool))
    assert policy_commands.find_command(b"/nonexistent/x", b"/") is None


def _fds_on(path):
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + name) == path:
                found.append(int(name))
        except OSError:
            pass
    return found


class _FakeConn:
    """What StreamSession needs of a connection: a pollable fd, send(), recv()."""

    def __init__(self):
        self.rfd, self.wfd = os.pipe()
        self.sent = []

    def fileno(self):
        return self.rfd

    def send(self, data):
        self.sent.append(data)

    def recv(self):
        return []

    def close(self):
        os.close(self.rfd)
        os.close(self.wfd)


@pytest.mark.parametrize("spool", [0, 65536])
def test_a_fifo_session_that_fails_inside_the_pump_closes_the_fifo(tmp_path, monkeypatch, spool):
    """An unexpected error while relaying must not leak the fifo's fd: the
    server would keep the shared directory's mount busy until it restarts.
    Read through a spool (REXEC_FIFO_SPOOL) too: its thread lets go of it."""
    fifo = str(tmp_path / "log")
    os.mkfifo(fifo)
    server = types.SimpleNamespace(stopping=False, settings=types.SimpleNamespace(
        fifo_allow=settings.parse_allow(str(tmp_path)), socket_allow=[], fifo_spool=spool))
    conn = _FakeConn()
    session = type("Session", (), {"server": server, "conn": conn, "parser": proto.FrameParser(proto.FROM_CLIENT), "who": "test"})()

    def boom(self, events=()):
        raise RuntimeError("boom")
    monkeypatch.setattr(pump.Pump, "run", boom)
    stream = stream_session.StreamSession(session, proto.T_FIFO_READ, os.fsencode(fifo))
    try:
        with pytest.raises(RuntimeError):
            stream.serve([])
        assert _fds_on(fifo) == []
    finally:
        conn.close()


def test_closing_a_socket_pump_twice_leaves_other_files_alone(tmp_path):
    """The server closes a stream's pump when the session ends and again in its
    cleanup: the second close must not close the socket's old fd number,
    which by then may belong to another session."""
    ours, peer = socket.socketpair()
    relay = pump.Pump(None, None, "server", rfd=ours.fileno(), wfd=ours.fileno(), sock=ours)
    number = ours.fileno()
    relay.close()
    reused = os.open(str(tmp_path), os.O_RDONLY)
    try:
        assert reused == number   # the lowest free number comes back at once
        relay.close()
        os.fstat(reused)          # still open
    finally:
        os.close(reused)
        peer.close()


def test_tcp_options_keep_a_session_through_a_cut_and_retry_soon_after():
    """Keepalive gives an idle connection up after 4.5 minutes, not one; where the
    kernel has TCP_RTO_MAX_MS (Linux 6.15+), retransmissions back off to 5 s at most."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        connection.set_tcp_options(sock)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        idle, interval, count = (sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name))
                                 for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"))
        assert idle + interval * count == 270
        try:
            rto_max = sock.getsockopt(socket.IPPROTO_TCP, connection.TCP_RTO_MAX_MS)
        except OSError:
            pytest.skip("this kernel has no TCP_RTO_MAX_MS")
        assert rto_max == connection.RTO_MAX_MS == 5000
    finally:
        sock.close()


# --------------------------------------------------------------------------
# Which modules each program loads


def _loaded(statement):
    """The package's modules a fresh interpreter holds after statement."""
    code = ("import sys\nsys.path.insert(0, %r)\n%s\n"
            "print(' '.join(name for name in sys.modules if name.startswith('dpu_offload_rexec.')))" % (PACKAGE_DIR, statement))
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    return set(name.split(".", 1)[1] for name in out.split())


SERVER_SIDE = {"server", "session", "command_session", "stream_session", "audit", "policy_commands", "policy_words",
               "policy_env"}
CLIENT_SIDE = {"client", "dial", "daemon", "forward", "fiforelay", "resume", "watch"}


def test_the_client_loads_only_what_a_command_needs():
    # The offload shim starts one interpreter per call: every module is start-up time.
    assert _loaded("from dpu_offload_rexec.client import client_run") == {
        "client", "common", "connection", "dial", "settings", "wire"}


def test_the_server_loads_no_client_code():
    loaded = _loaded("import dpu_offload_rexec.server")
    assert SERVER_SIDE <= loaded and not loaded & CLIENT_SIDE


@pytest.mark.parametrize("tool", ["forward", "fiforelay"])
def test_the_stream_tools_load_no_server_code(tool):
    loaded = _loaded("import dpu_offload_rexec.%s" % tool)
    assert "pump" in loaded and "dial" in loaded and not loaded & (SERVER_SIDE | {"client"})


# A bundle's address file is the HOST's to write (issue 31, point 4): the forwarder reads it without following a
# link (to a DPU file) or waiting on a fifo (which would stop every forward).
def test_address_file_read_only_when_regular(tmp_path):
    from dpu_offload_rexec.forward import read_address_file  # pylint: disable=import-outside-toplevel
    good = tmp_path / "address"
    good.write_text("unix:///run/containerd/s/" + "a" * 64 + "\n")
    assert read_address_file(str(good)) == "unix:///run/containerd/s/" + "a" * 64
    secret = tmp_path / "secret"
    secret.write_text("unix:///run/containerd/containerd.sock")
    link = tmp_path / "link"
    link.symlink_to(secret)
    with pytest.raises(OSError):
        read_address_file(str(link))
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    with pytest.raises(ValueError, match="not a regular file"):
        read_address_file(str(fifo))


def test_scans_do_not_follow_a_link_the_peer_planted(tmp_path):
    from dpu_offload_rexec.watch import glob_no_links, watch_dirs  # pylint: disable=import-outside-toplevel
    bundles = tmp_path / "bundles"
    (bundles / "moby" / "c1").mkdir(parents=True)
    (bundles / "moby" / "c1" / "address").write_text("unix:///run/containerd/s/x")
    elsewhere = tmp_path / "dpu-etc"
    (elsewhere / "c2").mkdir(parents=True)
    (elsewhere / "c2" / "address").write_text("unix:///run/containerd/containerd.sock")
    (bundles / "k8s.io").symlink_to(elsewhere)
    (bundles / "moby" / "c3").symlink_to(elsewhere / "c2")
    pattern = str(bundles / "*" / "*" / "address")
    assert glob_no_links(pattern) == [str(bundles / "moby" / "c1" / "address")]
    assert sorted(watch_dirs([str(bundles / "*" / "*")])) == sorted(
        [str(bundles), str(bundles / "moby"), str(bundles / "moby" / "c1")])
    # The fixed prefix may be a link (a persisted directory bound or linked by the deploy).
    (tmp_path / "run").symlink_to(bundles)
    assert glob_no_links(str(tmp_path / "run" / "*" / "*" / "address")) == [
        str(tmp_path / "run" / "moby" / "c1" / "address")]
