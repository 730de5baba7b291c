# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pieces shared by the rexec client (rexec_client.py) and rexec_server.

Wire protocol version 1 (see docs/rexec-protocol.md), address parsing, TLS
contexts and a non-blocking framed connection that works the same over plain
sockets and over TLS (an ssl.SSLObject driven through memory BIOs, so one
thread can multiplex the socket with pipes using poll()).

Python 3.9+ standard library only; kept cheap to import because the client's
start-up time matters.
"""

import os
import socket
import ssl

VERSION = 1
MINOR = 1                   # 1.1: CONNECT / FIFO_READ / FIFO_WRITE stream sessions (a 1.0 peer ignores this byte)
MAGIC = b"REXEC"
HELLO_PAYLOAD = MAGIC + bytes((VERSION, MINOR))

# Frame types.
T_HELLO = 0x01
T_REQUEST = 0x02
T_PID = 0x03
T_CONNECT = 0x04            # 1.1: relay a unix socket of the server's machine
T_FIFO_READ = 0x05          # 1.1: read a fifo on the server's machine
T_FIFO_WRITE = 0x06         # 1.1: write a fifo on the server's machine
T_READY = 0x07              # 1.1: the server opened the socket / fifo
T_STDIN = 0x10
T_STDOUT = 0x11
T_STDERR = 0x12
T_EOF = 0x13
T_ACK = 0x14
T_SIGNAL = 0x20
T_EXIT = 0x30
T_ERROR = 0x31
T_NOTICE = 0x32

HEADER_LEN = 5
MAX_DATA = 1 << 20          # STDIN / STDOUT / STDERR payload limit
MAX_REQUEST = 256 * 1024    # REQUEST payload limit (argv + env + cwd; the server passes only a few variables on)
MAX_CONTROL = 4096          # every other frame
CHUNK = 256 * 1024          # read size for pipes and sockets
STDIN_WINDOW = 2 << 20      # unacknowledged STDIN bytes a client may have in flight

# Frames each side accepts, with their payload limits.
FROM_CLIENT = {
    T_HELLO: MAX_CONTROL, T_REQUEST: MAX_REQUEST, T_STDIN: MAX_DATA,
    T_EOF: MAX_CONTROL, T_SIGNAL: MAX_CONTROL,
    T_CONNECT: MAX_CONTROL, T_FIFO_READ: MAX_CONTROL, T_FIFO_WRITE: MAX_CONTROL,
}
FROM_SERVER = {
    T_HELLO: MAX_CONTROL, T_PID: MAX_CONTROL, T_STDOUT: MAX_DATA, T_STDERR: MAX_DATA,
    T_EOF: MAX_CONTROL, T_ACK: MAX_CONTROL, T_EXIT: MAX_CONTROL, T_ERROR: MAX_CONTROL,
    T_NOTICE: MAX_CONTROL, T_READY: MAX_CONTROL,
}
STREAM_REQUESTS = {T_CONNECT: "connect", T_FIFO_READ: "fifo_read", T_FIFO_WRITE: "fifo_write"}
STREAMED = frozenset((T_STDIN, T_STDOUT, T_STDERR))

# Exit kinds in an EXIT frame.
EXIT_CODE = 0
EXIT_SIGNAL = 1

# Signals a client may ask for, by name (numbers differ between architectures).
SIGNAL_NAMES = ("HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TERM", "CONT", "STOP", "TSTP", "WINCH", "ALRM")

DEFAULT_PORT = 7777


class ProtocolError(Exception):
    """The peer sent something that is not valid protocol version 1."""


class ConnectionLost(Exception):
    """The peer closed the connection or the socket failed."""


def frame(ftype, payload=b""):
    """Encode one frame: type byte, 32-bit big-endian length, payload."""
    return bytes((ftype,)) + len(payload).to_bytes(4, "big") + payload


def header(ftype, length):
    """Encode only a frame header (the payload is sent separately)."""
    return bytes((ftype,)) + length.to_bytes(4, "big")


def _put_str(parts, value):
    parts.append(len(value).to_bytes(4, "big"))
    parts.append(value)


def encode_request(argv, env, cwd):
    """REQUEST payload: argc, envc, then cwd, argv[], env[] as length-prefixed byte strings."""
    parts = [len(argv).to_bytes(4, "big"), len(env).to_bytes(4, "big")]
    _put_str(parts, cwd)
    for arg in argv:
        _put_str(parts, arg)
    for entry in env:
        _put_str(parts, entry)
    return b"".join(parts)


def decode_request(payload):
    """Inverse of encode_request(); returns (argv, env, cwd) as lists of bytes / bytes."""
    view = memoryview(payload)
    end = len(view)
    if end < 8:
        raise ProtocolError("REQUEST too short")
    argc = int.from_bytes(view[0:4], "big")
    envc = int.from_bytes(view[4:8], "big")
    if argc < 1:
        raise ProtocolError("REQUEST has an empty argv")
    pos = 8
    items = []
    for _index in range(1 + argc + envc):
        if pos + 4 > end:
            raise ProtocolError("REQUEST truncated")
        length = int.from_bytes(view[pos:pos + 4], "big")
        pos += 4
        if pos + length > end:
            raise ProtocolError("REQUEST truncated")
        value = bytes(view[pos:pos + length])
        if b"\0" in value:
            raise ProtocolError("REQUEST string contains NUL")
        items.append(value)
        pos += length
    if pos != end:
        raise ProtocolError("REQUEST has trailing bytes")
    return items[1:1 + argc], items[1 + argc:], items[0]


class FrameParser:
    """Incremental frame decoder.

    feed() returns a list of (type, payload) events.  STDIN/STDOUT/STDERR
    payloads are handed out in pieces as they arrive (memoryviews of the input)
    so large frames are never reassembled; other frames arrive whole as bytes.
    """

    def __init__(self, accepted, reserve=None):
        self._accepted = accepted
        # reserve(length) -> bool: asked before a whole frame of that length
        # is buffered (the server bounds what all its connections hold).
        self._reserve = reserve
        self._hdr = bytearray()
        self._body = None
        self._fill = 0
        self._type = None
        self._rem = 0
        self._streamed = False

    def idle(self):
        """True when no partial frame is buffered."""
        return self._type is None and not self._hdr

    def feed(self, data):
        events = []
        view = memoryview(data)
        pos = 0
        end = len(view)
        while pos < end:
            if self._type is None:
                take = view[pos:pos + HEADER_LEN - len(self._hdr)]
                self._hdr += take
                pos += len(take)
                if len(self._hdr) < HEADER_LEN:
                    break
                ftype = self._hdr[0]
                length = int.from_bytes(self._hdr[1:5], "big")
                self._hdr.clear()
                limit = self._accepted.get(ftype)
                if limit is None:
                    raise ProtocolError("unexpected frame type 0x%02x" % ftype)
                if length > limit:
                    raise ProtocolError("frame type 0x%02x too long (%d bytes)" % (ftype, length))
                if length == 0:
                    events.append((ftype, b""))
                    continue
                self._type = ftype
                self._rem = length
                self._streamed = ftype in STREAMED
                if not self._streamed:
                    if self._reserve is not None and not self._reserve(length):
                        raise ProtocolError("server busy: too many large requests in progress; try again later")
                    # One buffer of the announced size, filled in place: no growing, no copy at the end.
                    self._body = bytearray(length)
                    self._fill = 0
                continue
            take = min(self._rem, end - pos)
            piece = view[pos:pos + take]
            pos += take
            self._rem -= take
            if self._streamed:
                events.append((self._type, piece))
            else:
                self._body[self._fill:self._fill + take] = piece
                self._fill += take
                if not self._rem:
                    body = self._body
                    self._body = None
                    # Small frames as bytes (callers compare and decode them); a big one (REQUEST) as is.
                    events.append((self._type, bytes(body) if len(body) <= MAX_CONTROL else body))
            if not self._rem:
                self._type = None
        return events


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


class Address:
    """A parsed CMD_NET_ADDR: tcp (host, port) or unix (path)."""

    def __init__(self, kind, host=None, port=None, path=None):
        self.kind = kind
        self.host = host
        self.port = port
        self.path = path

    def __str__(self):
        if self.kind == "unix":
            return "unix://" + self.path
        if ":" in self.host:
            return "tcp://[%s]:%d" % (self.host, self.port)
        return "tcp://%s:%d" % (self.host, self.port)


def parse_address(text):
    """Parse tcp://HOST:PORT, HOST:PORT, [V6]:PORT or unix:///path.  Raises ValueError."""
    text = text.strip()
    if text.startswith("unix://"):
        path = text[len("unix://"):]
        if not path.startswith("/"):
            raise ValueError("unix socket address needs an absolute path: %r" % text)
        return Address("unix", path=path)
    rest = text
    if rest.startswith("tcp://"):
        rest = rest[len("tcp://"):]
    elif "://" in rest:
        raise ValueError("unsupported address scheme in %r (use tcp:// or unix://)" % text)
    rest = rest.rstrip("/")
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or not tail.startswith(":"):
            raise ValueError("bad IPv6 address %r (expected [ADDR]:PORT)" % text)
        port = tail[1:]
    else:
        host, sep, port = rest.rpartition(":")
        if not sep:
            raise ValueError("address %r has no port (expected HOST:PORT)" % text)
        if ":" in host:
            raise ValueError("IPv6 address in %r must be written in brackets: [ADDR]:PORT" % text)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("bad port in address %r" % text)
    if not host:
        raise ValueError("address %r has no host" % text)
    return Address("tcp", host=host, port=int(port))


def address_from_config(path):
    """Upstream-style {"Protocol": "tcp", "Ipaddr": "...", "Port": "7777"} file."""
    import json
    with open(path, "rb") as handle:
        conf = json.loads(handle.read().decode("utf-8"))
    proto = str(conf.get("Protocol", "tcp")).lower()
    addr = str(conf.get("Ipaddr", ""))
    if proto == "unix":
        return parse_address("unix://" + addr)
    if proto != "tcp":
        raise ValueError("%s: unsupported Protocol %r" % (path, proto))
    port = str(conf.get("Port", DEFAULT_PORT))
    if ":" in addr:
        addr = "[%s]" % addr
    return parse_address("%s:%s" % (addr, port))


def resolve_address(env, config_path):
    """Address from CMD_NET_ADDR, else from the JSON config file.  Raises ValueError."""
    text = env.get("CMD_NET_ADDR")
    if text:
        return parse_address(text)
    if config_path and os.path.exists(config_path):
        try:
            return address_from_config(config_path)
        except (OSError, ValueError) as exc:
            raise ValueError("cannot use %s: %s" % (config_path, exc))
    raise ValueError("CMD_NET_ADDR is not set (e.g. CMD_NET_ADDR=tcp://HOST:%d or unix:///path) and %s does not exist"
                     % (DEFAULT_PORT, config_path))


def tls_settings(env):
    """(ca, cert, key) from REXEC_TLS_*; None when none is set.  Raises ValueError when partial."""
    names = ("REXEC_TLS_CA", "REXEC_TLS_CERT", "REXEC_TLS_KEY")
    values = [env.get(name) or None for name in names]
    if not any(values):
        return None
    missing = [name for name, value in zip(names, values) if not value]
    if missing:
        raise ValueError("incomplete TLS settings: %s not set (REXEC_TLS_CA, REXEC_TLS_CERT and REXEC_TLS_KEY are all needed)"
                         % ", ".join(missing))
    return values


def insecure(env):
    return env.get("REXEC_INSECURE", "") in ("1", "yes", "true")


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


def write_all(fd, data):
    """Blocking write of all of data to fd."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def say(prefix, message):
    """One line on stderr, written with a single write() so lines do not interleave."""
    line = "%s: %s\n" % (prefix, message)
    try:
        write_all(2, line.encode("utf-8", "backslashreplace"))
    except OSError:
        pass
