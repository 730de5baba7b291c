# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rexec's settings: what the environment (and the upstream-style JSON file) says, checked and parsed.

Both sides: CMD_NET_ADDR (or REXEC_CONFIG / the JSON file), REXEC_TLS_CA,
REXEC_TLS_CERT, REXEC_TLS_KEY, REXEC_INSECURE, REXEC_HANDSHAKE_TIMEOUT.
The client (ClientSettings): REXEC_TLS_SERVER_NAME.  The server
(ServerSettings): REXEC_TLS_PEERS, REXEC_WHITELIST, the limits, and the
path allowlists REXEC_SOCKET_ALLOW / REXEC_FIFO_ALLOW (which the policy
modules then apply).  docs/rexec.md lists them all.  No I/O beyond reading
the JSON file and resolving allowlist directories; kept cheap to import.
"""

import os

DEFAULT_PORT = 7777
CLIENT_CONFIG = "/etc/rexec/client.json"
SERVER_CONFIG = "/etc/rexec/server.json"
DEFAULT_WHITELIST = "/etc/rexec/whitelist"
DEFAULT_PID_DIR = "/var/run/rexec/pids"
MAX_SESSIONS = 256          # REXEC_MAX_SESSIONS
HANDSHAKE_TIMEOUT = 10.0    # REXEC_HANDSHAKE_TIMEOUT
MAX_HANDSHAKES = 64         # connections not yet past TLS + HELLO + REQUEST (REXEC_MAX_HANDSHAKES)
MAX_HANDSHAKES_PER_ADDRESS = 32     # of those, from one address (REXEC_MAX_HANDSHAKES_PER_ADDRESS)


class ConfigError(Exception):
    """A setting is missing or unsafe; the server must not start (or, for its allowlist, must refuse)."""


class Address:
    """A parsed CMD_NET_ADDR: tcp (host, port) or unix (path)."""

    def __init__(self, kind, host=None, port=None, path=None):
        self.kind = kind
        self.host = host
        self.port = port
        self.path = path

    def __str__(self):
        if self.kind == "unix":
            return "unix://" + self.path
        if ":" in self.host:
            return "tcp://[%s]:%d" % (self.host, self.port)
        return "tcp://%s:%d" % (self.host, self.port)


def parse_address(text):
    """Parse tcp://HOST:PORT, HOST:PORT, [V6]:PORT or unix:///path.  Raises ValueError."""
    text = text.strip()
    if text.startswith("unix://"):
        path = text[len("unix://"):]
        if not path.startswith("/"):
            raise ValueError("unix socket address needs an absolute path: %r" % text)
        return Address("unix", path=path)
    rest = text
    if rest.startswith("tcp://"):
        rest = rest[len("tcp://"):]
    elif "://" in rest:
        raise ValueError("unsupported address scheme in %r (use tcp:// or unix://)" % text)
    rest = rest.rstrip("/")
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or not tail.startswith(":"):
            raise ValueError("bad IPv6 address %r (expected [ADDR]:PORT)" % text)
        port = tail[1:]
    else:
        host, sep, port = rest.rpartition(":")
        if not sep:
            raise ValueError("address %r has no port (expected HOST:PORT)" % text)
        if ":" in host:
            raise ValueError("IPv6 address in %r must be written in brackets: [ADDR]:PORT" % text)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("bad port in address %r" % text)
    if not host:
        raise ValueError("address %r has no host" % text)
    return Address("tcp", host=host, port=int(port))


def address_from_config(path):
    """Upstream-style {"Protocol": "tcp", "Ipaddr": "...", "Port": "7777"} file."""
    import json
    with open(path, "rb") as handle:
        conf = json.loads(handle.read().decode("utf-8"))
    proto = str(conf.get("Protocol", "tcp")).lower()
    addr = str(conf.get("Ipaddr", ""))
    if proto == "unix":
        return parse_address("unix://" + addr)
    if proto != "tcp":
        raise ValueError("%s: unsupported Protocol %r" % (path, proto))
    port = str(conf.get("Port", DEFAULT_PORT))
    if ":" in addr:
        addr = "[%s]" % addr
    return parse_address("%s:%s" % (addr, port))


def resolve_address(env, config_path):
    """Address from CMD_NET_ADDR, else from the JSON config file.  Raises ValueError."""
    text = env.get("CMD_NET_ADDR")
    if text:
        return parse_address(text)
    if config_path and os.path.exists(config_path):
        try:
            return address_from_config(config_path)
        except (OSError, ValueError) as exc:
            raise ValueError("cannot use %s: %s" % (config_path, exc))
    raise ValueError("CMD_NET_ADDR is not set (e.g. CMD_NET_ADDR=tcp://HOST:%d or unix:///path) and %s does not exist"
                     % (DEFAULT_PORT, config_path))


def tls_settings(env):
    """(ca, cert, key) from REXEC_TLS_*; None when none is set.  Raises ValueError when partial."""
    names = ("REXEC_TLS_CA", "REXEC_TLS_CERT", "REXEC_TLS_KEY")
    values = [env.get(name) or None for name in names]
    if not any(values):
        return None
    missing = [name for name, value in zip(names, values) if not value]
    if missing:
        raise ValueError("incomplete TLS settings: %s not set (REXEC_TLS_CA, REXEC_TLS_CERT and REXEC_TLS_KEY are all needed)"
                         % ", ".join(missing))
    return values


def insecure(env):
    return env.get("REXEC_INSECURE", "") in ("1", "yes", "true")

# --------------------------------------------------------------------------
# The client's settings


class ClientSettings:
    """Where and how the client reaches the peer's rexec_server.  Raises ValueError when incomplete or wrong.

    tls is (ca, cert, key) or None (a unix socket, or REXEC_INSECURE=1 on TCP).
    """

    def __init__(self, env):
        self.addr = resolve_address(env, env.get("REXEC_CONFIG") or CLIENT_CONFIG)
        try:
            self.timeout = float(env.get("REXEC_HANDSHAKE_TIMEOUT") or HANDSHAKE_TIMEOUT)
        except ValueError:
            raise ValueError("REXEC_HANDSHAKE_TIMEOUT must be a number of seconds")
        self.tls = None
        self.server_name = None
        if self.addr.kind == "tcp":
            self.tls = tls_settings(env)
            if self.tls is not None:
                self.server_name = env.get("REXEC_TLS_SERVER_NAME") or self.addr.host
            elif not insecure(env):
                raise ValueError("TLS is not configured for %s: set REXEC_TLS_CA (CA of the server's certificate), "
                                 "REXEC_TLS_CERT and REXEC_TLS_KEY (this client's certificate and key), or "
                                 "REXEC_INSECURE=1 for a plain-TCP test server" % self.addr)


# --------------------------------------------------------------------------
# The server's settings


def parse_peers(text):
    """REXEC_TLS_PEERS: comma-separated certificate names -> frozenset of lower-case names (empty when unset)."""
    if not text:
        return frozenset()
    return frozenset(item.strip().lower() for item in text.split(",") if item.strip())


def parse_allow(text):
    """REXEC_SOCKET_ALLOW / REXEC_FIFO_ALLOW: colon-separated absolute directories (shell wildcards allowed per
    component) -> list of bytes patterns, for policy_access.path_allowed()."""
    entries = []
    if not text:
        return entries
    if isinstance(text, str):
        text = os.fsencode(text)
    for item in text.split(b":"):
        item = item.strip()
        if not item.startswith(b"/") or b".." in item.split(b"/"):
            continue
        item = os.path.normpath(item)
        if not any(char in item for char in (b"*", b"?", b"[")):
            item = os.path.realpath(item)
        entries.append(item)
    return entries


class ServerSettings:
    """Everything rexec_server reads from its environment.  Raises ConfigError when a setting is wrong or unsafe.

    context_files is (ca, cert, key) for a TCP server with TLS, else None;
    insecure_tcp says that REXEC_INSECURE=1 lets plain TCP in; peers is
    None where no certificate is checked (unix socket, insecure TCP).
    """

    def __init__(self, env):
        self.env = env
        self.whitelist = env.get("REXEC_WHITELIST") or DEFAULT_WHITELIST
        self.max_sessions = self.int_setting("REXEC_MAX_SESSIONS", MAX_SESSIONS, 1)
        self.handshake_timeout = self.float_setting("REXEC_HANDSHAKE_TIMEOUT", HANDSHAKE_TIMEOUT)
        self.max_handshakes = self.int_setting("REXEC_MAX_HANDSHAKES", MAX_HANDSHAKES, 1)
        self.max_handshakes_per_address = self.int_setting("REXEC_MAX_HANDSHAKES_PER_ADDRESS",
                                                           MAX_HANDSHAKES_PER_ADDRESS, 1)
        self.socket_allow = parse_allow(env.get("REXEC_SOCKET_ALLOW"))
        self.fifo_allow = parse_allow(env.get("REXEC_FIFO_ALLOW"))
        # FIFO_READ sessions read their fifo through a bounded, dropping spool of this many bytes (0: off).
        self.fifo_spool = self.int_setting("REXEC_FIFO_SPOOL", 0, 0)
        self.address = None
        self.context_files = None
        self.insecure_tcp = False
        self.peers = None

    def int_setting(self, name, default, minimum):
        text = self.env.get(name)
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            raise ConfigError("%s=%r is not an integer" % (name, text))
        if value < minimum:
            raise ConfigError("%s must be at least %d" % (name, minimum))
        return value

    def float_setting(self, name, default):
        text = self.env.get(name)
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            raise ConfigError("%s=%r is not a number" % (name, text))
        if value <= 0:
            raise ConfigError("%s must be positive" % name)
        return value

    def read_transport(self):
        """Where to listen and how: CMD_NET_ADDR, TLS files, REXEC_TLS_PEERS (TLS on TCP unless REXEC_INSECURE=1)."""
        env = self.env
        try:
            self.address = resolve_address(env, env.get("REXEC_CONFIG") or SERVER_CONFIG)
            tls = tls_settings(env)
        except ValueError as exc:
            raise ConfigError(str(exc))
        if self.address.kind != "tcp":
            return
        if tls is None:
            if not insecure(env):
                raise ConfigError(
                    "refusing to listen on %s without TLS: set REXEC_TLS_CA (CA that signs the clients' certificates), "
                    "REXEC_TLS_CERT and REXEC_TLS_KEY (this server's PEM certificate and key); set REXEC_INSECURE=1 "
                    "only to accept unauthenticated plain-TCP clients on purpose" % self.address)
            self.insecure_tcp = True
            return
        self.peers = parse_peers(env.get("REXEC_TLS_PEERS"))
        if not self.peers:
            raise ConfigError(
                "refusing to listen on %s without REXEC_TLS_PEERS: every certificate of the CA would be let in. "
                "Set REXEC_TLS_PEERS to the certificate names (DNS subjectAltName or commonName) of the clients "
                "allowed here, comma-separated, e.g. REXEC_TLS_PEERS=dpu01 (the dpu.offload.rexec role sets it "
                "to the paired node)" % self.address)
        self.context_files = tls
