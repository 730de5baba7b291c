# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rexec program: run one command on the peer, as if it ran here (the client's side of a command session).

client_run(argv) is the program's work and returns its exit status: the
offload shim and the DPU's CNI call it in their own process.  client_main(argv)
is the rexec launcher's front end (exits, skipping the interpreter's
clean-up).  The connection is dial.Peer's.  Imports only what a command
needs: the client's start-up time matters, and none of the server's modules.
"""

import os
import select
import ssl
import time

# The C module behind `signal`: same functions and SIG* constants, without the
# enum classes whose creation costs the client most of a millisecond.
import _signal as signal

from .common import say, write_all
from .dial import Peer
from .settings import DEFAULT_PID_DIR
from .wire import (CHUNK, EXIT_SIGNAL, FROM_SERVER, HELLO_PAYLOAD, MAGIC, MAX_REQUEST, STDIN_WINDOW, T_ACK, T_EOF, T_ERROR,
                   T_EXIT, T_HELLO, T_NOTICE, T_PID, T_REQUEST, T_SIGNAL, T_STDERR, T_STDIN, T_STDOUT, VERSION,
                   ConnectionLost, Failure, FrameParser, ProtocolError, encode_request, error_failure, frame, header)

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
FORWARDED = {
    signal.SIGINT: b"INT", signal.SIGTERM: b"TERM", signal.SIGHUP: b"HUP",
    signal.SIGQUIT: b"QUIT", signal.SIGUSR1: b"USR1", signal.SIGUSR2: b"USR2",
}
PDEATH_SIGNAL = getattr(signal, "SIGRTMIN", 34) + 3
PR_SET_PDEATHSIG = 1
PDEATH_DELAY = 0.1
EXIT_FAILURE = 255

__all__ = ("Failure", "client_main", "client_run")


class Interrupted(Exception):
    """A signal arrived before the request went out."""


def client_say(message):
    say("rexec", message)


class Client:
    def __init__(self, argv):
        self.argv = argv
        self.env = os.environ
        self.peer = None
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
            self.peer = Peer(self.env)
            self.label = str(self.peer)
            self.conn, early = self.peer.dial(self.request_bytes, reuse_buffers=True)
        except Interrupted as exc:
            raise Failure("interrupted before the command was started", 128 + exc.args[0])
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
                raise error_failure(payload)
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
    code = client_run(argv)
    os._exit(code)


def client_run(argv):
    """The rexec program's work: its exit status (the offload shim runs it in its own process)."""
    if not argv:
        client_say("usage: rexec COMMAND [ARG...]   (server from CMD_NET_ADDR=tcp://HOST:PORT or unix:///path; see docs/rexec.md)")
        return EXIT_FAILURE
    client = Client(argv)
    try:
        return client.run()
    except Failure as exc:
        client_say(exc.message)
        return EXIT_FAILURE if exc.code is None else exc.code
    except Exception as exc:  # never a traceback: one line and 255
        client_say("internal error: %r" % (exc,))
        return EXIT_FAILURE
