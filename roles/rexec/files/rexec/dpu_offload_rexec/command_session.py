# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A command session on the server: decide by the allowlist, start the command, relay its I/O, answer with EXIT.

serve() runs one REQUEST (docs/rexec-protocol.md, sections 4-6) for a
session.Session whose request is in and whose slot is taken: the decision
is policy_commands', the command runs with the environment it builds, in a
new process group; the relay moves stdin, stdout, stderr and signals until
the command exits and its pipes are drained.  Exactly one audit line.
"""

import fcntl
import os
import select
import signal
import ssl
import subprocess
import time

from . import wire
from .audit import Refused, log, where
from .connection import linger_close
from .policy_commands import Refusal, find_command, load_allowlist
from .settings import ConfigError
from .wire import ConnectionLost, ProtocolError, error_frame

OUT_HIGH = 1 << 20          # stop reading the command's pipes above this much queued output
DRAIN_GRACE = 1.0           # seconds to wait for pipes held open by leftovers after exit
PIPE_SIZE = 1 << 20         # bigger pipes: fewer, larger reads and frames
PIPE_READ = 1 << 20         # read size for the pipes in bulk (= MAX_DATA, one frame per read)
SMALL_READ = 64 * 1024      # read size until a command has filled one such read
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
POLLERRS = select.POLLERR | select.POLLHUP | select.POLLNVAL


def serve(session, request, events):
    """Run the command of a decoded REQUEST (argv, env, cwd); events: frames that came with it."""
    argv, env, cwd = request
    session.argv = argv
    session.cwd = cwd
    try:
        spawn(session, argv, env, cwd)
    except Refused as exc:
        session.audit(exc.status)
        session.conn.send(error_frame(exc.code, exc.message))
        linger_close(session.conn)
        return
    run(session, events)


def exit_payload(returncode):
    """EXIT payload and audit status for a Popen returncode (negative: killed by that signal)."""
    if returncode < 0:
        signum = -returncode
        try:
            name = signal.Signals(signum).name[3:]
        except ValueError:
            name = str(signum)
        return bytes((wire.EXIT_SIGNAL,)) + signum.to_bytes(4, "big") + name.encode("ascii"), "signal:%s(%d)" % (name, signum)
    return bytes((wire.EXIT_CODE,)) + returncode.to_bytes(4, "big"), "exit:%d" % returncode


def spawn(session, argv, env, cwd):
    """Start the command the allowlist allows, or raise Refused."""
    server = session.server
    try:
        allowed = load_allowlist(server.settings.whitelist)
    except (ConfigError, OSError) as exc:
        log(str(exc))
        raise Refused(126, "server allowlist is unusable; refusing all commands", "refused:allowlist-unusable")
    except Exception as exc:  # a bug in the parser refuses (with an audit line), never drops the session
        log("allowlist %s could not be read: %r at %s" % (server.settings.whitelist, exc, where(exc)))
        raise Refused(126, "server allowlist is unusable; refusing all commands", "refused:allowlist-unusable")
    if not cwd.startswith(b"/") or not os.path.isdir(cwd):
        session.conn.send(wire.frame(wire.T_NOTICE, b"warning: working directory %s does not exist on the server; using /"
                                     % cwd))
        cwd = b"/"
    path = find_command(argv[0], cwd)
    if path is None:
        raise Refused(127, "%s: command not found on the server" % os.fsdecode(argv[0]), "refused:not-found(127)")
    real = os.path.realpath(path)
    try:
        rule, env_map = allowed.decide(real, argv, env, server.procs)
    except Refusal as exc:
        raise Refused(126, "%s: %s (%s)" % (os.fsdecode(argv[0]), exc.message, server.settings.whitelist),
                      "refused:%s(126)" % exc.kind)
    except Exception as exc:  # the same for a bug in the rules' code: fail closed, answered and audited
        log("allowlist evaluation failed for a request from %s: %r at %s" % (session.who, exc, where(exc)))
        raise Refused(126, "%s: the server could not evaluate its allowlist for this request; refused (%s)"
                      % (os.fsdecode(argv[0]), server.settings.whitelist), "refused:policy-error(126)")
    # argv[0] is the path as the rule writes it: a multi-call binary
    # (busybox) then runs the program the rule names, not one the client picks.
    run_argv = [os.fsencode(rule.path)] + list(argv[1:])
    try:
        session.proc = subprocess.Popen(run_argv, executable=real, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=env_map, cwd=cwd, start_new_session=True)
        for pipe in (session.proc.stdin, session.proc.stdout):
            try:
                fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass
    except FileNotFoundError as exc:
        raise Refused(127, "%s: %s" % (os.fsdecode(argv[0]), exc.strerror), "refused:spawn-failed(127)")
    except (OSError, ValueError) as exc:
        raise Refused(126, "%s: cannot execute: %s" % (os.fsdecode(argv[0]), getattr(exc, "strerror", None) or exc),
                      "refused:spawn-failed(126)")


def run(session, events):
    """Move bytes between the client and the command until it exits; then EXIT and the audit line."""
    proc = session.proc
    relay = Relay(session)
    try:
        relay.run(events)
    except (ConnectionLost, ssl.SSLError, ProtocolError) as exc:
        session.kill_group()
        proc.wait()
        if session.server.stopping:
            reason = "server-stopped"
        else:
            reason = "disconnected" if isinstance(exc, ConnectionLost) else "protocol-error"
        session.audit("%s(killed;%s)" % (reason, exit_payload(proc.returncode)[1]), proc.pid)
        if reason == "protocol-error":
            log("session from %s: %s" % (session.who, exc))
        return
    finally:
        relay.close()
    payload, status = exit_payload(proc.returncode)
    if session.server.stopping:
        # The client must learn that the server went away (255), not a status the stop itself caused.
        session.audit("server-stopped(killed;%s)" % status, proc.pid)
        return
    session.conn.send(wire.frame(wire.T_EXIT, payload))
    session.audit(status, proc.pid)
    linger_close(session.conn)


class Relay:
    """Relay state of one running command: poll set, stdin buffer, open pipes."""

    def __init__(self, session):
        self.session = session
        self.conn = session.conn
        self.proc = proc = session.proc
        self.parser = session.parser
        self.in_fd = proc.stdin.fileno()
        os.set_blocking(self.in_fd, False)
        self.in_open = True
        self.stdin_eof = False
        self.stdin_chunks = []
        self.stdin_bytes = 0
        self.unacked = 0
        out_fd = proc.stdout.fileno()
        err_fd = proc.stderr.fileno()
        self.pipes = {out_fd: wire.T_STDOUT, err_fd: wire.T_STDERR}
        self.files = {out_fd: proc.stdout, err_fd: proc.stderr}
        self.stream_fd = {1: out_fd, 2: err_fd}
        self.readbuf = None         # allocated once a command turns out to produce bulk output
        self.poller = select.poll()
        self.masks = {}
        self.pidfd = None
        if hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(proc.pid)
            except OSError:
                self.pidfd = None

    def want(self, fd, mask):
        if self.masks.get(fd, 0) != mask:
            if mask:
                self.poller.register(fd, mask)
                self.masks[fd] = mask
            else:
                self.poller.unregister(fd)
                del self.masks[fd]

    def close(self):
        if self.pidfd is not None:
            self.want(self.pidfd, 0)
            os.close(self.pidfd)
            self.pidfd = None

    def run(self, events):
        conn = self.conn
        proc = self.proc
        sockfd = conn.fileno()
        pidfd = self.pidfd
        conn.send(wire.frame(wire.T_PID, proc.pid.to_bytes(4, "big")))
        self.handle(events)
        if pidfd is not None:
            self.want(pidfd, POLLIN)
        exited_at = None
        check_exit = pidfd is None
        while True:
            self.want(self.in_fd, POLLOUT if self.stdin_bytes and self.in_open else 0)
            pipes_wanted = conn.pending < OUT_HIGH
            for fd in self.pipes:
                self.want(fd, POLLIN if pipes_wanted else 0)
            self.want(sockfd, POLLIN | (POLLOUT if conn.out else 0))
            timeout = None
            if exited_at is not None:
                if self.pipes:
                    timeout = max(0.0, (exited_at + DRAIN_GRACE - time.monotonic()) * 1000.0)
            elif pidfd is None:
                timeout = 50
            ready = self.poller.poll(timeout)
            for fd, event in ready:
                if fd == sockfd:
                    if event & POLLOUT:
                        conn.flush()
                    if event & (POLLIN | POLLERRS):
                        for chunk in conn.recv():
                            self.handle(self.parser.feed(chunk))
                elif fd == pidfd:
                    self.want(pidfd, 0)
                    check_exit = True
                elif fd == self.in_fd:
                    self.write_stdin()
                elif fd in self.pipes:
                    self.read_pipe(fd)
            if exited_at is None and check_exit and proc.poll() is not None:
                exited_at = time.monotonic()
                self.close_stdin(notify=False)
            if exited_at is not None and self.pipes and pipes_wanted and time.monotonic() >= exited_at + DRAIN_GRACE:
                # Something still holds the pipes open (a background child): stop waiting for it.
                readable = set(fd for fd, event in ready)
                for fd in list(self.pipes):
                    if fd not in readable:
                        self.close_pipe(fd, send_eof=True)
            self.send_ack()
            if exited_at is not None and not self.pipes:
                return
            if conn.out:
                conn.flush()

    def handle(self, events):
        for ftype, payload in events:
            if ftype == wire.T_STDIN:
                self.stdin(payload)
            elif ftype == wire.T_SIGNAL:
                self.signal(payload)
            elif ftype == wire.T_EOF:
                self.eof(payload)
            else:
                raise ProtocolError("unexpected frame type 0x%02x during a session" % ftype)

    def stdin(self, payload):
        if self.stdin_eof:
            raise ProtocolError("STDIN after EOF")
        if not payload:
            return
        if not self.in_open:
            self.unacked += len(payload)        # the command closed its stdin: drop, keep the window open
            return
        self.stdin_chunks.append(payload)
        self.stdin_bytes += len(payload)
        if self.stdin_bytes > wire.STDIN_WINDOW:
            raise ProtocolError("client overran the STDIN window")

    def write_stdin(self):
        chunks = self.stdin_chunks
        while chunks:
            try:
                written = os.write(self.in_fd, chunks[0])
            except BlockingIOError:
                return
            except OSError:         # EPIPE: the command closed its stdin
                self.close_stdin()
                return
            self.unacked += written
            self.stdin_bytes -= written
            if written < len(chunks[0]):
                chunks[0] = memoryview(chunks[0])[written:]
                return
            chunks.pop(0)
        if self.stdin_eof:
            self.close_stdin(notify=False)

    def close_stdin(self, notify=True):
        if not self.in_open:
            return
        self.in_open = False
        self.unacked += self.stdin_bytes
        self.stdin_bytes = 0
        self.stdin_chunks = []
        self.want(self.in_fd, 0)
        self.proc.stdin.close()
        if notify:
            # Tell the client to stop reading its stdin.
            self.conn.send(wire.frame(wire.T_EOF, b"\x00"))

    def send_ack(self):
        if self.unacked:
            self.conn.send(wire.frame(wire.T_ACK, self.unacked.to_bytes(4, "big")))
            self.unacked = 0

    def signal(self, payload):
        name = payload.decode("ascii", "replace")
        if name not in wire.SIGNAL_NAMES:
            log("session from %s: ignoring unknown signal %r" % (self.session.who, name))
            return
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, getattr(signal, "SIG" + name))
            except OSError:
                pass

    def eof(self, payload):
        stream = payload[0] if payload else -1
        if stream == 0:
            self.stdin_eof = True
            if not self.stdin_chunks:
                self.close_stdin(notify=False)
        elif stream in (1, 2):
            fd = self.stream_fd[stream]
            if fd in self.pipes:
                # The client's reader is gone: close our end so the command gets EPIPE/SIGPIPE.
                self.close_pipe(fd, send_eof=False)
        else:
            raise ProtocolError("EOF for unknown stream")

    def read_pipe(self, fd):
        view = self.readbuf
        if view is None:
            # Small reads first, so that hundreds of chatty sessions need no big buffers.
            try:
                data = os.read(fd, SMALL_READ)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close_pipe(fd, send_eof=True)
                return
            self.conn.send(wire.header(self.pipes[fd], len(data)) + data)
            if len(data) == SMALL_READ:
                self.readbuf = memoryview(bytearray(wire.HEADER_LEN + PIPE_READ))
            return
        # Bulk: read straight behind a 5-byte header slot, one send, no extra copy.
        try:
            got = os.readv(fd, (view[wire.HEADER_LEN:],))
        except BlockingIOError:
            return
        except OSError:
            got = 0
        if got:
            view[0:wire.HEADER_LEN] = wire.header(self.pipes[fd], got)
            self.conn.send_view(view[:wire.HEADER_LEN + got])
        else:
            self.close_pipe(fd, send_eof=True)

    def close_pipe(self, fd, send_eof):
        self.want(fd, 0)
        ftype = self.pipes.pop(fd)
        self.files.pop(fd).close()
        if send_eof:
            self.conn.send(wire.frame(wire.T_EOF, b"\x01" if ftype == wire.T_STDOUT else b"\x02"))


# --------------------------------------------------------------------------
# Server
