# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What rexec_forward and rexec_fiforelay share as long-running clients of the peer's rexec_server.

The front end (main: options, start, signals, stop), the stop flag their
threads check, the backoff between attempts, the log of the peer's
reachability, the testing aid --remote-map, and the service manager's
readiness notification.
"""

import argparse
import signal
import socket
import threading

from .common import say
from .wire import Failure


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


def remote_map(text):
    """argparse type of --remote-map."""
    try:
        return parse_map(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def split_env(env, name):
    """A colon-separated list from the environment (empty items dropped)."""
    return [item for item in (env.get(name) or "").split(":") if item]


# --------------------------------------------------------------------------
# Running as a service


def notify_ready(env, log):
    """Tell systemd (Type=notify, NOTIFY_SOCKET) that start-up is done; nothing without NOTIFY_SOCKET."""
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.sendto(b"READY=1", address)
    except OSError as exc:
        log("cannot notify the service manager at %s: %s" % (env.get("NOTIFY_SOCKET"), exc))
        return False
    finally:
        sock.close()
    return True


def main(prog, argv, env, parse_args, service):
    """The tools' front end: options, then service(args, env) runs until SIGTERM, SIGINT or SIGHUP.

    service has run(stopper) and shutdown().  Exit status 1 on bad settings
    (the peer's address, TLS), 2 on bad options (argparse), 0 after a stop.
    """
    args = parse_args(argv, env)
    try:
        daemon = service(args, env)
    except Failure as exc:
        say(prog, "error: %s" % exc.message)
        return 1
    stopper = Stopper()

    def on_signal(signum, _frame):
        say(prog, "stopping on signal %d" % signum)
        stopper.stop()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        daemon.run(stopper)
    finally:
        daemon.shutdown()
    return 0
