# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DPU's side of port forwarding to pods whose network is on the HOST.

containerd serves CRI's PortForward (kubectl port-forward) by dialling
localhost:PORT inside the pod's network namespace: for a pod of the offload
that is containerd's own handle on the DPU, which is empty. For each pod the
relay's records name, this daemon listens on one port in that namespace and
redirects every TCP connection to its loopback there (iptables' REDIRECT in
the namespace's nat OUTPUT chain), then connects from the DPU's own namespace
to the pod's address on the HOST, at the port the client asked for (the
original destination), and copies the bytes both ways. The pods' subnets are
routed to the HOST (dpu-offload-pod-network.service). Python 3.9+ standard
library; Linux only.
"""

import ctypes
import os
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time

from cni_common import Records, load_settings, netns_name

CLONE_NEWNET = 0x40000000
SO_ORIGINAL_DST = 80
# The port the relay listens on in each pod's handle; nothing else does there.
RELAY_PORT = 39999
SCAN = 0.5
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def original_port(conn):
    """The port a redirected IPv4 connection was meant for (struct sockaddr_in from SO_ORIGINAL_DST)."""
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    return struct.unpack("!H", raw[2:4])[0]


def redirect_rule(action, relay_port=RELAY_PORT):
    """iptables arguments that add (-A), check (-C) or delete (-D) the redirect of loopback TCP to the relay."""
    return ["-w", "-t", "nat", action, "OUTPUT", "-o", "lo", "-p", "tcp", "-d", "127.0.0.1/32", "!", "--dport",
            str(relay_port), "-j", "REDIRECT", "--to-ports", str(relay_port)]


def in_netns(path, function):
    """Run function() in the network namespace at path, in a thread of its own (setns is per thread)."""
    result = {}

    def run():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns %s" % path)
            finally:
                os.close(fd)
            result["value"] = function()
        except Exception as exc:  # pylint: disable=broad-except
            result["error"] = exc
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def listen_in(path, relay_port=RELAY_PORT):
    """A listening socket on 127.0.0.1:relay_port inside the namespace at path, and its redirect rule."""
    def make():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", relay_port))
        sock.listen(64)
        sock.setblocking(False)
        env = {"PATH": PATH}
        if subprocess.run(["iptables"] + redirect_rule("-C", relay_port), env=env, capture_output=True,
                          check=False).returncode:
            subprocess.run(["iptables"] + redirect_rule("-A", relay_port), env=env, capture_output=True, check=True)
        return sock
    return in_netns(path, make)


def pipe(one, other):
    """Copy bytes both ways until both directions are done."""
    def copy(source, target):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    thread = threading.Thread(target=copy, args=(other, one), daemon=True)
    thread.start()
    copy(one, other)
    thread.join()
    one.close()
    other.close()


def serve(conn, address):
    try:
        port = original_port(conn)
        upstream = socket.create_connection((address, port), timeout=10)
        upstream.settimeout(None)
        conn.setblocking(True)
    except OSError as exc:
        sys.stderr.write("cni-forward: %s:%s: %s\n" % (address, locals().get("port", "?"), exc))
        conn.close()
        return
    pipe(conn, upstream)


def pods(records):
    """{netns path: pod address} of the records with both."""
    found = {}
    for container in records.all():
        record = records.load(container)
        if record["netns"] and record.get("ip"):
            found[record["netns"]] = record["ip"]
    return found


def run(settings, stop=lambda: False):
    records = Records(settings["state_dir"])
    listeners = {}   # netns -> (socket, address)
    selector = selectors.DefaultSelector()
    next_scan = 0.0
    while not stop():
        now = time.monotonic()
        if now >= next_scan:
            next_scan = now + SCAN
            wanted = pods(records)
            for netns in [n for n in listeners if n not in wanted]:
                sock, dummy = listeners.pop(netns)
                selector.unregister(sock)
                sock.close()
            for netns, address in wanted.items():
                if netns in listeners:
                    continue
                try:
                    netns_name(netns, settings["netns_dir"])
                    sock = listen_in(netns)
                except (OSError, subprocess.CalledProcessError, ValueError) as exc:
                    sys.stderr.write("cni-forward: %s: %s\n" % (netns, exc))
                    continue
                listeners[netns] = (sock, address)
                selector.register(sock, selectors.EVENT_READ, netns)
        for key, dummy in selector.select(timeout=SCAN):
            netns = key.data
            try:
                conn, dummy = key.fileobj.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn, listeners[netns][1]), daemon=True).start()


def main(argv, settings_path):
    if argv:
        sys.stderr.write("usage: cni-forward (no arguments)\n")
        return 2
    run(load_settings(settings_path))
    return 0
