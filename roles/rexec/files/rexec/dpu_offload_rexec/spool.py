"""A bounded, dropping reader for a local fifo, so its writer never waits on the peer.

A container's stdout goes to a fifo that the relay reads and sends to the
peer.  When the link to the peer is down, or the peer stops reading, the
relay stops reading too, the fifo fills and the container blocks in write(2):
a fault of the management plane would stall the workload.  A Spool reads the
fifo into a buffer of at most `limit` bytes and hands the bytes on through a
pipe of its own (`rfd`, what the relay reads instead).  While the peer takes
bytes, a full buffer holds the writer back as the fifo would (nothing is lost
to a slow reader); once the peer has taken nothing for STALL seconds, the
Spool reads on and drops, counting bytes and lines.  Drops are at line
boundaries: the buffer is cut back after its last newline and what comes
next is dropped up to and including a newline, so a log reader on the peer
sees whole lines and a gap.  Python 3.9+ standard library only.
"""
# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

import errno
import os
import select
import threading
import time

CHUNK = 65536
DEFAULT_LIMIT = 1 << 20     # bytes kept per fifo while the peer does not take them
REPORT_EVERY = 10.0         # seconds between two log lines of one burst of drops
STALL = 5.0                 # seconds the peer takes nothing before a full buffer drops


class Bounded:
    """The buffer: what is kept of a stream past `limit` bytes, and the count of what is dropped (no I/O)."""

    def __init__(self, limit, name, log, clock=time.monotonic):
        self.limit = limit
        self.name = name
        self.log = log
        self.clock = clock
        self.buf = bytearray()
        self.kept = 0               # bytes read and kept
        self.dropped = 0            # bytes read and dropped
        self.dropped_lines = 0      # newlines among them
        self.skipping = False       # dropping up to the next newline
        self.burst = [0, 0]         # bytes and lines dropped since the buffer last had room
        self.reported = None        # time of the last log line of a burst

    def take(self, data):
        """Keep what fits of one read; past the limit drop, at line boundaries (a few slices a read, whatever its size)."""
        if self.skipping:
            cut = data.find(b"\n")
            if cut < 0:
                self.drop(data)
                return
            self.drop(data[:cut + 1])
            data = data[cut + 1:]
            self.skipping = False
        if not data:
            return
        room = self.limit - len(self.buf)
        if len(data) <= room:
            if self.burst[0]:
                self.log("%s: the peer takes this fifo's bytes again; %d bytes, %d lines were dropped"
                         % (self.name, self.burst[0], self.burst[1]))
                self.burst = [0, 0]
            self.keep(data)
            return
        # Full: keep the whole lines that fit, drop the rest of this read.
        cut = data.rfind(b"\n", 0, room)
        if cut >= 0:
            self.keep(data[:cut + 1])
            rest = data[cut + 1:]
        else:
            # Not one more line ends within the room: the buffer's unfinished last line goes too.
            last = self.buf.rfind(b"\n")
            if last >= 0 and last + 1 < len(self.buf):
                tail = bytes(self.buf[last + 1:])
                del self.buf[last + 1:]
                self.kept -= len(tail)
                self.drop(tail)
            rest = data
        self.drop(rest)
        # A read that ends inside a line: drop on up to that line's end.
        self.skipping = bool(rest) and not rest.endswith(b"\n")

    def keep(self, data):
        self.buf += data
        self.kept += len(data)

    def lose_kept(self):
        """Count what is kept as dropped and forget it (nobody will take it any more)."""
        if self.buf:
            self.dropped += len(self.buf)
            self.dropped_lines += self.buf.count(b"\n")
            del self.buf[:]

    def drop(self, data):
        if not data:
            return
        lines = data.count(b"\n")
        self.dropped += len(data)
        self.dropped_lines += lines
        self.burst[0] += len(data)
        self.burst[1] += lines
        now = self.clock()
        if self.reported is None or now - self.reported >= REPORT_EVERY:
            self.log("%s: the peer is not taking this fifo's bytes: dropping past %d buffered bytes "
                     "(%d bytes, %d lines dropped so far)" % (self.name, self.limit, self.dropped, self.dropped_lines))
            self.reported = now


class Spool:
    """Read `fd` (closed by the Spool) all the time into a Bounded buffer; `rfd` yields what was kept, then EOF."""

    def __init__(self, fd, limit, name, log, stall=STALL, clock=time.monotonic):
        self.src = fd
        self.name = name
        self.log = log
        self.stall = stall
        self.clock = clock
        self.progress = clock()     # when the peer last took bytes (or had none waiting)
        self.bounded = Bounded(limit, name, log, clock)
        self.rfd, self.wfd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.stop_r, self.stop_w = os.pipe2(os.O_CLOEXEC)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @property
    def dropped(self):
        return self.bounded.dropped

    @property
    def dropped_lines(self):
        return self.bounded.dropped_lines

    def run(self):
        try:
            self.loop()
        except Exception as exc:  # the relay's reader then sees EOF; the writer is never left blocked by us
            self.log("%s: spool error: %r" % (self.name, exc))
        finally:
            for fd in (self.src, self.wfd):
                if fd is not None:
                    os.close(fd)
            self.src = self.wfd = None
            # What the spool still holds when the relay goes (its session broke) never reaches
            # the peer: it is lost like the lines dropped before, and counted with them.
            self.bounded.lose_kept()
            if self.dropped:
                self.log("%s: %d bytes, %d lines dropped in all while the peer did not take them"
                         % (self.name, self.dropped, self.dropped_lines))

    def loop(self):
        bounded = self.bounded
        while self.src is not None or bounded.buf:
            now = self.clock()
            if not bounded.buf:
                self.progress = now
            room = bounded.limit - len(bounded.buf)
            stalled = now - self.progress >= self.stall
            poller = select.poll()
            poller.register(self.stop_r, select.POLLIN)
            timeout = None
            if self.src is not None:
                if room > 0 or stalled:
                    poller.register(self.src, select.POLLIN)
                else:
                    timeout = (self.stall - (now - self.progress)) * 1000.0   # wake up to start dropping
            # Registered even with nothing to write: POLLERR tells that the relay closed its end.
            poller.register(self.wfd, select.POLLOUT if bounded.buf else 0)
            for fd, mask in poller.poll(timeout):
                if fd == self.stop_r:
                    return
                if fd == self.src:
                    try:
                        # While the peer takes bytes, read no more than fits: the writer waits, nothing is lost.
                        data = os.read(self.src, CHUNK if stalled else min(CHUNK, room))
                    except BlockingIOError:
                        continue
                    if data:
                        bounded.take(data)
                    else:
                        # The writer closed: EOF once the buffer is handed on.
                        os.close(self.src)
                        self.src = None
                elif fd == self.wfd:
                    if mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                        return      # the relay closed its end: nobody to hand bytes to
                    if not bounded.buf:
                        continue
                    try:
                        written = os.write(self.wfd, bounded.buf[:CHUNK])
                    except OSError as exc:
                        if exc.errno == errno.EAGAIN:
                            continue
                        if exc.errno == errno.EPIPE:
                            return
                        raise
                    del bounded.buf[:written]
                    self.progress = self.clock()

    def close(self):
        """Stop reading (the relay's end, rfd, is the relay's to close)."""
        try:
            os.write(self.stop_w, b"x")
        except OSError:
            pass
        self.thread.join(5.0)
        for fd in (self.stop_r, self.stop_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.stop_r = self.stop_w = None
