# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rexec wire protocol, version 1.1 (docs/rexec-protocol.md): frame types and limits, frames, the REQUEST payload.

No I/O here: FrameParser decodes what a connection (connection.Conn)
received, frame() and friends encode what it sends.  Failure is what a
session that could not be had, or was refused with an ERROR frame, raises
on the client side.  Kept cheap to import: the client's start-up time matters.
"""

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


class ProtocolError(Exception):
    """The peer sent something that is not valid protocol version 1."""


class ConnectionLost(Exception):
    """The peer closed the connection or the socket failed."""


class Failure(Exception):
    """What a client could not do, with a message (for stderr or a log) and a code.

    code: the status the server sent with its ERROR (126 refused, 127 not
    found, ...) or the exit status the rexec program ends with; None when
    the client itself failed (settings, connection, TLS), which the rexec
    program reports as 255.
    """

    def __init__(self, message, code=None):
        Exception.__init__(self, message)
        self.message = message
        self.code = code


def frame(ftype, payload=b""):
    """Encode one frame: type byte, 32-bit big-endian length, payload."""
    return bytes((ftype,)) + len(payload).to_bytes(4, "big") + payload


def header(ftype, length):
    """Encode only a frame header (the payload is sent separately)."""
    return bytes((ftype,)) + length.to_bytes(4, "big")


def error_frame(code, message):
    """ERROR: the status byte the client exits with, then a UTF-8 message."""
    return frame(T_ERROR, bytes((code,)) + message.encode("utf-8", "replace"))


def error_failure(payload):
    """The Failure an ERROR frame's payload stands for (255 when it carries no status)."""
    return Failure(bytes(payload[1:]).decode("utf-8", "replace"), payload[0] if payload else 255)


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
