# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod networks on the HOST, decided on the DPU: what both sides of the CNI relay share.

The DPU's containerd runs CNI for a pod as it always does: it makes a
network namespace, then runs each plugin of its configuration from its CNI
bin directory. There every plugin name is the DPU's entry point (cni_dpu),
which runs the plugin of that name on the HOST through rexec; the HOST's
entry point (cni_host) makes the namespace at the same path on the HOST,
where the pod's sandbox joins it, and runs the HOST's own plugin binary with
exactly CNI's environment. Each side records, per container, the
attachments (network, interface, plugin) added; the HOST removes its
namespace when the last one is deleted, and can undo every attachment left
(teardown). Python 3.9+ standard library.
"""

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import subprocess

PLUGIN_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
NETNS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# CNI's environment; CNI_PATH is set by whoever runs the plugin.
CNI_KEYS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS")
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")
# The calls that name a container and carry a network configuration.
CONTAINER_COMMANDS = ("ADD", "DEL", "CHECK")
# CNI's well-known error codes.
ERR_ENV = 4
ERR_CONFIG = 7
ERR_TRY_LATER = 11


class CNIError(Exception):
    def __init__(self, code, msg, details=""):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details


def error_json(version, error):
    return json.dumps({"cniVersion": version or "0.4.0", "code": error.code, "msg": error.msg,
                       "details": error.details}) + "\n"


def parse_config(data):
    """The network configuration a plugin gets on stdin: (dict, its cniVersion)."""
    try:
        config = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except ValueError as exc:
        raise CNIError(ERR_CONFIG, "the network configuration is not JSON: %s" % exc)
    if not isinstance(config, dict):
        raise CNIError(ERR_CONFIG, "the network configuration is not a JSON object")
    return config, str(config.get("cniVersion", ""))


def config_version(data):
    try:
        return parse_config(data)[1]
    except CNIError:
        return ""


def check_plugin(plugin):
    if not PLUGIN_NAME.match(plugin):
        raise CNIError(ERR_CONFIG, "%r is not a plugin name" % plugin)


def cni_env(environ, plugin_dir):
    """Exactly CNI's variables of environ, CNI_PATH set to plugin_dir; empty ones left out."""
    env = {key: environ[key] for key in CNI_KEYS if environ.get(key)}
    command = env.get("CNI_COMMAND")
    if command not in COMMANDS:
        raise CNIError(ERR_ENV, "CNI_COMMAND %r is not one of %s" % (command, ", ".join(COMMANDS)))
    container = env.get("CNI_CONTAINERID", "")
    if container and not CONTAINER_ID.match(container):
        raise CNIError(ERR_ENV, "CNI_CONTAINERID %r is not a container id" % container)
    if command in CONTAINER_COMMANDS and not container:
        raise CNIError(ERR_ENV, "CNI_CONTAINERID is missing")
    env["CNI_PATH"] = plugin_dir
    return env


def netns_name(path, netns_dir):
    """The namespace name of path, which must be a direct entry of netns_dir; CNIError otherwise."""
    head, name = os.path.split(path)
    if path != os.path.normpath(path) or os.path.normpath(head) != os.path.normpath(netns_dir) \
            or not NETNS_NAME.match(name):
        raise CNIError(ERR_ENV, "CNI_NETNS %r is not a namespace of %s" % (path, netns_dir))
    return name


def attachment(config, env, plugin):
    """What one plugin call adds or deletes: network name, interface, plugin."""
    return "%s/%s/%s" % (config.get("name", ""), env.get("CNI_IFNAME", ""), plugin)


EMPTY = {"netns": "", "attached": []}


def added(record, key, netns, call=None):
    """The record after a successful ADD of key; call (plugin, env, config) lets it be undone later."""
    entry = dict(call or {}, key=key)
    attached = [a for a in record["attached"] if a["key"] != key] + [entry]
    return dict(record, netns=netns or record["netns"], attached=attached)


def deleted(record, key):
    """The record after a successful DEL of key; None when nothing is attached any more."""
    attached = [a for a in record["attached"] if a["key"] != key]
    return dict(record, attached=attached) if attached else None


class Records:
    """Per container: its namespace path and the attachments added, a JSON file each."""

    def __init__(self, directory):
        self.directory = directory

    def path(self, container_id):
        return os.path.join(self.directory, container_id + ".json")

    def load(self, container_id):
        try:
            with open(self.path(container_id), encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            return dict(EMPTY)
        if not isinstance(record, dict) or not isinstance(record.get("attached"), list):
            return dict(EMPTY)
        attached = [a for a in record["attached"] if isinstance(a, dict) and isinstance(a.get("key"), str)]
        loaded = {"netns": str(record.get("netns", "")), "attached": attached}
        if isinstance(record.get("ip"), str):
            loaded["ip"] = record["ip"]
        return loaded

    def save(self, container_id, record):
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        tmp = self.path(container_id) + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
        os.replace(tmp, self.path(container_id))

    def drop(self, container_id):
        try:
            os.unlink(self.path(container_id))
        except FileNotFoundError:
            pass

    def update(self, container_id, change):
        """Apply change(record) -> record or None (drop) under the lock; return what it returned."""
        with self.locked():
            new = change(self.load(container_id))
            if new is None:
                self.drop(container_id)
            else:
                self.save(container_id, new)
            return new

    @contextlib.contextmanager
    def locked(self):
        """CRI adds a pod's networks at once (loopback beside the pod network): one writer at a time."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.directory, ".lock"),
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def all(self):
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        return [name[:-5] for name in names if name.endswith(".json") and CONTAINER_ID.match(name[:-5])]


def is_netns(path):
    """True when path is a namespace file (a bind of nsfs), not a plain file or nothing."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def run_ip(args):
    done = subprocess.run(["ip"] + args, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CNIError(ERR_TRY_LATER, "ip %s failed: %s" % (" ".join(args), done.stderr.strip()))


def ensure_netns(path, netns_dir):
    """Make the namespace at path unless one is there (a plain file left there is replaced); True if made."""
    name = netns_name(path, netns_dir)
    if is_netns(path):
        return False
    if os.path.lexists(path):
        os.unlink(path)
    run_ip(["netns", "add", name])
    return True


def remove_netns(path, netns_dir):
    name = netns_name(path, netns_dir)
    if is_netns(path) or os.path.lexists(path):
        run_ip(["netns", "delete", name])


def pod_address(result):
    """The first address of a CNI result that is not a loopback one (the pod's), or None."""
    for entry in (result or {}).get("ips") or []:
        try:
            ip = ipaddress.ip_interface(str(entry.get("address", ""))).ip
        except (ValueError, AttributeError):
            continue
        if not ip.is_loopback:
            return str(ip)
    return None


def result_problems(result, subnets):
    """Why a plugin's ADD result must not be believed: an address outside the pod subnets."""
    if not subnets or not isinstance(result, dict):
        return []
    nets = [ipaddress.ip_network(s, strict=False) for s in subnets]
    problems = []
    for entry in result.get("ips") or []:
        address = str(entry.get("address", "")) if isinstance(entry, dict) else ""
        try:
            ip = ipaddress.ip_interface(address).ip
        except ValueError:
            problems.append("address %r is not an address" % address)
            continue
        # The loopback plugin reports the namespace's own lo addresses.
        if not ip.is_loopback and not any(ip in net for net in nets if net.version == ip.version):
            problems.append("address %s is outside the pod subnets %s" % (ip, ", ".join(map(str, nets))))
    return problems


def load_settings(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
