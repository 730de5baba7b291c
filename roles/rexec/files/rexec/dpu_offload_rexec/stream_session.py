# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stream session on the server (protocol 1.1: CONNECT, FIFO_READ, FIFO_WRITE; docs/rexec-protocol.md, section 7).

StreamSession checks the path against the server's REXEC_SOCKET_ALLOW or
REXEC_FIFO_ALLOW (policy_access), opens the socket or fifo it names without
following a symlink put in the way, answers READY and runs the pump until
either side is done.  A FIFO_READ may read through a spool (REXEC_FIFO_SPOOL).
Exactly one audit line.
"""

import errno
import os
import select
import socket
import ssl
import stat

from . import wire
from .audit import Refused, log, q
from .common import fifo_ident, same_node
from .connection import linger_close
from .policy_access import path_allowed
from .pump import END_OK, Pump
from .spool import Spool
from .wire import ConnectionLost, ProtocolError, error_frame

FIFO_RETRY = 0.05           # seconds between attempts to open a fifo that has no reader yet


def open_socket_path(path):
    """O_PATH descriptor of the unix socket at path, refusing any symlink on the way.

    Each directory is opened relative to the one before with O_NOFOLLOW, and
    the caller connects through /proc/self/fd/N: the object checked is the
    object connected to, whatever is renamed meanwhile.  Raises OSError
    (ELOOP for a symlink, ENOTSOCK for something else than a socket).
    """
    parts = path.split(b"/")[1:]
    if not path.startswith(b"/") or not parts or any(part in (b"", b".", b"..") for part in parts):
        raise OSError(errno.EINVAL, "not a clean absolute path")
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(b"/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ENOTDIR and stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                    raise OSError(errno.ELOOP, "symlink in the path")
                raise
            os.close(fd)
            fd = child
        target = os.open(parts[-1], flags, dir_fd=fd)
    finally:
        os.close(fd)
    mode = os.fstat(target).st_mode
    if not stat.S_ISSOCK(mode):
        os.close(target)
        if stat.S_ISLNK(mode):
            raise OSError(errno.ELOOP, "symlink in the path")
        raise OSError(errno.ENOTSOCK, "not a socket")
    return target


# --------------------------------------------------------------------------
# Sessions


class StreamSession:
    """CONNECT / FIFO_READ / FIFO_WRITE (protocol 1.1): relay a local unix socket or fifo over the connection."""

    def __init__(self, session, kind, payload):
        self.session = session
        self.server = session.server
        self.conn = session.conn
        self.kind = kind
        self.name = wire.STREAM_REQUESTS[kind]
        self.path = payload
        self.real = None
        self.ident = None
        self.spool = None

    def audit(self, status, pump=None):
        line = "audit peer=%s %s=%s status=%s" % (self.session.who, self.name, q(self.path), status)
        if pump is not None:
            line += " sent=%d received=%d" % (pump.sent, pump.received)
        if self.spool is not None and self.spool.dropped:
            line += " dropped=%d dropped_lines=%d" % (self.spool.dropped, self.spool.dropped_lines)
        log(line)

    def refuse(self, code, message, status):
        self.audit(status)
        self.conn.send(error_frame(code, message))
        linger_close(self.conn)

    def serve(self, events):
        path = self.path
        if self.kind == wire.T_CONNECT:
            allow, setting = self.server.settings.socket_allow, "REXEC_SOCKET_ALLOW"
        else:
            allow, setting = self.server.settings.fifo_allow, "REXEC_FIFO_ALLOW"
        if self.kind == wire.T_CONNECT:
            # Checked as written: open_socket_path() refuses symlinks, so this is the object connected to.
            real = path_allowed(path, allow, resolve=False) if b"\0" not in path else None
        else:
            real = path_allowed(path, allow) if b"\0" not in path else None
        if real is None:
            self.refuse(126, "%s: not allowed by the server's %s" % (os.fsdecode(path), setting), "refused:allowlist(126)")
            return
        self.real = real
        try:
            if self.kind == wire.T_CONNECT:
                sock = self.connect()
                pump = Pump(self.conn, self.session.parser, "server", rfd=sock.fileno(), wfd=sock.fileno(), sock=sock)
            else:
                fd, events = self.open_fifo(events)
                if fd is None:
                    return
                if self.kind == wire.T_FIFO_READ:
                    if self.server.settings.fifo_spool:
                        # The fifo's writer (a container's stdout) must never wait on the peer or the link.
                        self.spool = Spool(fd, self.server.settings.fifo_spool, os.fsdecode(self.path), log)
                        fd = self.spool.rfd
                    pump = Pump(self.conn, self.session.parser, "server", rfd=fd, check=self.check_node)
                else:
                    pump = Pump(self.conn, self.session.parser, "server", wfd=fd, check=self.check_node)
        except Refused as exc:
            self.refuse(exc.code, exc.message, exc.status)
            return
        # Whatever ends the session, the socket or fifo is closed: a fifo fd
        # left open would keep its directory's mount busy for good.
        try:
            self.run_pump(pump, events)
        finally:
            pump.close()
            if self.spool is not None:
                self.spool.close()

    def run_pump(self, pump, events):
        self.conn.send(wire.frame(wire.T_READY))
        try:
            result = pump.run(events)
        except (ConnectionLost, ssl.SSLError, ProtocolError) as exc:
            if self.server.stopping:
                self.audit("server-stopped", pump)
            elif isinstance(exc, ConnectionLost):
                self.audit("disconnected", pump)
            else:
                self.audit("protocol-error", pump)
                log("session from %s: %s" % (self.session.who, exc))
            return
        pump.close()
        if result[0] == "stopped":
            self.audit("removed", pump)
        else:
            self.audit("closed" if result[1] == END_OK else "reset", pump)
        linger_close(self.conn)

    def connect(self):
        try:
            target = open_socket_path(self.real)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused(126, "%s: refused: the path has a symlink in it" % os.fsdecode(self.path),
                              "refused:symlink(126)")
            code = 127 if exc.errno in (errno.ENOENT, errno.ENOTSOCK, errno.ENOTDIR) else 255
            raise Refused(code, "%s: cannot connect: %s" % (os.fsdecode(self.path), exc.strerror),
                          "failed:connect(%s)" % errno.errorcode.get(exc.errno, exc.errno))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5.0)
        try:
            sock.connect(b"/proc/self/fd/%d" % target)
        except OSError as exc:
            sock.close()
            code = 127 if exc.errno in (errno.ENOENT, errno.ECONNREFUSED) else 255
            raise Refused(code, "%s: cannot connect: %s" % (os.fsdecode(self.path), exc.strerror),
                          "failed:connect(%s)" % errno.errorcode.get(exc.errno, exc.errno))
        finally:
            os.close(target)
        sock.setblocking(False)
        return sock

    def check_node(self):
        if not same_node(self.real, self.ident):
            return "removed"
        return None

    def open_fifo(self, events):
        """Open the fifo (waiting for a reader for FIFO_WRITE); returns (fd, events) or (None, None) when the session ended."""
        self.ident = fifo_ident(self.real)
        if self.ident is None:
            raise Refused(127, "%s: no such fifo on the server" % os.fsdecode(self.path), "refused:not-a-fifo(127)")
        # O_NOFOLLOW: a fifo swapped for a symlink is not even opened (the inode check below covers the directories).
        if self.kind == wire.T_FIFO_READ:
            flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW
        else:
            flags = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW
        events = list(events)
        poller = select.poll()
        poller.register(self.conn.fileno(), select.POLLIN)
        while True:
            try:
                fd = os.open(self.real, flags)
            except OSError as exc:
                if exc.errno != errno.ENXIO:       # ENXIO: no reader yet (FIFO_WRITE); wait for one
                    raise Refused(255, "%s: cannot open: %s" % (os.fsdecode(self.path), exc.strerror),
                                  "failed:open(%s)" % errno.errorcode.get(exc.errno, exc.errno))
                fd = None
            if fd is not None:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != self.ident:
                    os.close(fd)
                    raise Refused(255, "%s: replaced while opening" % os.fsdecode(self.path), "failed:replaced")
                return fd, events
            if self.check_node() is not None:
                self.refuse(255, "%s: fifo removed before a reader opened it" % os.fsdecode(self.path), "removed")
                return None, None
            try:
                if poller.poll(FIFO_RETRY * 1000.0):
                    for chunk in self.conn.recv():
                        events.extend(self.session.parser.feed(chunk))
            except (ConnectionLost, ssl.SSLError, ProtocolError):
                self.audit("disconnected")
                return None, None
