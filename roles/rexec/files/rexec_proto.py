# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pieces shared by the rexec client and rexec_server.

Wire protocol version 1 (see docs/rexec-protocol.md), address parsing, TLS
contexts and a non-blocking framed connection that works the same over plain
sockets and over TLS (an ssl.SSLObject driven through memory BIOs, so one
thread can multiplex the socket with pipes using poll()).

Python 3.9+ standard library only; kept cheap to import because the client's
start-up time matters.
"""

import os
import select
import socket
import ssl
import time

# The C module behind `signal`: same functions and SIG* constants, without the
# enum classes whose creation costs the client most of a millisecond.
import _signal as signal

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


def set_tcp_options(sock):
    """No Nagle delay for small frames; keepalive so dead peers are noticed.

    An idle connection is given up after 30 s + 8 unanswered probes 30 s
    apart (4.5 min): a link cut of a minute or two must not end the sessions
    (a container's output relay, a shim's connection), which carry on when
    the link is back; a peer that rebooted answers the first probe with a
    reset.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 30), ("TCP_KEEPCNT", 8)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


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


# --------------------------------------------------------------------------
# The rexec client (here rather than in the rexec script so that its byte code
# is cached: a script is compiled from source at every start).

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
CLIENT_CONFIG = "/etc/rexec/client.json"
DEFAULT_PID_DIR = "/var/run/rexec/pids"
FORWARDED = {
    signal.SIGINT: b"INT", signal.SIGTERM: b"TERM", signal.SIGHUP: b"HUP",
    signal.SIGQUIT: b"QUIT", signal.SIGUSR1: b"USR1", signal.SIGUSR2: b"USR2",
}
PDEATH_SIGNAL = getattr(signal, "SIGRTMIN", 34) + 3
PR_SET_PDEATHSIG = 1
PDEATH_DELAY = 0.1
EXIT_FAILURE = 255


class Failure(Exception):
    """rexec itself failed: message for stderr, exit status."""

    def __init__(self, message, code=EXIT_FAILURE):
        Exception.__init__(self, message)
        self.message = message
        self.code = code


class Interrupted(Exception):
    """A signal arrived before the request went out."""


def client_say(message):
    say("rexec", message)


class Client:
    def __init__(self, argv):
        self.argv = argv
        self.env = os.environ
        self.conn = None
        self.connecting = True
        self.pid_file = None
        self.ppid = os.getppid()
        self.in_write = False
        self.forwarded_early = {}
        self.broken = set()
        self.sig_r = None
        self.stdin_open = True
        self.in_flight = 0
        self.exit_code = None
        self.server_hello = False
        self.label = "?"
        self.parser = FrameParser(FROM_SERVER)

    # -- set-up ---------------------------------------------------------------

    def on_signal(self, signum, _frame):
        # Every signal also reaches sig_r through the wakeup fd and is
        # normally forwarded from the poll loop.  Two cases cannot wait:
        if self.in_write:
            # Blocked writing our stdout/stderr (slow reader): forward now.
            # Safe here: the main thread is inside os.writev(), not inside
            # any TLS or queue operation.  Raising instead could not tell
            # whether the write had completed.
            name = FORWARDED.get(signum)
            if name is not None:
                self.forwarded_early[signum] = self.forwarded_early.get(signum, 0) + 1
                self.conn.send(frame(T_SIGNAL, name))
                try:
                    self.conn.flush()
                except ConnectionLost:
                    pass
            elif signum == PDEATH_SIGNAL and os.getppid() != self.ppid:
                self.in_write = False
                self.parent_died()
        elif self.connecting and signum in FORWARDED:
            raise Interrupted(signum)

    def setup_signals(self):
        self.sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        for signum in FORWARDED:
            signal.signal(signum, self.on_signal)
        try:
            signal.signal(PDEATH_SIGNAL, self.on_signal)
        except (OSError, ValueError):
            pass

    def setup_pdeathsig(self):
        """Ask the kernel for a signal when our parent dies (Linux); getppid() polling covers the rest."""
        if not os.uname().sysname == "Linux":
            return
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, PDEATH_SIGNAL, 0, 0, 0)
        except (OSError, AttributeError, ImportError):
            pass

    def connect(self):
        env = self.env
        try:
            addr = resolve_address(env, env.get("REXEC_CONFIG") or CLIENT_CONFIG)
        except ValueError as exc:
            raise Failure(str(exc))
        self.label = str(addr)
        try:
            timeout = float(env.get("REXEC_HANDSHAKE_TIMEOUT") or 10)
        except ValueError:
            raise Failure("REXEC_HANDSHAKE_TIMEOUT must be a number of seconds")
        context = None
        server_name = None
        if addr.kind == "tcp":
            try:
                tls = tls_settings(env)
            except ValueError as exc:
                raise Failure(str(exc))
            if tls is not None:
                try:
                    context = make_context(False, *tls)
                except (OSError, ssl.SSLError) as exc:
                    raise Failure("cannot load TLS files (REXEC_TLS_CA/CERT/KEY): %s" % exc)
                server_name = env.get("REXEC_TLS_SERVER_NAME") or addr.host
                if server_name.isascii():
                    server_name = server_name.encode("ascii")   # bytes: spares ssl the idna codec import
            elif not insecure(env):
                raise Failure("TLS is not configured for %s: set REXEC_TLS_CA (CA of the server's certificate), "
                              "REXEC_TLS_CERT and REXEC_TLS_KEY (this client's certificate and key), or "
                              "REXEC_INSECURE=1 for a plain-TCP test server" % addr)
        try:
            if addr.kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                try:
                    sock.connect(addr.path)
                except OSError:
                    sock.close()
                    raise
            else:
                sock = tcp_connect(addr.host, addr.port, timeout)
                set_tcp_options(sock)
        except socket.gaierror as exc:
            raise Failure("cannot resolve %s: %s" % (addr.host, exc.strerror))
        except OSError as exc:
            raise Failure("cannot connect to %s: %s" % (addr, exc.strerror or exc))
        self.conn = Conn(sock, context, server_hostname=server_name, reuse_buffers=True)
        return timeout

    def handshake(self, timeout):
        """Finish TLS; returns plaintext that arrived together with the handshake."""
        conn = self.conn
        if conn.handshaken:
            return []
        deadline = time.monotonic() + timeout
        poller = select.poll()
        early = []
        conn.handshake()
        while not conn.handshaken:
            conn.flush()
            poller.register(conn.fileno(), POLLIN | (POLLOUT if conn.out else 0))
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000.0):
                raise Failure("TLS handshake with %s timed out" % self.label)
            early.extend(conn.recv())
        return early

    def request_bytes(self):
        try:
            cwd = os.getcwdb()
        except OSError:
            cwd = b"/"
        argv = [os.fsencode(arg) for arg in self.argv]
        env = [key + b"=" + value for key, value in os.environb.items()]
        request = encode_request(argv, env, cwd)
        if len(request) > MAX_REQUEST:
            raise Failure("arguments and environment too long for rexec (%d bytes; the limit is %d)"
                          % (len(request), MAX_REQUEST))
        return frame(T_HELLO, HELLO_PAYLOAD) + frame(T_REQUEST, request)

    # -- pid file -------------------------------------------------------------

    def write_pid_file(self, remote_pid):
        directory = self.env.get("REXEC_PID_DIR") or DEFAULT_PID_DIR
        path = os.path.join(directory, str(os.getpid()))
        try:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                os.makedirs(directory, 0o755, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                write_all(fd, str(remote_pid).encode("ascii"))
            finally:
                os.close(fd)
            self.pid_file = path
        except OSError as exc:
            # Not being able to record the pid must not break the command.  Only
            # root is expected to manage to; others are skipped silently.
            if os.geteuid() == 0:
                client_say("warning: cannot record the remote pid in %s: %s" % (path, exc.strerror))

    def remove_pid_file(self):
        if self.pid_file:
            try:
                os.unlink(self.pid_file)
            except OSError:
                pass
            self.pid_file = None

    # -- session ----------------------------------------------------------------

    def run(self):
        self.setup_signals()
        try:
            timeout = self.connect()
            early = self.handshake(timeout)
            self.conn.send(self.request_bytes())
            self.conn.flush()
        except Interrupted as exc:
            raise Failure("interrupted before the command was started", 128 + exc.args[0])
        except ConnectionLost as exc:
            raise Failure("connection to %s lost during the handshake: %s" % (self.label, exc))
        except ssl.SSLError as exc:
            raise Failure("TLS handshake with %s failed: %s" % (self.label, exc))
        except OSError as exc:
            raise Failure("connection to %s failed: %s" % (self.label, exc))
        self.connecting = False
        try:
            self.dispatch(early)
            return self.loop()
        finally:
            self.remove_pid_file()

    def loop(self):
        conn = self.conn
        sockfd = conn.fileno()
        poller = select.poll()
        masks = {}

        def want(fd, mask):
            if masks.get(fd, 0) != mask:
                if mask:
                    poller.register(fd, mask)
                    masks[fd] = mask
                else:
                    poller.unregister(fd)
                    del masks[fd]

        want(self.sig_r, POLLIN)
        try:
            os.fstat(0)
        except OSError:
            self.stdin_eof()
        # PR_SET_PDEATHSIG needs ctypes, which costs milliseconds to import:
        # arm it only once the command has run for PDEATH_DELAY.  Until then
        # (and always, as a fallback) the loop polls getppid().
        arm_at = time.monotonic() + PDEATH_DELAY
        while self.exit_code is None:
            want(sockfd, POLLIN | (POLLOUT if conn.out else 0))
            want(0, POLLIN if self.stdin_open and self.in_flight < STDIN_WINDOW else 0)
            if arm_at is not None and time.monotonic() >= arm_at:
                arm_at = None
                self.setup_pdeathsig()
            ready = poller.poll(PDEATH_DELAY * 1000 if arm_at is not None else 1000)
            if os.getppid() != self.ppid:
                return self.parent_died()
            for fd, event in ready:
                if fd == sockfd:
                    if event & POLLOUT:
                        conn.flush()
                    if event & ~POLLOUT:
                        self.read_socket()
                        if self.exit_code is not None:
                            break
                elif fd == 0:
                    self.read_stdin()
                elif fd == self.sig_r:
                    self.forward_signals()
            if conn.out:
                conn.flush()
        return self.finish()

    def read_socket(self):
        try:
            chunks = self.conn.recv()
        except ConnectionLost as exc:
            raise Failure("connection to %s lost before the command finished (%s)" % (self.label, exc))
        except ssl.SSLError as exc:
            raise Failure("TLS error talking to %s: %s" % (self.label, exc))
        self.dispatch(chunks)

    def dispatch(self, chunks):
        events = []
        try:
            for chunk in chunks:
                events.extend(self.parser.feed(chunk))
        except ProtocolError as exc:
            raise Failure("protocol error from %s: %s" % (self.label, exc))
        out = []
        err = []
        for ftype, payload in events:
            if ftype == T_STDOUT:
                out.append(payload)
            elif ftype == T_STDERR:
                err.append(payload)
            elif ftype == T_ERROR:
                self.flush_output(out, err)
                out, err = [], []
                code = payload[0] if payload else EXIT_FAILURE
                raise Failure(payload[1:].decode("utf-8", "replace"), code)
            elif not self.server_hello:
                if ftype != T_HELLO or payload[:len(MAGIC)] != MAGIC:
                    raise Failure("protocol error: %s did not answer with a rexec HELLO" % self.label)
                if payload[len(MAGIC):len(MAGIC) + 1] != bytes((VERSION,)):
                    raise Failure("protocol error: %s speaks another protocol version" % self.label)
                self.server_hello = True
            elif ftype == T_PID:
                self.write_pid_file(int.from_bytes(payload[:4], "big"))
            elif ftype == T_ACK:
                self.in_flight -= int.from_bytes(payload[:4], "big")
            elif ftype == T_EOF:
                if payload[:1] == b"\x00":
                    self.stdin_open = False
            elif ftype == T_NOTICE:
                self.flush_output(out, err)
                out, err = [], []
                client_say(payload.decode("utf-8", "replace"))
            elif ftype == T_EXIT:
                self.exit_code = self.exit_status(payload)
                break
            else:
                raise Failure("protocol error: unexpected frame type 0x%02x from %s" % (ftype, self.label))
        self.flush_output(out, err)

    def exit_status(self, payload):
        if len(payload) < 5:
            raise Failure("protocol error: short EXIT frame")
        value = int.from_bytes(payload[1:5], "big")
        if payload[0] == EXIT_SIGNAL:
            name = payload[5:].decode("ascii", "replace")
            local = getattr(signal, "SIG" + name, None) if name.isalnum() else None
            return 128 + (int(local) if local is not None else value)
        return value & 0xFF

    def flush_output(self, out, err):
        """Write received output synchronously (the socket buffer is reused next)."""
        if out:
            self.write_out(1, out)
        if err:
            self.write_out(2, err)

    def write_out(self, fd, pieces):
        if fd in self.broken:
            return
        pieces = list(pieces)
        while pieces:
            try:
                self.in_write = True
                written = os.writev(fd, pieces[:1024])
            except BlockingIOError:
                # Someone made our stdout non-blocking: wait until it drains.
                select.select([], [fd], [])
                continue
            except OSError:
                # EPIPE & co: our reader is gone.  Let the remote command see EPIPE too.
                self.in_write = False
                self.broken.add(fd)
                self.conn.send(frame(T_EOF, bytes((fd,))))
                return
            finally:
                self.in_write = False
            while pieces and written >= len(pieces[0]):
                written -= len(pieces[0])
                pieces.pop(0)
            if written:
                pieces[0] = pieces[0][written:]

    def read_stdin(self):
        try:
            data = os.read(0, min(CHUNK, STDIN_WINDOW - self.in_flight))
        except OSError:
            data = b""
        if not data:
            self.stdin_eof()
            return
        self.in_flight += len(data)
        self.conn.send(header(T_STDIN, len(data)))
        self.conn.send(data)

    def stdin_eof(self):
        self.stdin_open = False
        self.conn.send(frame(T_EOF, b"\x00"))

    def forward_signals(self):
        try:
            received = os.read(self.sig_r, 4096)
        except OSError:
            return
        for signum in received:
            name = FORWARDED.get(signum)
            if self.forwarded_early.get(signum):
                self.forwarded_early[signum] -= 1      # already sent by on_signal()
            elif name is not None:
                self.conn.send(frame(T_SIGNAL, name))
            elif signum == PDEATH_SIGNAL and os.getppid() != self.ppid:
                self.parent_died()

    def parent_died(self):
        """Our parent is gone: end the remote command (SIGKILL + close) and exit."""
        try:
            self.conn.send(frame(T_SIGNAL, b"KILL"))
            self.conn.flush()
        except (OSError, ConnectionLost):
            pass
        self.conn.close()
        raise Failure("parent process exited; remote command killed")

    def finish(self):
        self.conn.close()
        return self.exit_code


def client_main(argv):
    """The rexec program; never returns (os._exit skips interpreter clean-up, which is slow)."""
    code = _client_run(argv)
    os._exit(code)


def _client_run(argv):
    if not argv:
        client_say("usage: rexec COMMAND [ARG...]   (server from CMD_NET_ADDR=tcp://HOST:PORT or unix:///path; see docs/rexec.md)")
        return EXIT_FAILURE
    client = Client(argv)
    try:
        return client.run()
    except Failure as exc:
        client_say(exc.message)
        return exc.code
    except Exception as exc:  # never a traceback: one line and 255
        client_say("internal error: %r" % (exc,))
        return EXIT_FAILURE
