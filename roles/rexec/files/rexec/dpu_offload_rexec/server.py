# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rexec_server: run allowlisted commands, and relay allowed sockets and fifos, for authenticated rexec clients.

    CMD_NET_ADDR=tcp://0.0.0.0:7777 REXEC_TLS_CA=ca.pem REXEC_TLS_CERT=server.pem \\
        REXEC_TLS_KEY=server.key REXEC_TLS_PEERS=dpu01 rexec_server

Listens on CMD_NET_ADDR (settings.ServerSettings lists what it reads).  TCP
requires mutual TLS unless REXEC_INSECURE=1, and only the client certificate
names listed in REXEC_TLS_PEERS get in.  Here: the listener, one thread per
connection (session.Session), the handshake slots, the session slots and
the REQUEST budget they share, and the stop.  One audit line per request
on stderr.  See docs/rexec.md and docs/rexec-protocol.md.
"""

import os
import signal
import socket
import ssl
import threading
import time

from .audit import log
from .connection import make_context
from .policy_commands import load_allowlist
from .policy_words import Procs
from .session import Session
from .settings import ConfigError, ServerSettings

EVICT_MIN_AGE = 1.0         # a handshake younger than this is never pushed out: the newcomer is dropped instead
REQUEST_BUDGET = 8 << 20    # bytes all connections together may hold in bigger, unfinished REQUESTs
STOP_GRACE = 2.0            # seconds the server waits at stop for sessions to write their audit lines
DROP_LOG_INTERVAL = 5.0     # seconds between log lines about dropped handshakes
LISTEN_BACKLOG = 512


class Server:
    """The listener and the books: connections still in their handshake, sessions past their request."""

    def __init__(self, settings):
        self.settings = settings
        self.context = None
        self.listener = None
        self.lock = threading.Lock()
        self.sessions = set()           # past the request: running a command or a stream
        self.pending = {}               # still in TLS / HELLO / REQUEST, oldest first (dict order)
        self.pending_by = {}            # address -> number of its pending connections
        self.budget = REQUEST_BUDGET
        self.stopping = False
        self.dropped = 0
        self.dropped_logged_at = 0.0
        self.procs = Procs()
        self.unix_path = None

    def configure(self):
        settings = self.settings
        settings.read_transport()
        if settings.insecure_tcp:
            log("WARNING: REXEC_INSECURE=1: plain TCP, anyone who reaches %s can run the allowlisted commands"
                % settings.address)
        if settings.context_files is not None:
            try:
                self.context = make_context(True, *settings.context_files)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError("cannot load TLS files (REXEC_TLS_CA/CERT/KEY): %s" % exc)
        load_allowlist(settings.whitelist, log=log)

    def listen(self):
        addr = self.settings.address
        if addr.kind == "unix":
            path = addr.path
            try:
                if os.path.exists(path) and not os.path.isdir(path):
                    os.unlink(path)
            except OSError as exc:
                raise ConfigError("cannot remove stale socket %s: %s" % (path, exc.strerror))
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                sock.bind(path)
            except OSError as exc:
                raise ConfigError("cannot listen on %s: %s" % (addr, exc.strerror))
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
            self.unix_path = path
        else:
            try:
                infos = socket.getaddrinfo(addr.host, addr.port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
                family, socktype, protocol, _canon, sockaddr = infos[0]
                sock = socket.socket(family, socktype, protocol)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(sockaddr)
            except OSError as exc:
                raise ConfigError("cannot listen on %s: %s" % (addr, exc.strerror or exc))
        sock.listen(LISTEN_BACKLOG)
        self.listener = sock
        mode = "unix socket, mode 0600" if addr.kind == "unix" else ("mutual TLS" if self.context else "INSECURE plain TCP")
        log("listening on %s (%s), allowlist %s, at most %d sessions" % (addr, mode, self.settings.whitelist, self.settings.max_sessions))
        if self.settings.peers:
            log("REXEC_TLS_PEERS: %s" % ",".join(sorted(self.settings.peers)))
        for name, entries in (("REXEC_SOCKET_ALLOW", self.settings.socket_allow), ("REXEC_FIFO_ALLOW", self.settings.fifo_allow)):
            if entries:
                log("%s: %s" % (name, ":".join(os.fsdecode(entry) for entry in entries)))

    def admit(self, sock, peer):
        """A new connection: a handshake slot for it (maybe pushing out an old idle one), or None (closed)."""
        key = "unix" if sock.family == socket.AF_UNIX else peer[0]
        session = Session(self, sock, peer, key)
        with self.lock:
            if self.stopping:
                sock.close()
                return None
            self.pending[session] = None
            count = self.pending_by[key] = self.pending_by.get(key, 0) + 1
            victim = None
            if count > self.settings.max_handshakes_per_address:
                victim = next(other for other in self.pending if other.key == key)
            elif len(self.pending) > self.settings.max_handshakes:
                busiest = max(self.pending_by, key=self.pending_by.get)
                victim = next(other for other in self.pending if other.key == busiest)
            if victim is not None and session.accepted - victim.accepted < EVICT_MIN_AGE:
                victim = session        # a burst: keep the handshakes in progress, drop the newcomer
            if victim is not None:
                self._leave_pending(victim)
                self.dropped += 1
                if victim is not session:
                    victim.evict()
            drop_note = None
            now = time.monotonic()
            if self.dropped and now - self.dropped_logged_at >= DROP_LOG_INTERVAL:
                drop_note = self.dropped
                self.dropped = 0
                self.dropped_logged_at = now
        if drop_note:
            log("handshake slots full (REXEC_MAX_HANDSHAKES=%d, REXEC_MAX_HANDSHAKES_PER_ADDRESS=%d): dropped %d "
                "connection(s) that had not completed a request" % (self.settings.max_handshakes,
                                                                    self.settings.max_handshakes_per_address, drop_note))
        if victim is session:
            sock.close()
            return None
        return session

    def _leave_pending(self, session):
        if self.pending.pop(session, False) is None:
            count = self.pending_by[session.key] - 1
            if count:
                self.pending_by[session.key] = count
            else:
                del self.pending_by[session.key]

    def promote(self, session):
        """The request is in: "ok" (a session slot is taken), "busy", or "gone" (evicted or stopping)."""
        with self.lock:
            if session.evicted or session not in self.pending:
                return "gone"
            self._leave_pending(session)
            if self.stopping:
                return "gone"
            if len(self.sessions) >= self.settings.max_sessions:
                return "busy"
            self.sessions.add(session)
            return "ok"

    def release(self, session):
        with self.lock:
            self._leave_pending(session)
            self.sessions.discard(session)

    def take_budget(self, length):
        with self.lock:
            if length > self.budget:
                return False
            self.budget -= length
            return True

    def give_budget(self, length):
        with self.lock:
            self.budget += length

    def serve_forever(self):
        listener = self.listener
        while True:
            try:
                sock, peer = listener.accept()
            except OSError as exc:
                log("accept failed: %s" % exc)
                time.sleep(0.1)
                continue
            session = self.admit(sock, peer)
            if session is not None:
                threading.Thread(target=session.run, daemon=True).start()

    def shutdown(self):
        """Stop: cut every connection first, then kill the commands.

        In that order, no EXIT frame with a status the stop itself caused
        (SIGKILL, 137) can reach a client: every client of a running command
        sees the connection end and exits 255.
        """
        with self.lock:
            self.stopping = True
            sessions = list(self.pending) + list(self.sessions)
            for session in sessions:
                session.evict()
        for session in sessions:
            session.kill_group()
        if self.listener is not None:
            self.listener.close()
        if self.unix_path:
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass
        # Let the sessions write their audit lines (bounded).
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline:
            with self.lock:
                if not self.sessions and not self.pending:
                    break
            time.sleep(0.02)


class _Stop(Exception):
    pass


def _stop(signum, frame):
    raise _Stop(signum)


def _ignore(signum, frame):
    pass


def setup_signals():
    """Our dispositions become the commands' after exec: make sure they start with the defaults.

    An ignored signal stays ignored across exec (and a POSIX shell cannot even
    trap a signal that was ignored when it started), and a blocked one stays
    blocked; whoever started the server may have left either behind.  Caught
    signals are reset to the default action by exec.
    """
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _stop)
    for signum in (signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGTSTP, signal.SIGTTIN,
                   signal.SIGTTOU, signal.SIGWINCH, signal.SIGCONT):
        signal.signal(signum, _ignore)


def main():
    """The rexec_server program, its exit status: no options, the environment holds every setting."""
    try:
        server = Server(ServerSettings(os.environ))
        server.configure()
        server.listen()
    except ConfigError as exc:
        log("error: %s" % exc)
        return 1
    setup_signals()
    try:
        server.serve_forever()
    except _Stop as exc:
        log("stopping on signal %d; killing %d running command(s)" % (exc.args[0], len(server.sessions)))
    finally:
        server.shutdown()
    return 0
