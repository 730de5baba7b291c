# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rexec_fiforelay: copy the bytes of containerd's fifos between the two machines.

    CMD_NET_ADDR=tcp://DPU:7777 REXEC_TLS_CA=ca.pem REXEC_TLS_CERT=client.pem REXEC_TLS_KEY=client.key \\
        rexec_fiforelay --watch '/run/containerd/fifo/*' \\
                        --watch '/run/containerd/io.containerd.runtime.v2.task/*/*'

Runs on the machine where the shims run (--side host, the default).  Every
--interval seconds it lists the watched directories (shell wildcards allowed;
also REXEC_FIFORELAY_WATCH, colon-separated) and relays each fifo it finds,
by name: `*-stdin` is read on the peer (FIFO_READ session) and written here;
`*-stdout`, `*-stderr` and `log` are read here and written on the peer
(FIFO_WRITE session).  Writer closes propagate as EOF; a relay ends when its
fifo node is removed.  The peer's rexec_server checks REXEC_FIFO_ALLOW.
See docs/rexec.md.
"""

import argparse
import errno
import os
import select
import ssl
import stat
import threading

from . import daemon, watch
from .common import fifo_ident, same_node, say
from .daemon import Backoff, PeerState, Stopper, map_path, remote_map
from .dial import Peer
from .pump import END_REMOVED, Pump
from .spool import DEFAULT_LIMIT, Spool
from .wire import (T_EOF, T_ERROR, T_EXIT, T_FIFO_READ, T_FIFO_WRITE, T_READY, T_STDOUT, ConnectionLost, Failure,
                   ProtocolError, error_failure)

PROG = "rexec_fiforelay"
OPEN_RETRY = 0.05           # seconds between attempts to open a local fifo that has no reader yet
ROUND_PAUSE = 0.1           # seconds between two rounds on the same fifo


def log(message):
    say(PROG, message)


def direction(name, side):
    """"out" (read here, write on the peer), "in" (read on the peer, write here) or None for other names."""
    if name.endswith("-stdin"):
        out = False
    elif name.endswith("-stdout") or name.endswith("-stderr") or name == "log":
        out = True
    else:
        return None
    if side == "client":
        out = not out
    return "out" if out else "in"


class Relay:
    """Relays one fifo path, round after round (one round per writer), until its node goes or we stop.

    A node made again at the path (a docker restart) is followed, not given a
    second relay: two relays of one path would read the peer's fifo at once,
    each taking some of the new writer's lines, and the one whose node went
    would drop them (seen in the lab: a restarted container's first lines lost).
    """

    def __init__(self, owner, path, ident, way):
        self.owner = owner
        self.path = path
        self.remote = map_path(path, owner.mapping)
        self.ident = ident
        self.way = way
        self.stopper = Stopper()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.sent = 0
        self.dropped = 0
        self.dropped_lines = 0
        self.rounds = 0
        self.reason = "stopped"

    def start(self):
        arrow = "%s -> peer:%s" % (self.path, self.remote) if self.way == "out" else "peer:%s -> %s" % (self.remote, self.path)
        log("relay start %s" % arrow)
        self.thread.start()

    def stop(self, reason):
        self.reason = reason
        self.stopper.stop()

    def check(self):
        """Why the current round must end: stopped, "removed" (no fifo at the path) or "replaced"."""
        if self.stopper.stopped():
            return self.reason
        if not same_node(self.path, self.ident):
            return "removed" if fifo_ident(self.path) is None else "replaced"
        return None

    def follow(self, reason):
        """After a round: None to go on with the node now at the path (taken over if it is a new one), else why to stop."""
        if reason not in (None, "replaced"):
            return reason
        ident = fifo_ident(self.path)
        if ident is None:
            return "removed"
        if ident != self.ident:
            log("relay follows %s to its new node" % self.path)
            self.ident = ident
        return None

    def run(self):
        reason = None
        try:
            while reason is None:
                reason = self.one_round()
                if reason is None:
                    self.rounds += 1
                    if self.stopper.sleep(ROUND_PAUSE):
                        reason = self.reason
                reason = self.follow(reason if reason is not None else self.check())
        except Exception as exc:  # one fifo must never take the relay down
            reason = "internal error: %r" % (exc,)
        dropped = ", %d bytes (%d lines) dropped" % (self.dropped, self.dropped_lines) if self.dropped else ""
        log("relay stop %s (%s; %d round(s), %d bytes%s)" % (self.path, reason, self.rounds, self.sent, dropped))
        self.owner.finished(self, reason)

    def open_local(self):
        """Open our end: reader at once ("out"), writer once a local reader exists ("in").  (fd, None) or (None, reason)."""
        # O_NOFOLLOW and the type check: the HOST can write in the shared directories, and a
        # symlink or file put at the path must never be written (or read) in its place.
        flags = (os.O_RDONLY if self.way == "out" else os.O_WRONLY) | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW
        while True:
            reason = self.check()
            if reason not in (None, "replaced"):    # a new node at the path is opened, not given up
                return None, reason
            try:
                fd = os.open(self.path, flags)
            except OSError as exc:
                if exc.errno not in (errno.ENXIO, errno.EINTR):
                    return None, "cannot open: %s" % exc.strerror
                self.stopper.sleep(OPEN_RETRY)
                continue
            st = os.fstat(fd)
            if not stat.S_ISFIFO(st.st_mode):
                os.close(fd)
                return None, "not a fifo"
            # The node at the path now is the one this relay serves (a new one is followed).
            self.ident = (st.st_dev, st.st_ino)
            return fd, None

    def one_round(self):
        """Relay one writer's bytes.  None when the round ended normally (another may follow), else why to stop."""
        fd = None
        kind = T_FIFO_WRITE if self.way == "out" else T_FIFO_READ
        backoff = Backoff()
        state = self.owner.state
        pump = None
        spool = None
        try:
            while True:
                try:
                    conn, parser, events = self.owner.peer.open(kind, self.remote)
                except Failure as exc:
                    state.failed(exc.message)
                    if self.stopper.sleep(backoff.next()):
                        return self.reason
                    reason = self.check()
                    if reason is not None:
                        return reason
                    continue
                try:
                    if fd is None:
                        # Our end opens only once the peer's side is live. "out": the peer's
                        # end is open (READY), so a local writer never writes, and closes,
                        # into a pipe whose bytes could go nowhere yet (a client's stdin,
                        # closed with CloseIO right after its last write). "in": the peer's
                        # writer has written or closed, so a fifo that only this machine
                        # uses (a container of a local runtime) is never held open by us.
                        events, reason = wait_for(conn, parser, events, self.check,
                                                  READY if self.way == "out" else FIRST_DATA)
                        if reason is not None:
                            return reason
                        fd, reason = self.open_local()
                        if fd is None:
                            return reason
                        if self.way == "out" and self.owner.spool_limit:
                            # The writer (a container) must never wait on the peer: read through a bounded spool.
                            spool = Spool(fd, self.owner.spool_limit, self.path, log)
                            fd = spool.rfd
                    if self.way == "out":
                        pump = Pump(conn, parser, "client", rfd=fd, check=self.check, on_ready=state.ok)
                    else:
                        pump = Pump(conn, parser, "client", wfd=fd, check=self.check, on_ready=state.ok)
                    result = pump.run(events)
                except Failure as exc:
                    state.ok()
                    if exc.code == 126:
                        # Refused by the peer's REXEC_FIFO_ALLOW: retrying will not help until the node changes.
                        log("%s: peer refused: %s" % (self.path, exc.message))
                        return "refused by the peer"
                    log("%s: peer: %s (retrying)" % (self.path, exc.message))
                    if self.stopper.sleep(backoff.next()):
                        return self.reason
                    continue
                except (ConnectionLost, ssl.SSLError, ProtocolError, OSError) as exc:
                    state.failed(str(exc))
                    if pump is None:
                        if self.stopper.sleep(backoff.next()):
                            return self.reason
                        continue
                    self.sent += pump.sent + pump.received
                    if not (pump.reading or pump.writing):
                        return None
                    # Our end is still open: carry on over a new session (bytes in flight are lost).
                    fd = pump.rfd if self.way == "out" else pump.wfd
                    pump = None
                    if self.stopper.sleep(backoff.next()):
                        return self.reason
                    continue
                finally:
                    conn.close()
                self.sent += pump.sent + pump.received
                if result[0] == "stopped":
                    return result[1]
                if result[1] == END_REMOVED:
                    return "removed on the peer"
                return None
        finally:
            if pump is not None:
                pump.close()
            elif fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
            if spool is not None:
                spool.close()
                self.dropped += spool.dropped
                self.dropped_lines += spool.dropped_lines


READY = (T_READY,)
FIRST_DATA = (T_STDOUT, T_EOF)


def wait_for(conn, parser, events, check, kinds, interval=0.5):
    """Read frames until one of kinds arrives.

    Returns (every frame seen, for the Pump to handle, None), or (events, why
    to stop) when check() says so or the peer ended the session first.  A
    server ERROR is raised as a Failure with its code.
    """
    events = list(events)
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    seen = 0
    while True:
        for ftype, payload in events[seen:]:
            if ftype == T_ERROR:
                raise error_failure(payload)
            if ftype == T_EXIT:
                return events, "removed on the peer"
            if ftype in kinds:
                return events, None
        seen = len(events)
        reason = check()
        if reason is not None:
            return events, reason
        if poller.poll(interval * 1000.0):
            for chunk in conn.recv():
                events.extend(parser.feed(chunk))


class FifoRelay:
    def __init__(self, args, env):
        self.peer = Peer(env)
        self.state = PeerState(self.peer, log)
        self.mapping = args.remote_map
        self.side = args.side
        self.interval = args.interval
        # Output fifos are read here only with --side host; with --side client they are read by the peer's server.
        self.spool_limit = args.spool if args.side == "host" else 0
        self.watch = list(dict.fromkeys(args.watch))
        self.relays = {}
        self.lock = threading.Lock()
        self.done = {}              # path -> ident of relays that ended while their node still exists

    def finished(self, relay, reason):
        with self.lock:
            if self.relays.get(relay.path) is relay:
                del self.relays[relay.path]
                # Only a relay whose node outlived it is remembered as done. A node that went may
                # come back at once with the same inode number (a disk file system reuses them:
                # docker's fifos after a restart), and that new node must be relayed.
                if reason != "removed" and same_node(relay.path, relay.ident):
                    self.done[relay.path] = relay.ident

    def scan(self):
        found = {}
        for pattern in self.watch:
            for directory in watch.glob_no_links(pattern):
                try:
                    names = os.listdir(directory)
                except OSError:
                    continue
                for name in names:
                    way = direction(name, self.side)
                    if way is None:
                        continue
                    path = os.path.join(directory, name)
                    ident = fifo_ident(path)
                    if ident is not None:
                        found[path] = (ident, way)
        return found

    def reconcile(self):
        found = self.scan()
        with self.lock:
            for path in list(self.done):
                if path not in found or found[path][0] != self.done[path]:
                    del self.done[path]
            # A relay ends by itself when its node goes (a scan that misses the node for a moment
            # must not stop it mid-round, with bytes read from the peer), and follows a new node at
            # its path; a new relay starts only once the path has none.
            starting = []
            for path, (ident, way) in found.items():
                if path in self.relays or self.done.get(path) == ident:
                    continue
                relay = Relay(self, path, ident, way)
                self.relays[path] = relay
                starting.append(relay)
        for relay in starting:
            relay.start()

    def run(self, stopper):
        notify = watch.Inotify()
        log("relaying fifos with %s (side %s), watching %s, %s" % (
            self.peer, self.side, ", ".join(self.watch),
            "on inotify events and every %gs" % self.interval if notify.fd is not None else "every %gs" % self.interval))
        while not stopper.stopped():
            self.reconcile()
            if notify.fd is None:
                stopper.sleep(self.interval)
                continue
            if notify.watch(watch.watch_dirs(self.watch)):
                # What a directory received before its watch was added: scan again at once.
                continue
            notify.wait(self.interval)

    def shutdown(self):
        with self.lock:
            relays = list(self.relays.values())
        for relay in relays:
            relay.stop("shutting down")
        for relay in relays:
            relay.thread.join(2.0)


def parse_args(argv, env):
    parser = argparse.ArgumentParser(prog=PROG, description="Relay containerd's stdio and log fifos between the HOST and "
                                     "the DPU (through the peer's rexec_server, mutual TLS). See docs/rexec.md.")
    parser.add_argument("--watch", action="append", default=[], metavar="DIR",
                        help="directory (or wildcard pattern of directories) whose fifos to relay (repeatable; "
                        "also REXEC_FIFORELAY_WATCH, colon-separated)")
    parser.add_argument("--side", choices=("host", "client"), default="host",
                        help="host (default): this machine runs the shims, so *-stdin comes from the peer and "
                        "*-stdout, *-stderr, log go to it; client: the reverse")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between scans of the directories (0.5)")
    parser.add_argument("--spool", type=int, default=DEFAULT_LIMIT, metavar="BYTES",
                        help="with --side host: bytes of an output fifo kept while the peer does not take them; past "
                        "that they are dropped (whole lines, counted and logged) so the writer never blocks; 0: "
                        "no spool, the writer waits (%d)" % DEFAULT_LIMIT)
    parser.add_argument("--remote-map", type=remote_map, default=None, metavar="LOCAL_PREFIX=REMOTE_PREFIX",
                        help="testing aid: use REMOTE_PREFIX/... on the peer where the local path is LOCAL_PREFIX/...")
    args = parser.parse_args(argv)
    args.watch = args.watch + [item for item in (env.get("REXEC_FIFORELAY_WATCH") or "").split(":") if item]
    if not args.watch:
        parser.error("nothing to watch: give --watch DIR")
    for path in args.watch:
        if not path.startswith("/"):
            parser.error("paths must be absolute: %s" % path)
    if args.interval <= 0:
        parser.error("--interval must be positive")
    if args.spool < 0:
        parser.error("--spool must be 0 or more")
    return args


def main(argv):
    return daemon.main(PROG, argv, os.environ, parse_args, FifoRelay)
