# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pump of a stream session (protocol 1.1: CONNECT, FIFO_READ, FIFO_WRITE; docs/rexec-protocol.md, section 7).

It moves bytes between a local file descriptor pair (a unix socket, or
fifo ends) and a rexec connection, both ways, half-close aware, with the
STDIN credit window and ACKs.  Both sides use it: the server's stream
session (stream_session) and the client's stream tools (forward,
fiforelay, resume).  It imports nothing of either side.
"""

import errno
import os
import select
import socket
import time

from . import wire
from .wire import ProtocolError

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
POLLERRS = select.POLLERR | select.POLLHUP | select.POLLNVAL
OUT_HIGH = 1 << 20          # server: stop reading the local side above this much unsent output
IN_HIGH = 4 << 20           # client: stop reading the connection above this much output not yet written locally
CHECK_INTERVAL = 0.5        # seconds between check() calls

# EXIT values that end a stream session (kind 0).
END_OK = 0                  # both directions finished
END_RESET = 1               # the local socket / fifo failed (reset, I/O error)
END_REMOVED = 2             # the fifo node was removed or replaced


class Pump:
    """Move bytes between a local fd pair and a stream session, both ways, half-close aware.

    side "client": local data goes out as STDIN (2 MiB credit window), STDOUT
    comes in; EOF(0) = our local read side ended, EOF(1) = we can no longer
    deliver.  side "server": the mirror image (STDOUT out, STDIN in, ACKs);
    the server ends the session with EXIT once both directions are finished.
    rfd/wfd may be the same socket (shut down one direction at a time) or two
    fifo fds (closed), or None.  check() is called about every 0.5 s; a
    non-None result stops the pump with that reason.
    """

    def __init__(self, conn, parser, side, rfd=None, wfd=None, sock=None, check=None, on_ready=None):
        self.conn = conn
        self.parser = parser
        self.client = side == "client"
        self.rfd = rfd
        self.wfd = wfd
        self.sock = sock
        self.check = check
        self.on_ready = on_ready
        self.reading = rfd is not None
        self.writing = wfd is not None
        self.peer_eof = False
        self.out_buf = []
        self.out_bytes = 0
        self.in_flight = 0          # client: STDIN bytes not yet acknowledged
        self.unacked = 0            # server: STDIN bytes consumed, not yet acknowledged
        self.hello = not self.client
        self.sent = 0               # bytes read locally and sent
        self.received = 0           # bytes received and written locally
        self.reset = False
        self.result = None
        self.exit_value = None      # client: EXIT received (the rest of out_buf is still written locally)
        if self.client:
            self.t_send, self.t_recv, self.s_data, self.s_stop = wire.T_STDIN, wire.T_STDOUT, b"\x00", b"\x01"
        else:
            self.t_send, self.t_recv, self.s_data, self.s_stop = wire.T_STDOUT, wire.T_STDIN, b"\x01", b"\x00"

    # -- local side -------------------------------------------------------------

    def shut_read(self):
        if not self.reading:
            return
        self.reading = False
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        else:
            os.close(self.rfd)
            self.rfd = None

    def shut_write(self):
        if not self.writing:
            return
        self.writing = False
        self.unacked += self.out_bytes
        self.out_buf = []
        self.out_bytes = 0
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        else:
            os.close(self.wfd)
            self.wfd = None

    def close(self):
        """Close whatever local fds are left (the caller closes the connection); safe to call twice."""
        self.reading = self.writing = False
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            # rfd and wfd were the socket's number: never close it again, it may be another file's now.
            self.sock = None
            self.rfd = self.wfd = None
            return
        for fd in (self.rfd, self.wfd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.rfd = self.wfd = None

    def read_local(self):
        room = wire.CHUNK
        if self.client:
            room = min(room, wire.STDIN_WINDOW - self.in_flight)
        try:
            data = os.read(self.rfd, room)
        except BlockingIOError:
            return
        except OSError:
            self.reset = True
            data = b""
        if not data:
            self.shut_read()
            self.conn.send(wire.frame(wire.T_EOF, self.s_data))
            return
        self.sent += len(data)
        if self.client:
            self.in_flight += len(data)
        self.conn.send(wire.header(self.t_send, len(data)) + data)

    def write_local(self):
        buf = self.out_buf
        while buf:
            try:
                written = os.write(self.wfd, buf[0])
            except BlockingIOError:
                return
            except OSError as exc:
                # EPIPE: the local reader is gone; tell the peer to stop sending.
                if exc.errno != errno.EPIPE:
                    self.reset = True
                self.shut_write()
                self.conn.send(wire.frame(wire.T_EOF, self.s_stop))
                return
            self.received += written
            self.unacked += written
            self.out_bytes -= written
            if written < len(buf[0]):
                buf[0] = memoryview(buf[0])[written:]
                return
            buf.pop(0)
        if self.peer_eof:
            self.shut_write()

    # -- frames -----------------------------------------------------------------

    def handle(self, events):
        for ftype, payload in events:
            if self.result is not None or self.exit_value is not None:
                return
            if ftype == wire.T_ERROR and self.client:
                raise wire.error_failure(payload)
            if not self.hello:
                if ftype != wire.T_HELLO or payload[:len(wire.MAGIC)] != wire.MAGIC:
                    raise ProtocolError("the server did not answer with a rexec HELLO")
                if payload[len(wire.MAGIC):len(wire.MAGIC) + 1] != bytes((wire.VERSION,)):
                    raise ProtocolError("the server speaks another protocol version")
                self.hello = True
            elif ftype == self.t_recv:
                self.data(payload)
            elif ftype == wire.T_EOF:
                stream = bytes(payload[:1])
                if stream == self.s_stop:
                    # The peer's data ended (its "data" stream number is our "stop" one, and vice versa).
                    self.peer_eof = True
                    if not self.out_buf:
                        self.shut_write()
                elif stream == self.s_data:
                    self.shut_read()
                else:
                    raise ProtocolError("EOF for unknown stream")
            elif self.client and ftype == wire.T_ACK:
                self.in_flight -= int.from_bytes(payload[:4], "big")
            elif self.client and ftype == wire.T_READY:
                if self.on_ready is not None:
                    self.on_ready()
            elif self.client and ftype == wire.T_NOTICE:
                pass
            elif self.client and ftype == wire.T_EXIT:
                self.exit_value = int.from_bytes(payload[1:5], "big") if len(payload) >= 5 else END_RESET
                return
            else:
                raise ProtocolError("unexpected frame type 0x%02x in a stream session" % ftype)

    def data(self, payload):
        if self.peer_eof:
            raise ProtocolError("data after EOF")
        if not payload:
            return
        if not self.writing:
            self.unacked += len(payload)          # nobody to deliver to: drop (the server still acknowledges)
            return
        self.out_buf.append(payload)
        self.out_bytes += len(payload)
        if not self.client and self.out_bytes > wire.STDIN_WINDOW:
            raise ProtocolError("client overran the STDIN window")

    # -- loop -------------------------------------------------------------------

    def run(self, events=()):
        """Relay until the session ends.  Returns ("exit", value) (client: the server's EXIT; server: EXIT sent)
        or ("stopped", reason) from check().  Raises ConnectionLost, ssl.SSLError, ProtocolError, wire.Failure (the server's ERROR)."""
        conn = self.conn
        sockfd = conn.fileno()
        poller = select.poll()
        masks = {}
        self.handle(events)
        next_check = time.monotonic() + CHECK_INTERVAL
        while self.result is None:
            if self.exit_value is not None and not (self.writing and self.out_buf):
                self.result = ("exit", self.exit_value)
                break
            if not self.client:
                self.send_ack()
                if not self.reading and not self.writing:
                    value = END_RESET if self.reset else END_OK
                    conn.send(wire.frame(wire.T_EXIT, bytes((wire.EXIT_CODE,)) + value.to_bytes(4, "big")))
                    self.result = ("exit", value)
                    break
            want = {}
            if self.exit_value is None and (not self.client or self.out_bytes < IN_HIGH):
                want[sockfd] = POLLIN
            if conn.out and self.exit_value is None:
                want[sockfd] = want.get(sockfd, 0) | POLLOUT
            if self.reading and (self.in_flight < wire.STDIN_WINDOW if self.client else conn.pending < OUT_HIGH):
                want[self.rfd] = want.get(self.rfd, 0) | POLLIN
            if self.writing and self.out_buf:
                want[self.wfd] = want.get(self.wfd, 0) | POLLOUT
            for fd in list(masks):
                if fd not in want:
                    poller.unregister(fd)
                    del masks[fd]
            for fd, mask in want.items():
                if masks.get(fd) != mask:
                    poller.register(fd, mask)
                    masks[fd] = mask
            ready = poller.poll(max(0.0, next_check - time.monotonic()) * 1000.0 + 1)
            for fd, event in ready:
                if fd == sockfd and self.exit_value is None:
                    if event & POLLOUT:
                        conn.flush()
                    if event & (POLLIN | POLLERRS):
                        for chunk in conn.recv():
                            self.handle(self.parser.feed(chunk))
                    if self.result is not None:
                        break
                wanted = want.get(fd, 0)
                if fd == self.rfd and self.reading and wanted & POLLIN and event & (POLLIN | POLLERRS):
                    self.read_local()
                if fd == self.wfd and self.writing and wanted & POLLOUT and event & (POLLOUT | POLLERRS):
                    self.write_local()
            if conn.out and self.exit_value is None:
                conn.flush()
            if self.check is not None and time.monotonic() >= next_check:
                next_check = time.monotonic() + CHECK_INTERVAL
                reason = self.check()
                if reason is not None:
                    if not self.client:
                        self.send_ack()
                        conn.send(wire.frame(wire.T_EXIT, bytes((wire.EXIT_CODE,)) + END_REMOVED.to_bytes(4, "big")))
                    self.result = ("stopped", reason)
            elif self.check is None:
                next_check = time.monotonic() + CHECK_INTERVAL
        return self.result

    def send_ack(self):
        if self.unacked:
            self.conn.send(wire.frame(wire.T_ACK, self.unacked.to_bytes(4, "big")))
            self.unacked = 0
