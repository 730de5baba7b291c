# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stream sessions of rexec protocol 1.1 (CONNECT, FIFO_READ, FIFO_WRITE).

Shared by rexec_server (server side), rexec_forward and rexec_fiforelay
(client side): the byte pump between a local file descriptor pair and a
rexec connection, directory allowlists for paths, and opening a client
session through the rexec client's own connection (rexec_client.Peer: the
same settings, CMD_NET_ADDR or /etc/rexec/client.json, REXEC_TLS_*).  See
docs/rexec-protocol.md.  Python 3.9+ standard library only.
"""

import errno
import fnmatch
import os
import select
import socket
import stat
import threading
import time

import rexec_client
import rexec_proto as proto

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


# A stream session could not be opened or was refused: ERROR from the server
# (message, code) or a connection failure (code None).  The rexec client's error.
SessionError = rexec_client.Failure


# --------------------------------------------------------------------------
# Path allowlists (REXEC_SOCKET_ALLOW, REXEC_FIFO_ALLOW)


def parse_allow(text):
    """Colon-separated absolute directories (shell wildcards allowed per component) -> list of bytes patterns."""
    entries = []
    if not text:
        return entries
    if isinstance(text, str):
        text = os.fsencode(text)
    for item in text.split(b":"):
        item = item.strip()
        if not item.startswith(b"/") or b".." in item.split(b"/"):
            continue
        item = os.path.normpath(item)
        if not any(char in item for char in (b"*", b"?", b"[")):
            item = os.path.realpath(item)
        entries.append(item)
    return entries


def _dir_matches(directory, pattern):
    dparts = directory.split(b"/")
    pparts = pattern.split(b"/")
    if len(dparts) != len(pparts):
        return False
    return all(part == pat or fnmatch.fnmatchcase(part, pat) for part, pat in zip(dparts, pparts))


def path_allowed(path, entries, resolve=True):
    """The real path of path if allowed by entries, else None.

    Allowed: the real path's parent directory is exactly an entry (in a
    pattern, `*` stands for exactly one path component), or the real path
    itself is an entry (an entry may name one socket / fifo).  Refuses
    relative paths, NUL bytes and `.`/`..` components before resolving
    anything.  resolve=False checks the path as written (for a caller that
    then refuses every symlink on the way, so that it is the real path).
    """
    if isinstance(path, str):
        path = os.fsencode(path)
    if not path.startswith(b"/") or b"\0" in path:
        return None
    parts = path.split(b"/")
    if b".." in parts or b"." in parts:
        return None
    if resolve:
        real = os.path.realpath(path)
    elif b"//" in path or path.endswith(b"/"):
        return None
    else:
        real = path
    parent = os.path.dirname(real)
    for entry in entries:
        if parent == entry or real == entry or _dir_matches(parent, entry):
            return real
    return None


# --------------------------------------------------------------------------
# Remote path mapping (testing aid: two directories stand for two machines)


def parse_map(text):
    """LOCAL_PREFIX=REMOTE_PREFIX -> (local, remote) as str; ValueError when malformed."""
    local, sep, remote = text.partition("=")
    if not sep or not local.startswith("/") or not remote.startswith("/"):
        raise ValueError("--remote-map wants LOCAL_PREFIX=REMOTE_PREFIX (absolute paths), got %r" % text)
    return local.rstrip("/") or "/", remote.rstrip("/") or "/"


def map_path(path, mapping):
    """The path to ask the peer for: path itself, or with the local prefix replaced."""
    if mapping is None:
        return path
    local, remote = mapping
    if path == local:
        return remote
    if path.startswith(local.rstrip("/") + "/"):
        return remote.rstrip("/") + path[len(local.rstrip("/")):]
    return path


# --------------------------------------------------------------------------
# Client side: connecting


class Peer(rexec_client.Peer):
    """Where and how to reach the peer's rexec_server: the rexec client's settings and connection."""

    def open(self, kind, path):
        """Connect, finish TLS, send HELLO + the stream request.  Returns (conn, parser, early events).

        Raises SessionError (code None) when the connection or TLS fails.
        """
        request = proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD) + proto.frame(kind, os.fsencode(path))
        conn, early = self.dial(lambda: request)
        parser = proto.FrameParser(proto.FROM_SERVER)
        try:
            events = [event for chunk in early for event in parser.feed(chunk)]
        except proto.ProtocolError as exc:
            conn.close()
            raise SessionError("connection to %s failed: %s" % (self, exc))
        return conn, parser, events


class Backoff:
    """Exponential delay between reconnection attempts: 0.1 s doubling up to a cap, reset on success."""

    def __init__(self, first=0.1, cap=5.0):
        self.first = first
        self.cap = cap
        self.delay = first

    def next(self):
        delay = self.delay
        self.delay = min(self.cap, self.delay * 2)
        return delay

    def reset(self):
        self.delay = self.first


# --------------------------------------------------------------------------
# The pump


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
            self.t_send, self.t_recv, self.s_data, self.s_stop = proto.T_STDIN, proto.T_STDOUT, b"\x00", b"\x01"
        else:
            self.t_send, self.t_recv, self.s_data, self.s_stop = proto.T_STDOUT, proto.T_STDIN, b"\x01", b"\x00"

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
        room = proto.CHUNK
        if self.client:
            room = min(room, proto.STDIN_WINDOW - self.in_flight)
        try:
            data = os.read(self.rfd, room)
        except BlockingIOError:
            return
        except OSError:
            self.reset = True
            data = b""
        if not data:
            self.shut_read()
            self.conn.send(proto.frame(proto.T_EOF, self.s_data))
            return
        self.sent += len(data)
        if self.client:
            self.in_flight += len(data)
        self.conn.send(proto.header(self.t_send, len(data)) + data)

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
                self.conn.send(proto.frame(proto.T_EOF, self.s_stop))
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
            if ftype == proto.T_ERROR and self.client:
                code = payload[0] if payload else 255
                raise SessionError(payload[1:].decode("utf-8", "replace"), code)
            if not self.hello:
                if ftype != proto.T_HELLO or payload[:len(proto.MAGIC)] != proto.MAGIC:
                    raise proto.ProtocolError("the server did not answer with a rexec HELLO")
                if payload[len(proto.MAGIC):len(proto.MAGIC) + 1] != bytes((proto.VERSION,)):
                    raise proto.ProtocolError("the server speaks another protocol version")
                self.hello = True
            elif ftype == self.t_recv:
                self.data(payload)
            elif ftype == proto.T_EOF:
                stream = bytes(payload[:1])
                if stream == self.s_stop:
                    # The peer's data ended (its "data" stream number is our "stop" one, and vice versa).
                    self.peer_eof = True
                    if not self.out_buf:
                        self.shut_write()
                elif stream == self.s_data:
                    self.shut_read()
                else:
                    raise proto.ProtocolError("EOF for unknown stream")
            elif self.client and ftype == proto.T_ACK:
                self.in_flight -= int.from_bytes(payload[:4], "big")
            elif self.client and ftype == proto.T_READY:
                if self.on_ready is not None:
                    self.on_ready()
            elif self.client and ftype == proto.T_NOTICE:
                pass
            elif self.client and ftype == proto.T_EXIT:
                self.exit_value = int.from_bytes(payload[1:5], "big") if len(payload) >= 5 else END_RESET
                return
            else:
                raise proto.ProtocolError("unexpected frame type 0x%02x in a stream session" % ftype)

    def data(self, payload):
        if self.peer_eof:
            raise proto.ProtocolError("data after EOF")
        if not payload:
            return
        if not self.writing:
            self.unacked += len(payload)          # nobody to deliver to: drop (the server still acknowledges)
            return
        self.out_buf.append(payload)
        self.out_bytes += len(payload)
        if not self.client and self.out_bytes > proto.STDIN_WINDOW:
            raise proto.ProtocolError("client overran the STDIN window")

    # -- loop -------------------------------------------------------------------

    def run(self, events=()):
        """Relay until the session ends.  Returns ("exit", value) (client: the server's EXIT; server: EXIT sent)
        or ("stopped", reason) from check().  Raises ConnectionLost, ssl.SSLError, ProtocolError, SessionError."""
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
                    conn.send(proto.frame(proto.T_EXIT, bytes((proto.EXIT_CODE,)) + value.to_bytes(4, "big")))
                    self.result = ("exit", value)
                    break
            want = {}
            if self.exit_value is None and (not self.client or self.out_bytes < IN_HIGH):
                want[sockfd] = POLLIN
            if conn.out and self.exit_value is None:
                want[sockfd] = want.get(sockfd, 0) | POLLOUT
            if self.reading and (self.in_flight < proto.STDIN_WINDOW if self.client else conn.pending < OUT_HIGH):
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
                        conn.send(proto.frame(proto.T_EXIT, bytes((proto.EXIT_CODE,)) + END_REMOVED.to_bytes(4, "big")))
                    self.result = ("stopped", reason)
            elif self.check is None:
                next_check = time.monotonic() + CHECK_INTERVAL
        return self.result

    def send_ack(self):
        if self.unacked:
            self.conn.send(proto.frame(proto.T_ACK, self.unacked.to_bytes(4, "big")))
            self.unacked = 0


# --------------------------------------------------------------------------
# Services


class PeerState:
    """Logs changes of the peer's reachability once, not once per failed session."""

    def __init__(self, peer, log):
        self.peer = peer
        self.log = log
        self.lock = threading.Lock()
        self.down = False

    def failed(self, message):
        with self.lock:
            was, self.down = self.down, True
        if not was:
            self.log("peer %s unreachable: %s (retrying with backoff)" % (self.peer, message))

    def ok(self):
        with self.lock:
            was, self.down = self.down, False
        if was:
            self.log("peer %s reachable again" % self.peer)


class Stopper:
    """A flag threads check between blocking steps, plus an interruptible sleep."""

    def __init__(self):
        self.event = threading.Event()

    def stopped(self):
        return self.event.is_set()

    def sleep(self, seconds):
        return self.event.wait(seconds)

    def stop(self):
        self.event.set()


def same_node(path, ident):
    """True while path is still the node identified by (st_dev, st_ino)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == ident


def fifo_ident(path):
    """(st_dev, st_ino) of the fifo at path (not following symlinks), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISFIFO(st.st_mode):
        return None
    return (st.st_dev, st.st_ino)
