# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One connection to rexec_server: TLS, the peer's name, HELLO and the request, then its command or stream session.

A Session holds a handshake slot of the server until its request is in
(within REXEC_HANDSHAKE_TIMEOUT), then a session slot; the request decides
what runs: command_session (REQUEST) or stream_session (CONNECT, FIFO_READ,
FIFO_WRITE).  Refusals before that (another pair's certificate, garbage,
a busy server) are answered and, for a refused peer, audited here.
"""

import json
import os
import select
import signal
import socket
import ssl
import sys
import time

from . import command_session, wire
from .audit import log, q, where
from .connection import Conn, linger_close, set_tcp_options, wait_io
from .policy_access import certificate_names, peer_allowed
from .stream_session import StreamSession
from .wire import ConnectionLost, ProtocolError, error_frame

REQUEST_READ = 16 * 1024    # read size until the request is in
REQUEST_FREE = 64 * 1024    # a REQUEST up to this size needs nothing from the shared budget

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT


class PeerRefused(Exception):
    """The client's certificate is valid but not one of REXEC_TLS_PEERS."""


class Session:
    """One client connection: handshake, peer check, request; then the command or stream session it asks for."""

    def __init__(self, server, sock, peer, key):
        self.server = server
        self.sock = sock
        self.peer = peer
        self.key = key              # the client's address, for the per-address handshake limit
        self.accepted = time.monotonic()
        self.evicted = False        # pushed out of the handshake slots, or the server stops
        self.reserved = 0           # bytes of the shared REQUEST budget this session holds
        self.conn = None
        self.proc = None
        self.who = self.label()
        self.argv = None
        self.cwd = None
        self.parser = None
        self.peer_checked = False

    # -- helpers ------------------------------------------------------------

    def label(self, conn=None):
        """How the audit lines name the peer: uid and pid (unix socket), certificate name and address, or address."""
        sock, peer = self.sock, self.peer
        if sock.family == socket.AF_UNIX:
            try:
                creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                pid = int.from_bytes(creds[0:4], sys.byteorder)
                uid = int.from_bytes(creds[4:8], sys.byteorder)
                return "uid:%d(pid %d)" % (uid, pid)
            except OSError:
                return "uid:unknown"
        address = "[%s]:%d" % peer[:2] if sock.family == socket.AF_INET6 else "%s:%d" % peer[:2]
        if self.server.context is None:
            return "insecure(%s)" % address
        common_name = conn.peer_cn() if conn is not None else None
        if common_name is None:
            return "tls(%s)" % address
        return "cn:%s(%s)" % (q(common_name), address)

    def audit(self, status, pid=None):
        parts = ["audit peer=%s" % self.who]
        if self.argv is not None:
            parts.append("argv=" + json.dumps([os.fsdecode(arg) for arg in self.argv]))
            parts.append("cwd=" + q(self.cwd))
        if pid is not None:
            parts.append("pid=%d" % pid)
        parts.append("status=" + status)
        log(" ".join(parts))

    def kill_group(self):
        proc = self.proc
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass

    def evict(self):
        """From another thread (with the server's lock held): end the connection now, sending nothing more."""
        self.evicted = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def reserve(self, length):
        """FrameParser hook: may a frame of this length be buffered?"""
        if length <= REQUEST_FREE:
            return True
        if not self.server.take_budget(length):
            return False
        self.reserved += length
        return True

    def unreserve(self):
        if self.reserved:
            self.server.give_budget(self.reserved)
            self.reserved = 0

    # -- main ---------------------------------------------------------------

    def run(self):
        try:
            set_tcp_options(self.sock)
            self.conn = Conn(self.sock, self.server.context, server_side=True)
            self.serve()
        except Exception as exc:  # keep the server alive whatever happens in one session
            if not self.evicted:
                log("internal error in session from %s: %r at %s" % (self.who, exc, where(exc)))
            self.kill_group()
        finally:
            self.unreserve()
            if self.proc is not None:
                self.kill_group()
                for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                    if pipe is not None:
                        pipe.close()
                try:
                    self.proc.wait()
                except OSError:
                    pass
            self.server.release(self)
            if self.conn is not None:
                self.conn.close()
            else:
                self.sock.close()

    def serve(self):
        try:
            request, events = self.read_request()
        except ConnectionLost as exc:
            if not self.evicted:
                log("connection from %s closed before a request: %s" % (self.who, exc))
            return
        except ssl.SSLError as exc:
            if not self.evicted:
                log("TLS handshake with %s failed: %s" % (self.who, exc))
            self.try_flush()
            return
        except TimeoutError:
            log("connection from %s: no request within %gs, dropped" % (self.who, self.server.settings.handshake_timeout))
            return
        except PeerRefused as exc:
            self.audit("refused:peer(255)")
            self.conn.send(error_frame(255, str(exc)))
            linger_close(self.conn)
            return
        except ProtocolError as exc:
            if self.evicted:
                return
            log("protocol error from %s: %s" % (self.who, exc))
            self.conn.send(error_frame(255, "protocol error: %s" % exc))
            linger_close(self.conn)
            return
        finally:
            self.unreserve()
        admitted = self.server.promote(self)
        if admitted != "ok":
            if admitted == "busy":
                log("refusing a request from %s: %d sessions active (REXEC_MAX_SESSIONS)" % (self.who, self.server.settings.max_sessions))
                self.conn.send(error_frame(255, "server busy: %d sessions already running (REXEC_MAX_SESSIONS); "
                                                "try again later" % self.server.settings.max_sessions))
                linger_close(self.conn)
            return
        if len(request) == 2:
            StreamSession(self, request[0], request[1]).serve(events)
            return
        command_session.serve(self, request, events)

    def try_flush(self):
        try:
            self.conn.flush()
        except ConnectionLost:
            pass

    def check_peer(self):
        """Once TLS is up: is the certificate one of the names this server accepts?"""
        self.peer_checked = True
        self.who = self.label(self.conn)
        if self.conn.tls is None or self.server.settings.peers is None:
            return
        cert = self.conn.tls.getpeercert()
        if peer_allowed(cert, self.server.settings.peers) is None:
            names = certificate_names(cert)
            raise PeerRefused("client certificate %s is not one of this server's peers (REXEC_TLS_PEERS)"
                              % ", ".join(json.dumps(name) for name in names))

    def read_request(self):
        """Handshake, HELLO and REQUEST within the handshake timeout."""
        conn = self.conn
        parser = wire.FrameParser(wire.FROM_CLIENT, reserve=self.reserve)
        deadline = time.monotonic() + self.server.settings.handshake_timeout
        poller = select.poll()
        fd = conn.fileno()
        hello = False
        while True:
            poller.register(fd, POLLIN | (POLLOUT if conn.out else 0))
            events = wait_io(poller, deadline)
            if events is None:
                raise TimeoutError()
            if conn.out:
                conn.flush()
            # Small, reused buffers until the request is in: a connection
            # that has not authenticated costs little (the REQUEST itself is
            # assembled in one buffer of its announced size, see reserve()).
            conn.reuse = True
            try:
                chunks = conn.recv(REQUEST_READ)
            finally:
                conn.reuse = False
            if not self.peer_checked and conn.handshaken:
                self.check_peer()
            for chunk in chunks:
                frames = parser.feed(chunk)
                for index, (ftype, payload) in enumerate(frames):
                    if not hello:
                        if ftype != wire.T_HELLO:
                            raise ProtocolError("expected HELLO, got frame type 0x%02x" % ftype)
                        if payload[:len(wire.MAGIC)] != wire.MAGIC or len(payload) < len(wire.MAGIC) + 1:
                            raise ProtocolError("bad HELLO")
                        version = payload[len(wire.MAGIC)]
                        if version != wire.VERSION:
                            raise ProtocolError("unsupported protocol version %d (this server speaks %d)"
                                                % (version, wire.VERSION))
                        hello = True
                        conn.send(wire.frame(wire.T_HELLO, wire.HELLO_PAYLOAD))
                        continue
                    if ftype in wire.STREAM_REQUESTS:
                        self.parser = parser
                        return (ftype, bytes(payload)), frames[index + 1:]
                    if ftype != wire.T_REQUEST:
                        raise ProtocolError("expected REQUEST, got frame type 0x%02x" % ftype)
                    self.parser = parser
                    request = wire.decode_request(payload)
                    del payload, frames[index]       # the decoded strings are all that is kept
                    return request, frames[index:]
