# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the rexec loopback tests (servers, clients, process checks)."""

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

# The programs and their package (dpu_offload_rexec) as the role installs them.
PACKAGE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "roles", "rexec", "files", "rexec"))
# REXEC_TEST_FILES runs the programs of another copy (e.g. an older revision, to show that an attack
# test fails there; before the package, roles/rexec/files held them): they run as subprocesses, while
# the tests speak the protocol with this checkout's package.
FILES = os.path.abspath(os.environ.get("REXEC_TEST_FILES") or PACKAGE_DIR)
CLIENT = os.path.join(FILES, "rexec")
SERVER = os.path.join(FILES, "rexec_server")
PYTHON = sys.executable
START_TIMEOUT = 10.0

# Commands the default test allowlist permits (resolved through PATH here).
ALLOWED = ("true", "false", "sh", "cat", "echo", "env", "sleep", "head", "pwd", "kill", "yes", "wc")

if PACKAGE_DIR not in sys.path:
    sys.path.insert(0, PACKAGE_DIR)


def _ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


HAVE_IPV6 = _ipv6_loopback()


def free_port(host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def write_allowlist(path, entries, mode=0o600):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# rexec test allowlist\n")
        for entry in entries:
            handle.write(entry + "\n")
    os.chmod(path, mode)
    return path


def any_args(path):
    """Allowlist lines for a test command that takes any arguments (the bare line: none at all)."""
    return [path, path + " {any}..."]


def default_entries():
    entries = []
    for name in ALLOWED:
        found = shutil.which(name)
        if found:
            entries.extend(any_args(found))
    return entries


class RexecServer:
    """A rexec_server subprocess; stderr goes to a log file."""

    def __init__(self, directory, env, client_env, whitelist, program=None):
        self.program = program or SERVER
        self.directory = directory
        self.env = env
        self.client_base = client_env
        self.whitelist = whitelist
        self.addr = env["CMD_NET_ADDR"]
        self.log_path = os.path.join(directory, "server-%d.log" % id(self))
        self.proc = None

    def start(self, expect_ready=True):
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([PYTHON, self.program], env=self.env, stdout=subprocess.DEVNULL, stderr=log,
                                         stdin=subprocess.DEVNULL)
        if not expect_ready:
            return self
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if "listening on" in self.log():
                return self
            if self.proc.poll() is not None:
                raise AssertionError("rexec_server exited with %s: %s" % (self.proc.returncode, self.log()))
            time.sleep(0.02)
        raise AssertionError("rexec_server did not start: " + self.log())

    def log(self):
        with open(self.log_path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log():
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def client_env(self, **extra):
        env = dict(self.client_base)
        env.update(extra)
        return env


def run_client(server, args, timeout=20, env=None, **kwargs):
    """Run the rexec client against server; returns CompletedProcess (bytes)."""
    client_env = server.client_env() if env is None else env
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([PYTHON, CLIENT] + list(args), env=client_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, check=False, **kwargs)


def start_client(server, args, env=None, **kwargs):
    client_env = server.client_env() if env is None else env
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([PYTHON, CLIENT] + list(args), env=client_env, **kwargs)


def read_line(stream, timeout=10.0):
    """One line from a pipe, with a timeout (raises AssertionError)."""
    fd = stream.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("timed out waiting for a line, got %r" % data)
        ready, _w, _x = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                raise AssertionError("EOF waiting for a line, got %r" % data)
            data += chunk
    return data


def read_to_eof(handle, progress=None):
    """Everything an unbuffered binary file (a fifo, a pipe) gives until EOF; each chunk's size goes to progress."""
    chunks = []
    while True:
        data = handle.read(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        if progress is not None:
            progress.append(len(data))


def process_group_alive(pgid):
    """True while any non-zombie process is in the group."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def wait_until(predicate, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def pid_gone(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            stat = handle.read()
    except OSError:
        return True
    return stat[stat.rindex(b")") + 2:].split()[0] == b"Z"


# --------------------------------------------------------------------------
# Speaking the protocol directly (an attacker does not use our client)


def connect_raw(server, cert=None, key=None, context=None):
    """A connected socket to server: TLS with the client's (or the given) certificate on TCP, plain on unix."""
    import ssl
    from dpu_offload_rexec.settings import parse_address
    addr = parse_address(server.addr)
    if addr.kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(addr.path)
        return sock
    sock = socket.create_connection((addr.host, addr.port), timeout=10)
    if server.client_base.get("REXEC_INSECURE") == "1":
        return sock
    env = server.client_env()
    if context is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(env["REXEC_TLS_CA"])
        context.load_cert_chain(cert or env["REXEC_TLS_CERT"], key or env["REXEC_TLS_KEY"])
    return context.wrap_socket(sock, server_hostname=addr.host)


def raw_events(sock, timeout=10.0):
    """Frames from the server until EXIT, ERROR or the end of the connection."""
    import ssl
    from dpu_offload_rexec import wire as proto
    parser = proto.FrameParser(proto.FROM_SERVER)
    events = []
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except (ssl.SSLError, OSError):
            break
        if not data:
            break
        events.extend((ftype, bytes(payload)) for ftype, payload in parser.feed(data))
        if any(ftype in (proto.T_EXIT, proto.T_ERROR) for ftype, _payload in events):
            break
    return events


def raw_exec(server, argv, env=(), cwd=b"/", timeout=10.0, **tls):
    """Send one REQUEST as an attacker would (exact argv and environment); returns (status, stdout, stderr, message).

    status: the exit status the rexec client would report (ERROR code, EXIT), None if the connection just ended.
    """
    from dpu_offload_rexec import wire as proto
    sock = connect_raw(server, **tls)
    try:
        request = proto.encode_request([os.fsencode(a) for a in argv], [os.fsencode(e) for e in env], cwd)
        sock.sendall(proto.frame(proto.T_HELLO, proto.HELLO_PAYLOAD) + proto.frame(proto.T_REQUEST, request)
                     + proto.frame(proto.T_EOF, b"\0"))
        events = raw_events(sock, timeout)
    finally:
        sock.close()
    out = b"".join(payload for ftype, payload in events if ftype == proto.T_STDOUT)
    err = b"".join(payload for ftype, payload in events if ftype == proto.T_STDERR)
    for ftype, payload in events:
        if ftype == proto.T_ERROR:
            return payload[0], out, err, payload[1:].decode("utf-8", "replace")
        if ftype == proto.T_EXIT:
            value = int.from_bytes(payload[1:5], "big")
            return (128 + value if payload[0] == proto.EXIT_SIGNAL else value), out, err, ""
    return None, out, err, ""


def rss_kb(pid):
    with open("/proc/%d/status" % pid, encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def compile_c(tmp_path, name, source, shared=False):
    """Build a small C program or shared object with gcc; None when there is no compiler."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return None
    src = os.path.join(str(tmp_path), name + ".c")
    out = os.path.join(str(tmp_path), name)
    with open(src, "w", encoding="ascii") as handle:
        handle.write(source)
    args = [gcc, "-O0", "-o", out, src] + (["-shared", "-fPIC"] if shared else [])
    if subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode != 0:
        return None
    return out


class UnixListener:
    """A unix socket server in a thread that counts connections and hands each to handle (closes it by default)."""

    def __init__(self, path, backlog=128):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(backlog)
        self.sock.settimeout(0.1)
        self.accepted = 0
        self.running = True
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while self.running:
            try:
                conn, _addr = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        conn.close()

    def close(self):
        self.running = False
        self.thread.join(2)
        # Connections still queued reached this socket too (the server had its READY): count them.
        self.sock.setblocking(False)
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                break
            self.accepted += 1
            conn.close()
        self.sock.close()


class Tool:
    """A rexec_forward / rexec_fiforelay subprocess with its stderr in a file."""

    def __init__(self, program, args, env, log_path):
        self.program = program
        self.args = args
        self.env = env
        self.log_path = log_path
        self.proc = None

    def start(self, ready):
        before = self.log().count(ready)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([PYTHON, self.program] + self.args, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)
        assert self.wait_log(ready, count=before + 1), self.log()
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as handle:
                return handle.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, needle, timeout=8.0, count=1):
        return wait_until(lambda: self.log().count(needle) >= count, timeout)

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
