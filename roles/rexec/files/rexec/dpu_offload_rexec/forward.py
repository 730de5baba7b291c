# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rexec_forward: make unix sockets of the peer machine appear at the same paths here.

    CMD_NET_ADDR=tcp://HOST:7777 REXEC_TLS_CA=ca.pem REXEC_TLS_CERT=client.pem REXEC_TLS_KEY=client.key \\
    REXEC_SOCKET_ALLOW=/run/containerd/s \\
        rexec_forward --watch-addresses /run/containerd/io.containerd.runtime.v2.task

For every forwarded PATH it listens on a local unix socket at PATH and relays
each connection to the peer's rexec_server, which connects to its own PATH
(CONNECT session, protocol 1.1; the server checks its REXEC_SOCKET_ALLOW).
Paths come from --path / REXEC_FORWARD_PATHS and from the containerd bundle
`address` files under --watch-addresses / REXEC_FORWARD_WATCH (DIR/*/*/address),
rescanned every --interval seconds: forwards follow shims and are rebuilt
after a restart.  With --resume-ttrpc a connection outlives a lost leg
(resume).  See docs/rexec.md.
"""

import argparse
import errno
import glob
import os
import socket
import ssl
import stat
import threading
import time

from . import daemon, resume, watch
from .common import same_node, say
from .daemon import Backoff, PeerState, Stopper, map_path, remote_map, split_env
from .dial import Peer
from .policy_access import path_allowed
from .pump import Pump
from .settings import parse_allow
from .wire import T_CONNECT, ConnectionLost, Failure, ProtocolError

PROG = "rexec_forward"


def read_address_file(name, limit=4096):
    """The text of a bundle's address file; ValueError when it is not a regular file (the HOST may write the
    bundles: a link is not followed, a fifo not waited on)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValueError("not a regular file")
        return handle.read(limit).decode("utf-8", "replace").strip()


def log(message):
    say(PROG, message)


class Forward:
    """One local listening socket relayed to the same (or mapped) path on the peer."""

    def __init__(self, owner, path, origin):
        self.owner = owner
        self.path = path
        self.remote = map_path(path, owner.mapping)
        self.origin = origin
        self.listener = None
        self.ident = None
        self.stopper = Stopper()
        self.thread = None
        self.active = 0

    def live_socket(self):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.path)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def start(self):
        """Create the listening socket; returns an error message instead when it must not."""
        path = self.path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            return "cannot inspect %s: %s" % (path, exc.strerror)
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                return "%s exists and is not a socket: not replacing it" % path
            if self.live_socket():
                return "%s is a live socket (something listens on it): not replacing it" % path
            try:
                os.unlink(path)
            except OSError as exc:
                return "cannot remove stale socket %s: %s" % (path, exc.strerror)
        try:
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        except OSError as exc:
            return "cannot create the directory of %s: %s" % (path, exc.strerror)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(path)
            os.chmod(path, self.owner.mode)
            sock.listen(128)
        except OSError as exc:
            sock.close()
            return "cannot listen on %s: %s" % (path, exc.strerror)
        finally:
            os.umask(old)
        st = os.lstat(path)
        self.ident = (st.st_dev, st.st_ino)
        sock.settimeout(0.5)
        self.listener = sock
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()
        log("forward start %s -> %s:%s (%s)" % (path, self.owner.peer, self.remote, self.origin))
        return None

    def stop(self, reason):
        self.stopper.stop()
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.ident is not None and same_node(self.path, self.ident):
            try:
                os.unlink(self.path)
            except OSError:
                pass
        log("forward stop %s (%s)" % (self.path, reason))

    def accept_loop(self):
        listener = self.listener
        while not self.stopper.stopped():
            try:
                local, _addr = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.stopper.stopped():
                    return
                time.sleep(0.1)
                continue
            if not self.owner.take_slot():
                log("%s: too many connections (--max-connections %d), refusing one" % (self.path, self.owner.max_conns))
                local.close()
                continue
            threading.Thread(target=self.relay, args=(local,), daemon=True).start()

    def relay(self, local):
        owner = self.owner
        if owner.resume_for:
            try:
                resume.relay(local, self.dial, owner.retry_for, owner.resume_for, self.stopper, log, self.path)
            finally:
                try:
                    local.close()
                except OSError:
                    pass
                owner.release_slot()
            return
        conn = None
        try:
            deadline = time.monotonic() + owner.retry_for
            backoff = Backoff()
            while True:
                try:
                    conn, parser, events = owner.peer.open(T_CONNECT, self.remote)
                    break
                except Failure as exc:
                    owner.state.failed(exc.message)
                    delay = backoff.next()
                    if time.monotonic() + delay > deadline or self.stopper.sleep(delay):
                        return
            local.setblocking(False)
            pump = Pump(conn, parser, "client", rfd=local.fileno(), wfd=local.fileno(), sock=local,
                        on_ready=owner.state.ok)
            try:
                pump.run(events)
            except Failure as exc:
                owner.state.ok()
                log("%s: peer refused the connection: %s" % (self.path, exc.message))
            except (ConnectionLost, ssl.SSLError, ProtocolError, OSError) as exc:
                log("%s: connection to the peer lost: %s" % (self.path, exc))
        finally:
            if conn is not None:
                conn.close()
            try:
                local.close()
            except OSError:
                pass
            owner.release_slot()

    def dial(self):
        """One leg of a resumable relay (resume)."""
        try:
            conn, parser, events = self.owner.peer.open(T_CONNECT, self.remote)
        except Failure as exc:
            self.owner.state.failed(exc.message)
            raise
        return conn, parser, events, self.owner.state.ok


class Forwarder:
    def __init__(self, args, env):
        self.peer = Peer(env)
        self.state = PeerState(self.peer, log)
        self.mode = args.mode
        self.mapping = args.remote_map
        self.retry_for = args.retry_for
        self.resume_for = args.resume_ttrpc
        self.interval = args.interval
        self.max_conns = args.max_connections
        self.conns = 0
        self.lock = threading.Lock()
        self.static = list(dict.fromkeys(args.path))
        self.watch = list(dict.fromkeys(args.watch_addresses))
        allow = env.get("REXEC_SOCKET_ALLOW")
        if allow:
            self.allow = parse_allow(allow)
        else:
            self.allow = parse_allow(":".join(os.path.dirname(path) for path in self.static))
        self.forwards = {}
        self.addresses = {}         # address file -> last path read from it
        self.complaints = {}        # path -> last message logged about it

    def take_slot(self):
        with self.lock:
            if self.conns >= self.max_conns:
                return False
            self.conns += 1
            return True

    def release_slot(self):
        with self.lock:
            self.conns -= 1

    def complain(self, path, message):
        if self.complaints.get(path) != message:
            self.complaints[path] = message
            log(message)

    def scan_addresses(self):
        """{path: origin} from the bundles' address files (an unreadable file keeps its previous value)."""
        found = {}
        seen = set()
        for directory in self.watch:
            for name in watch.glob_no_links(os.path.join(glob.escape(directory), "*", "*", "address")):
                seen.add(name)
                try:
                    text = read_address_file(name)
                except ValueError as exc:
                    self.complain(name, "%s: ignoring it (%s)" % (name, exc))
                    self.addresses.pop(name, None)
                    text = None
                except OSError as exc:
                    text = None
                    if exc.errno == errno.ELOOP:
                        self.complain(name, "%s: ignoring it (a link)" % name)
                        self.addresses.pop(name, None)
                if text is not None:
                    if text.startswith("unix://") and text[len("unix://"):].startswith("/"):
                        self.addresses[name] = os.path.normpath(text[len("unix://"):])
                    elif text:
                        self.complain(name, "%s: ignoring address %r (not unix:///path)" % (name, text))
                        self.addresses.pop(name, None)
                if name in self.addresses:
                    found.setdefault(self.addresses[name], name)
        for name in list(self.addresses):
            if name not in seen:
                del self.addresses[name]
        return found

    def reconcile(self):
        wanted = {path: "--path" for path in self.static}
        for path, origin in self.scan_addresses().items():
            wanted.setdefault(path, origin)
        for path in list(self.forwards):
            if path not in wanted:
                self.forwards.pop(path).stop("address file gone")
            elif not same_node(path, self.forwards[path].ident):
                self.forwards.pop(path).stop("socket file removed or replaced; recreating")
        for path, origin in wanted.items():
            if path in self.forwards:
                continue
            if path_allowed(path, self.allow) is None:
                self.complain(path, "not forwarding %s (from %s): not in REXEC_SOCKET_ALLOW" % (path, origin))
                continue
            forward = Forward(self, path, origin)
            error = forward.start()
            if error is not None:
                self.complain(path, "not forwarding %s: %s" % (path, error))
                continue
            self.complaints.pop(path, None)
            self.forwards[path] = forward

    def run(self, stopper):
        notify = watch.Inotify() if self.watch else None
        prompt = notify is not None and notify.fd is not None
        log("forwarding to %s: %d static path(s), watching %s, %severy %gs" % (
            self.peer, len(self.static), ", ".join(self.watch) or "nothing",
            "on inotify events and " if prompt else "", self.interval))
        # A shim's address file appears in <bundles>/<namespace>/<id>/.
        patterns = [os.path.join(glob.escape(directory), "*", "*") for directory in self.watch]
        ready = False
        while not stopper.stopped():
            self.reconcile()
            if not ready:
                # Every forwarded socket exists now: a service manager may start what connects to them.
                daemon.notify_ready(os.environ, log)
                ready = True
            if not prompt:
                stopper.sleep(self.interval)
                continue
            if notify.watch(watch.watch_dirs(patterns)):
                continue
            notify.wait(self.interval)

    def shutdown(self):
        for path in list(self.forwards):
            self.forwards.pop(path).stop("shutting down")


def octal(text):
    value = int(text, 8)
    if not 0 <= value <= 0o777:
        raise ValueError(text)
    return value


def parse_args(argv, env):
    parser = argparse.ArgumentParser(prog=PROG, description="Make the peer's unix sockets appear at the same paths here "
                                     "(through its rexec_server, mutual TLS). See docs/rexec.md.")
    parser.add_argument("--path", action="append", default=[], metavar="PATH",
                        help="forward this socket path (repeatable; also REXEC_FORWARD_PATHS, colon-separated)")
    parser.add_argument("--watch-addresses", action="append", default=[], metavar="DIR",
                        help="follow DIR/*/*/address files (containerd bundles; repeatable; also REXEC_FORWARD_WATCH)")
    parser.add_argument("--mode", type=octal, default=0o600, help="mode of the created sockets (octal, default 0600)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between scans of the address files (0.5)")
    parser.add_argument("--retry-for", type=float, default=10.0, metavar="SECONDS",
                        help="how long a local connection waits for an unreachable peer, with backoff (10)")
    parser.add_argument("--resume-ttrpc", type=float, default=0.0, metavar="SECONDS",
                        help="the sockets speak ttrpc (containerd's shims): keep a local connection whose leg to the "
                             "peer is lost and dial again for up to SECONDS, rejoining at frame boundaries (0: off)")
    parser.add_argument("--max-connections", type=int, default=1024, help="concurrent relayed connections (1024)")
    parser.add_argument("--remote-map", type=remote_map, default=None, metavar="LOCAL_PREFIX=REMOTE_PREFIX",
                        help="testing aid: ask the peer for REMOTE_PREFIX/... where the local path is LOCAL_PREFIX/...")
    args = parser.parse_args(argv)
    args.path = args.path + split_env(env, "REXEC_FORWARD_PATHS")
    args.watch_addresses = args.watch_addresses + split_env(env, "REXEC_FORWARD_WATCH")
    for path in args.path + args.watch_addresses:
        if not path.startswith("/"):
            parser.error("paths must be absolute: %s" % path)
    args.path = [os.path.normpath(path) for path in args.path]
    if not args.path and not args.watch_addresses:
        parser.error("nothing to forward: give --path and/or --watch-addresses")
    if args.interval <= 0 or args.retry_for < 0 or args.resume_ttrpc < 0 or args.max_connections < 1:
        parser.error("--interval must be positive, --retry-for and --resume-ttrpc not negative, "
                     "--max-connections at least 1")
    return args


def main(argv):
    return daemon.main(PROG, argv, os.environ, parse_args, Forwarder)
