# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A forwarded ttrpc connection that outlives its trip to the peer (rexec_forward --resume-ttrpc).

containerd treats a shim whose ttrpc connection closes as dead: it runs the
shim's `delete`, which kills the container. Through rexec that connection
crosses the pair, so a restart of either rexec_server or a cut link would
take every container with it. Here the local connection (containerd's) is
kept while its leg to the peer is dialled again, and the stream is cut and
rejoined at ttrpc frame boundaries only:

- frames from the local side are sent whole, and every frame of a stream
  that has no response yet is kept; after a reconnection those are sent
  again, in stream order, on the new leg (the shim sees them as new
  requests on a new connection, which ttrpc allows);
- frames from the peer are delivered whole; a frame cut by the break is
  dropped, and its request is sent again;
- a leg that the peer ends in order (the shim closed its socket: it exited)
  ends the local connection too, and so does a peer that refuses the
  connection (no such socket: the shim is gone) or that stays unreachable
  for longer than the resume window.

ttrpc frames: a 10-byte header (data length and stream id, big-endian
32-bit; message type, flags) and at most 4 MiB of data; type 1 is a
request, 2 the response that ends a stream, 3 stream data.
"""

import select
import socket
import ssl
import struct
import threading
import time

from .daemon import Backoff
from .pump import Pump
from .wire import ConnectionLost, Failure, ProtocolError

HEADER = struct.Struct(">IIBB")
MAX_DATA = 4 << 20
REQUEST, RESPONSE, DATA = 1, 2, 3


class FrameError(Exception):
    pass


class Frames:
    """Cuts a byte stream into whole ttrpc frames: feed() returns [(stream id, type, frame bytes)]."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data
        frames = []
        while len(self.buf) >= HEADER.size:
            length, sid, kind, _flags = HEADER.unpack_from(self.buf)
            if length > MAX_DATA:
                raise FrameError("ttrpc frame of %d bytes (at most %d)" % (length, MAX_DATA))
            end = HEADER.size + length
            if len(self.buf) < end:
                break
            frames.append((sid, kind, bytes(self.buf[:end])))
            del self.buf[:end]
        return frames

    def drop_partial(self):
        """Forget a frame cut short by a broken leg."""
        dropped = len(self.buf)
        self.buf.clear()
        return dropped


class Pending:
    """The local side's frames of every stream the peer has not answered yet, oldest stream first."""

    def __init__(self):
        self.streams = {}

    def sent(self, sid, kind, frame):
        if kind in (REQUEST, DATA) and (kind == REQUEST or sid in self.streams):
            self.streams.setdefault(sid, []).append(frame)

    def answered(self, sid, kind):
        if kind == RESPONSE:
            self.streams.pop(sid, None)

    def replay(self):
        return b"".join(b"".join(self.streams[sid]) for sid in sorted(self.streams))

    def __len__(self):
        return len(self.streams)


class Leg:
    """One trip to the peer: a rexec CONNECT session pumped in a thread, joined to us by a socket pair."""

    def __init__(self, conn, parser, events, on_ready):
        self.near, far = socket.socketpair()
        self.outcome = None            # "closed" (the peer ended in order), "refused", or "lost"
        self.detail = ""
        self.code = None               # the peer's error code when it refused
        self.answered = False          # a frame came back on this leg (it was a working one)
        far.setblocking(False)
        self.pump = Pump(conn, parser, "client", rfd=far.fileno(), wfd=far.fileno(), sock=far, on_ready=on_ready)
        self.conn = conn
        self.thread = threading.Thread(target=self.run, args=(events,), daemon=True)
        self.thread.start()

    def run(self, events):
        try:
            self.pump.run(events)
            self.outcome = "closed"
        except Failure as exc:
            self.outcome, self.detail, self.code = "refused", exc.message, exc.code
        except (ConnectionLost, ssl.SSLError, ProtocolError, OSError) as exc:
            self.outcome, self.detail = "lost", str(exc)
        finally:
            self.pump.close()
            self.conn.close()

    def finish(self):
        """Close our end (which ends the pump if the peer has not) and say how the leg ended."""
        self.near.close()
        self.thread.join(30)
        return self.outcome or "lost"


def _send_all(sock, data):
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            select.select([], [sock], [], 1.0)
            continue
        view = view[sent:]


# The peer's refusals that end the local connection: the socket is gone or
# not allowed (127, 126). Others (255: busy, a failed connect) are retried.
FINAL_REFUSALS = (126, 127)


def relay(local, dial, retry_for, resume_for, stopper, log, name):
    """Relay local (containerd's connection) over legs from dial() until it ends; see the module's text.

    dial() -> (conn, parser, events, on_ready), or raises Failure when the peer cannot be
    reached (a refusal by the peer comes back as a leg whose outcome is "refused"). The first leg is waited
    for up to retry_for seconds; after a loss the peer has resume_for seconds, counted from the last leg
    that worked (carried an answer), to come back.
    """
    pending = Pending()
    outbound, inbound = Frames(), Frames()
    local.setblocking(False)
    backoff = Backoff()
    deadline, resuming = time.monotonic() + retry_for, False
    while True:
        leg = _connect(dial, deadline, backoff, local, stopper)
        if leg is None:
            if resuming and not stopper.stopped():
                log("%s: the peer did not come back within %gs; closing the local connection" % (name, resume_for))
            return
        try:
            if resuming and len(pending):
                _send_all(leg.near, pending.replay())
            local_open = _splice(local, leg, pending, outbound, inbound)
        except FrameError as exc:
            log("%s: not ttrpc, closing: %s" % (name, exc))
            leg.finish()
            return
        except OSError:
            local_open = True          # the leg broke under a send: the pump says how
        if not local_open:
            leg.finish()
            return
        outcome = leg.finish()
        if stopper.stopped() or outcome == "closed" or (outcome == "refused" and leg.code in FINAL_REFUSALS):
            if outcome == "refused":
                log("%s: the peer refused the connection: %s" % (name, leg.detail))
            return
        dropped = inbound.drop_partial()
        if leg.answered or not resuming:
            # A working leg broke: the peer gets the whole window from now, and the first retry comes soon.
            deadline = time.monotonic() + resume_for
            backoff.reset()
        log("%s: link to the peer lost (%s); keeping the local connection and dialling again, %d unanswered "
            "request(s) to send again%s" % (name, leg.detail, len(pending),
                                            " (%d bytes of a cut frame dropped)" % dropped if dropped else ""))
        resuming = True
        if _wait(backoff.next(), deadline, local, stopper):
            return


def _wait(delay, deadline, local, stopper):
    """Sleep before the next dial; True when the relay must end (window over, stopping, local side gone)."""
    delay = min(delay, max(0.0, deadline - time.monotonic()))
    end = time.monotonic() + delay
    while True:
        if stopper.stopped() or _hung_up(local):
            return True
        left = end - time.monotonic()
        if left <= 0:
            return time.monotonic() >= deadline
        stopper.sleep(min(left, 0.2))


def _hung_up(local):
    """containerd closed its end while we were away: nothing to send its requests again for."""
    poller = select.poll()
    poller.register(local.fileno(), select.POLLRDHUP if hasattr(select, "POLLRDHUP") else select.POLLHUP)
    return bool(poller.poll(0))


def _connect(dial, deadline, backoff, local, stopper):
    """A new leg, dialled with backoff until deadline; None when none came (or the local side went)."""
    while not stopper.stopped():
        try:
            return Leg(*dial())
        except Failure:
            if _wait(backoff.next(), deadline, local, stopper):
                return None
    return None


def _splice(local, leg, pending, outbound, inbound):
    """Move whole frames both ways until a side ends. True when the local side is still open."""
    near = leg.near
    poller = select.poll()
    poller.register(local.fileno(), select.POLLIN)
    poller.register(near.fileno(), select.POLLIN)
    near.setblocking(False)
    while True:
        for fd, _event in poller.poll(1000):
            source = local if fd == local.fileno() else near
            try:
                data = source.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if source is local:
                if not data:
                    return False
                frames = outbound.feed(data)
                # Kept before any is sent: a send that fails half-way must not lose the rest.
                for sid, kind, frame in frames:
                    pending.sent(sid, kind, frame)
                _send_all(near, b"".join(frame for dummy_sid, dummy_kind, frame in frames))
            else:
                if not data:
                    return True
                for sid, kind, frame in inbound.feed(data):
                    pending.answered(sid, kind)
                    leg.answered = True
                    _send_all(local, frame)
