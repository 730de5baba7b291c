# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A rexec connection: a non-blocking socket carrying frames, optionally inside mutual TLS.

Conn works the same over plain sockets and over TLS (an ssl.SSLObject driven
through memory BIOs, so one thread can multiplex the socket with pipes using
poll()).  Also here: the TLS contexts of both sides, the TCP options of every
connection, and the server's blocking last steps (flush, half-close, linger).
Kept cheap to import: the client's start-up time matters.
"""

import select
import socket
import ssl
import time

from .wire import CHUNK, ConnectionLost

CLOSE_LINGER = 2.0          # seconds the server waits for the client to close after its last frame


class Conn:
    """A non-blocking socket carrying frames, optionally inside TLS.

    send() queues plaintext; flush() pushes queued bytes to the socket as far
    as it accepts them; recv() returns the plaintext that arrived.  With TLS
    the ssl.SSLObject only ever talks to memory BIOs, so all socket I/O stays
    non-blocking and in the caller's poll() loop.
    """

    def __init__(self, sock, context=None, server_side=False, server_hostname=None, reuse_buffers=False):
        sock.setblocking(False)
        self.sock = sock
        # reuse_buffers: recv() returns views into buffers that the next
        # recv() overwrites (for callers that consume data at once).
        self.reuse = reuse_buffers
        self._sockbuf = None
        self._plainbuf = None
        self.out = []
        self.out_off = 0
        self.pending = 0
        if context is None:
            self.tls = None
            self.handshaken = True
        else:
            self._in = ssl.MemoryBIO()
            self._outbio = ssl.MemoryBIO()
            self.tls = context.wrap_bio(self._in, self._outbio, server_side=server_side, server_hostname=server_hostname)
            self.handshaken = False

    def fileno(self):
        return self.sock.fileno()

    def _pull_tls(self):
        if self._outbio.pending > 0:
            data = self._outbio.read()
            self.out.append(data)
            self.pending += len(data)

    def handshake(self):
        """Advance the TLS handshake; True once it is complete."""
        if self.handshaken:
            return True
        try:
            self.tls.do_handshake()
            self.handshaken = True
        except ssl.SSLWantReadError:
            pass
        finally:
            # Also on failure: the queued bytes may hold a TLS alert for the peer.
            self._pull_tls()
        return self.handshaken

    def send(self, data):
        if self.tls is not None:
            self.tls.write(data)
            self._pull_tls()
        else:
            self.out.append(data)
            self.pending += len(data)

    def send_view(self, view):
        """Like send() for a buffer the caller reuses afterwards (copied only when it must be queued)."""
        if self.tls is not None:
            self.tls.write(view)
            self._pull_tls()
        else:
            self.out.append(bytes(view))
            self.pending += len(view)

    def flush(self):
        """Send queued bytes; True when nothing is left queued."""
        out = self.out
        sock = self.sock
        if len(out) > 1 and not self.out_off and self.pending <= 65536:
            out[:] = [b"".join(out)]      # one segment for small frames queued together
        while out:
            first = out[0]
            try:
                if self.out_off:
                    sent = sock.send(memoryview(first)[self.out_off:])
                else:
                    sent = sock.send(first)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as exc:
                raise ConnectionLost(str(exc))
            self.pending -= sent
            if self.out_off + sent >= len(first):
                out.pop(0)
                self.out_off = 0
            else:
                self.out_off += sent
                return False
        return True

    def _recv_fresh(self, limit):
        parts = []
        total = 0
        sock = self.sock
        while total < limit:
            try:
                data = sock.recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if parts:
                    break           # hand out what we have; the error shows up again next time
                raise ConnectionLost(str(exc))
            if not data:
                if parts:
                    break
                raise ConnectionLost("connection closed by peer")
            parts.append(data)
            total += len(data)
            if len(data) < CHUNK:
                break
        return parts, total

    def _recv_reuse(self, limit):
        if self._sockbuf is None:
            self._sockbuf = memoryview(bytearray(limit))
        view = self._sockbuf
        total = 0
        sock = self.sock
        while total < limit:
            try:
                got = sock.recv_into(view[total:])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if total:
                    break
                raise ConnectionLost(str(exc))
            if not got:
                if total:
                    break
                raise ConnectionLost("connection closed by peer")
            total += got
        return ([view[:total]] if total else []), total

    def recv(self, limit=4 * CHUNK):
        """Read what the socket has (up to about limit bytes); returns a list of plaintext chunks.

        The list may be empty (nothing yet, or only TLS handshake/record bytes).
        Raises ConnectionLost on EOF or error, ssl.SSLError on TLS failures.
        """
        if self.reuse:
            parts, total = self._recv_reuse(limit)
        else:
            parts, total = self._recv_fresh(limit)
        if self.tls is None or not parts:
            return parts
        for data in parts:
            self._in.write(data)
        if not self.handshaken and not self.handshake():
            return []
        # Decrypt every complete record into one buffer: SSL_read hands out
        # one record (at most 16 KiB) per call, and allocating a buffer per
        # call would dominate the cost.  Plaintext <= new ciphertext + one
        # record carried over from before.
        size = total + 17 * 1024
        if not self.reuse:
            view = memoryview(bytearray(size))
        else:
            if self._plainbuf is None or len(self._plainbuf) < size:
                self._plainbuf = memoryview(bytearray(max(size, limit + 17 * 1024)))
            view = self._plainbuf
            size = len(view)
        pos = 0
        chunks = []
        read = self.tls.read
        try:
            while True:
                if pos == size:
                    chunks.append(view)
                    view = memoryview(bytearray(size))
                    pos = 0
                got = read(size - pos, view[pos:])
                if not got:
                    break
                pos += got
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            raise ConnectionLost("connection closed by peer")
        finally:
            self._pull_tls()
        if pos:
            chunks.append(view[:pos])
        return chunks

    def peer_cn(self):
        """commonName of the verified peer certificate, or None."""
        if self.tls is None:
            return None
        cert = self.tls.getpeercert() or {}
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def make_context(server_side, ca, cert, key):
    """Mutual-TLS context: our certificate + key, peers must chain to ca."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=ca)
    context.load_cert_chain(cert, key)
    if server_side:
        context.num_tickets = 0
    return context


# Linux 6.15's socket option (not in every Python's socket module yet).
TCP_RTO_MAX_MS = getattr(socket, "TCP_RTO_MAX_MS", 44)
RTO_MAX_MS = 5000


def set_tcp_options(sock):
    """No Nagle delay for small frames; keepalive so dead peers are noticed.

    An idle connection is given up after 30 s + 8 unanswered probes 30 s
    apart (4.5 min): a link cut of a minute or two must not end the sessions
    (a container's output relay, a shim's connection), which carry on when
    the link is back; a peer that rebooted answers the first probe with a
    reset.  Where the kernel allows (Linux 6.15+), retransmissions back off
    to RTO_MAX_MS at most instead of 2 minutes, so that data a cut held
    back flows again within seconds of the link's return.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 30), ("TCP_KEEPCNT", 8)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_RTO_MAX_MS, RTO_MAX_MS)
        except OSError:
            pass            # an older kernel: its own maximum (120 s)


def wait_io(poller, deadline):
    """poll() until deadline (monotonic seconds).  Returns events, None on timeout."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    return poller.poll(remaining * 1000.0 + 1)


def flush_blocking(conn, deadline):
    """Push all queued output to the peer; False on timeout."""
    poller = select.poll()
    while not conn.flush():
        poller.register(conn.fileno(), select.POLLOUT)
        if wait_io(poller, deadline) is None:
            return False
    return True


def linger_close(conn):
    """After the last frame: half-close and wait briefly for the client to close.

    Closing with unread data in the receive queue would make the kernel send
    a reset, which can destroy frames the client has not read yet.  The
    socket itself is closed by the server's session once it has left the
    server's books (the server may shut it down from another thread until
    then).
    """
    try:
        if flush_blocking(conn, time.monotonic() + CLOSE_LINGER):
            conn.sock.shutdown(socket.SHUT_WR)
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN)
            deadline = time.monotonic() + CLOSE_LINGER
            while wait_io(poller, deadline):
                conn.recv()
    except (ConnectionLost, ssl.SSLError, OSError):
        pass
