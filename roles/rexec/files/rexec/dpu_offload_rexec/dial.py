# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The client's way to the peer's rexec_server: its settings, the connection, TLS, the first frames.

Peer reads the client's settings (settings.ClientSettings: CMD_NET_ADDR,
else the JSON file of REXEC_CONFIG or /etc/rexec/client.json;
REXEC_HANDSHAKE_TIMEOUT; REXEC_TLS_*, REXEC_TLS_SERVER_NAME, REXEC_INSECURE)
and dials: connect, TLS handshake, HELLO and the request.  The rexec
program (client) sends a command's REQUEST through it, the stream tools
(forward, fiforelay) a stream request (Peer.open).  Kept cheap to import:
the client's start-up time matters.
"""

import os
import select
import socket
import ssl
import time

from . import wire
from .connection import Conn, make_context, set_tcp_options
from .settings import ClientSettings
from .wire import ConnectionLost, Failure, ProtocolError

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT


def tcp_connect(host, port, timeout):
    """socket.create_connection() without the idna codec import for IP literals and ASCII names."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except OSError:
            sock.close()
            raise
        return sock
    return socket.create_connection((host.encode("ascii") if host.isascii() else host, port), timeout=timeout)


class Peer:
    """Where and how to reach the peer's rexec_server, from the client's settings in env.

    Raises Failure when the settings are incomplete or wrong.
    """

    def __init__(self, env):
        try:
            settings = ClientSettings(env)
        except ValueError as exc:
            raise Failure(str(exc))
        self.addr = settings.addr
        self.timeout = settings.timeout
        self.context = None
        self.server_name = None
        if settings.tls is not None:
            try:
                self.context = make_context(False, *settings.tls)
            except (OSError, ssl.SSLError) as exc:
                raise Failure("cannot load TLS files (REXEC_TLS_CA/CERT/KEY): %s" % exc)
            server_name = settings.server_name
            # bytes: spares ssl the idna codec import
            self.server_name = server_name.encode("ascii") if server_name.isascii() else server_name

    def __str__(self):
        return str(self.addr)

    def dial(self, first_frames, reuse_buffers=False):
        """Connect, finish TLS within the timeout, send first_frames() (HELLO and the request).

        Returns (conn, plaintext chunks that came with the handshake).
        reuse_buffers: see Conn.  Raises Failure, with the connection closed.
        """
        conn = self.connect(reuse_buffers)
        try:
            early = self.handshake(conn)
            conn.send(first_frames())
            conn.flush()
        except Failure:
            conn.close()
            raise
        except ConnectionLost as exc:
            conn.close()
            raise Failure("connection to %s lost during the handshake: %s" % (self, exc))
        except ssl.SSLError as exc:
            conn.close()
            raise Failure("TLS handshake with %s failed: %s" % (self, exc))
        except OSError as exc:
            conn.close()
            raise Failure("connection to %s failed: %s" % (self, exc))
        return conn, early

    def connect(self, reuse_buffers):
        addr = self.addr
        try:
            if addr.kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                try:
                    sock.connect(addr.path)
                except OSError:
                    sock.close()
                    raise
            else:
                sock = tcp_connect(addr.host, addr.port, self.timeout)
                set_tcp_options(sock)
        except socket.gaierror as exc:
            raise Failure("cannot resolve %s: %s" % (addr.host, exc.strerror))
        except OSError as exc:
            raise Failure("cannot connect to %s: %s" % (addr, exc.strerror or exc))
        return Conn(sock, self.context, server_hostname=self.server_name, reuse_buffers=reuse_buffers)

    def handshake(self, conn):
        """Finish TLS; returns plaintext that arrived together with the handshake."""
        if conn.handshaken:
            return []
        deadline = time.monotonic() + self.timeout
        poller = select.poll()
        early = []
        conn.handshake()
        while not conn.handshaken:
            conn.flush()
            poller.register(conn.fileno(), POLLIN | (POLLOUT if conn.out else 0))
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000.0):
                raise Failure("TLS handshake with %s timed out" % self)
            early.extend(conn.recv())
        return early

    def open(self, kind, path):
        """A stream session (CONNECT, FIFO_READ, FIFO_WRITE of path): returns (conn, parser, early events).

        Raises Failure (code None) when the connection or TLS fails.
        """
        request = wire.frame(wire.T_HELLO, wire.HELLO_PAYLOAD) + wire.frame(kind, os.fsencode(path))
        conn, early = self.dial(lambda: request)
        parser = wire.FrameParser(wire.FROM_SERVER)
        try:
            events = [event for chunk in early for event in parser.feed(chunk)]
        except ProtocolError as exc:
            conn.close()
            raise Failure("connection to %s failed: %s" % (self, exc))
        return conn, parser, events
