# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the rexec loopback tests.

A throwaway PKI (two CAs, server and client certificates; EC P-256) is built
once per session with the python `cryptography` package when it is
importable, else (or with REXEC_TEST_PKI=openssl) with the `openssl` CLI.  Servers run as subprocesses of the
real roles/rexec/files/rexec/rexec_server with their own allowlist, in tmp dirs.
"""

import datetime
import ipaddress
import os
import shutil
import subprocess

import pytest

from rexec_testlib import RexecServer, Tool, default_entries, free_port, write_allowlist

# --------------------------------------------------------------------------
# PKI


def _pki_cryptography(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def write_key(key, name):
        path = os.path.join(directory, name)
        with open(path, "wb") as handle:
            handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        os.chmod(path, 0o600)
        return path

    def write_cert(cert, name):
        path = os.path.join(directory, name)
        with open(path, "wb") as handle:
            handle.write(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def make_ca(common_name):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return key, cert

    def make_leaf(ca_key, ca_cert, common_name, names=None, usages=None, valid=None):
        key = ec.generate_private_key(ec.SECP256R1())
        if names is None:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                     x509.IPAddress(ipaddress.ip_address("::1"))]
        if usages is None:
            usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        not_before, not_after = valid or (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=2))
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return key, cert

    out = {}
    ca_key, ca_cert = make_ca("rexec-test-ca")
    other_key, other_cert = make_ca("rexec-other-ca")
    out["ca"] = write_cert(ca_cert, "ca.pem")
    out["other_ca"] = write_cert(other_cert, "other-ca.pem")
    past = (now - datetime.timedelta(days=3), now - datetime.timedelta(days=1))
    leaves = {}
    for name, issuer, common_name, names, usages, valid in (
            ("server", (ca_key, ca_cert), "server", None, None, None),
            ("client", (ca_key, ca_cert), "client", [x509.DNSName("client")], None, None),
            ("rogue", (other_key, other_cert), "client", [x509.DNSName("client")], None, None),
            # Same CA, another pair's node: the name is not in REXEC_TLS_PEERS.
            ("other_pair", (ca_key, ca_cert), "other-dpu", [x509.DNSName("other-dpu")], None, None),
            # Allowed by its DNS subjectAltName only.
            ("san_peer", (ca_key, ca_cert), "not-listed", [x509.DNSName("san-peer")], None, None),
            ("expired", (ca_key, ca_cert), "client", [x509.DNSName("client")], None, past),
            ("server_auth_only", (ca_key, ca_cert), "client", [x509.DNSName("client")],
             [ExtendedKeyUsageOID.SERVER_AUTH], None)):
        key, cert = make_leaf(issuer[0], issuer[1], common_name, names, usages, valid)
        leaves[name] = (key, cert)
        out[name + "_key"] = write_key(key, name + ".key")
        out[name + "_cert"] = write_cert(cert, name + ".pem")
    # Issued by a leaf (the client's own certificate, CA:FALSE), sent with that leaf as its chain.
    client_key, client_cert = leaves["client"]
    key, cert = make_leaf(client_key, client_cert, "client", [x509.DNSName("client")])
    out["leaf_issued_key"] = write_key(key, "leaf-issued.key")
    chain = os.path.join(directory, "leaf-issued.pem")
    with open(chain, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM) + client_cert.public_bytes(serialization.Encoding.PEM))
    out["leaf_issued_cert"] = chain
    return out


def _pki_openssl(directory):
    # Only the certificates most tests need; the attack tests that want more skip (see need_pki()).
    def run(*args):
        subprocess.run(("openssl",) + args, cwd=directory, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    ext = os.path.join(directory, "leaf.ext")
    with open(ext, "w", encoding="ascii") as handle:
        handle.write("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=critical,CA:FALSE\n"
                     "extendedKeyUsage=serverAuth,clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    out = {}
    for ca in ("ca", "other-ca"):
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ca + ".key")
        run("req", "-x509", "-new", "-key", ca + ".key", "-subj", "/CN=rexec-test-" + ca, "-days", "2", "-out", ca + ".pem",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    out["ca"] = os.path.join(directory, "ca.pem")
    out["other_ca"] = os.path.join(directory, "other-ca.pem")
    for name, ca in (("server", "ca"), ("client", "ca"), ("rogue", "other-ca")):
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name + ".key")
        run("req", "-new", "-key", name + ".key", "-subj", "/CN=" + name, "-out", name + ".csr")
        run("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key", "-CAcreateserial", "-days", "2",
            "-out", name + ".pem", "-extfile", ext)
        out[name + "_key"] = os.path.join(directory, name + ".key")
        out[name + "_cert"] = os.path.join(directory, name + ".pem")
    return out


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("pki"))
    try:
        from cryptography import x509
    except ImportError:
        x509 = None
    if x509 is None or os.environ.get("REXEC_TEST_PKI") == "openssl":
        if shutil.which("openssl") is None:
            pytest.skip("neither python cryptography nor the openssl CLI is available")
        return _pki_openssl(directory)
    return _pki_cryptography(directory)


# --------------------------------------------------------------------------
# Servers and clients


@pytest.fixture(scope="session")
def base_env():
    env = {key: value for key, value in os.environ.items() if not key.startswith("REXEC_") and key != "CMD_NET_ADDR"}
    return env


@pytest.fixture
def make_server(tmp_path, pki, base_env):
    """Factory: make_server(kind="tls"|"insecure"|"unix"|"tls6", whitelist=None, start=True, program=None, **env)."""
    servers = []

    def factory(kind="tls", entries=None, start=True, program=None, **extra):
        directory = str(tmp_path)
        env = dict(base_env)
        client = dict(base_env)
        client["REXEC_PID_DIR"] = os.path.join(directory, "pids")
        if kind == "unix":
            addr = "unix://" + os.path.join(directory, "rexec-%d.sock" % len(servers))
        elif kind == "tls6":
            addr = "tcp://[::1]:%d" % free_port("::1")
        else:
            addr = "tcp://127.0.0.1:%d" % free_port()
        env["CMD_NET_ADDR"] = client["CMD_NET_ADDR"] = addr
        if kind in ("tls", "tls6"):
            env.update(REXEC_TLS_CA=pki["ca"], REXEC_TLS_CERT=pki["server_cert"], REXEC_TLS_KEY=pki["server_key"],
                       REXEC_TLS_PEERS="client")
            client.update(REXEC_TLS_CA=pki["ca"], REXEC_TLS_CERT=pki["client_cert"], REXEC_TLS_KEY=pki["client_key"])
        elif kind == "insecure":
            env["REXEC_INSECURE"] = client["REXEC_INSECURE"] = "1"
        whitelist = os.path.join(directory, "whitelist-%d" % len(servers))
        write_allowlist(whitelist, default_entries() if entries is None else entries)
        env["REXEC_WHITELIST"] = whitelist
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        server = RexecServer(directory, env, client, whitelist, program)
        servers.append(server)
        if start:
            server.start()
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server):
    return make_server("tls")


# The stream tests' two machines (one tree: host/... and dpu/...), their tools and the HOST's server.


@pytest.fixture
def tree(tmp_path):
    # Short names: unix socket paths must stay under 108 bytes.
    return str(tmp_path)


@pytest.fixture
def tools():
    started = []

    def factory(program, args, env, log_path, ready):
        tool = Tool(program, args, env, log_path)
        started.append(tool)
        return tool.start(ready)

    yield factory
    for tool in started:
        tool.stop()


@pytest.fixture
def host_server(make_server, tree):
    return make_server("tls", REXEC_SOCKET_ALLOW=os.path.join(tree, "host", "s"),
                       REXEC_FIFO_ALLOW=":".join((os.path.join(tree, "dpu", "fifo"), os.path.join(tree, "dpu", "fifo", "*"),
                                                  os.path.join(tree, "dpu", "tasks", "*", "*"))))
