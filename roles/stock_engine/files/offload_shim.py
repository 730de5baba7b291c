# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DPU's containerd-shim-runc-v2: every shim call of the DPU's containerd, run on the HOST.

containerd runs `<shim> -namespace NS -address A -publish-binary B [-id ID] start|delete`
in the bundle directory with TTRPC_ADDRESS and GOMAXPROCS set, feeds options
on stdin and reads an address (start) or a protobuf reply (delete) on
stdout.  This module runs the HOST's stock shim with the same argv and
working directory through the rexec client, in this process (one
interpreter per call), and passes stdin and stdout through byte for byte.

Before `start` it refuses a docker container that publishes ports (-p, -P):
they would be published nowhere, since docker's bridge does not run on the
HOST. It checks the bundle's config.json: an OCI hook whose binary
is under /proc (dockerd's `/proc/<its pid>/exe libnetwork-setkey`) names a
process of the DPU; on the HOST that pid is some other process, which runc
would execute as root.  Such hooks never cross: the one of a container with
`--network none` is dropped (runc brings its loopback up by itself), any
other refuses the start with a message that says why.

After `start` it checks the HOST shim's reply before containerd sees it: the
HOST answers it, so it must name a socket in the forwarded shims' directory
(`unix://DIR/<64 hex>`), never another socket of the DPU.  Then it waits
until the forwarded shim socket exists here, since containerd dials the
printed address at once.

A container of a group (a pod's container, whose config.json names its
sandbox in `io.kubernetes.cri.sandbox-id`) joins the group's shim: when that
shim's socket is already forwarded here, `start` answers its address at once
and writes it to the bundle, as the stock shim would, without a round trip
to the HOST.  Python 3.9+ standard library.
"""

import hashlib
import json
import os
import posixpath
import re
import stat
import sys
import time

PROG = "dpu-offload-shim"
CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")
# What the shim itself needs of containerd's environment; nothing else is sent.
KEEP_ENV = ("TTRPC_ADDRESS", "GOMAXPROCS")
# The shim finds runc on its PATH; a standard one, not the DPU's (servers that
# build the command's environment themselves set their own).
SHIM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETWORK_OFFLOAD = ("dpu.offload: container %s asks for network %r: bridge and user-defined networks need "
                   "network offload, which this version does not have (libnetwork would configure, on the DPU, "
                   "a namespace that lives on the HOST). Use --network host, --network none or the default "
                   "(an isolated namespace with loopback only).")
PUBLISHED = ("dpu.offload: container %s publishes ports (%s): docker publishes them through its bridge network, "
             "which this version does not run on the HOST, so they would not be reachable. Use --network host (the "
             "container listens on the HOST's own addresses) or a Kubernetes pod with a hostPort.")
FOREIGN_HOOK = ("dpu.offload: refusing the %s hook %s: it names a process of the DPU (%s), which on the HOST "
                "would be another process run as root")


FOREIGN_ADDRESS = ("dpu.offload: the HOST's shim answered start with %r, which is not a shim socket in %s; "
                   "not handing it to containerd")
SHIM_SOCKET = re.compile(r"^unix://(?P<path>/[^\0\n]*/[0-9a-f]{64})\n?\Z")


BAD_BUNDLE = ("dpu.offload: refusing to start: the bundle %s has a config.json that is not a regular file "
              "(the HOST can write the bundles directory): %s")
MAX_BUNDLE_FILE = 16 << 20
# The annotations that make containers share one shim, in the stock runc shim's order.
GROUP_LABELS = ("io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id")


class Refused(Exception):
    pass


def read_env_file(path):
    """KEY=VALUE lines (the rexec role's client.env); comments and blanks skipped."""
    env = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip().strip('"')
    return env


def action_of(argv):
    """The shim action: the last argument (start, delete); None when there is none."""
    return argv[-1] if argv else None


def shim_flags(argv):
    """containerd's flags to a shim (-namespace N -address A -id ID ...) as a dict; -debug and the action skipped."""
    flags, words = {}, list(argv[:-1])
    while words:
        word = words.pop(0)
        if word.startswith("-") and word != "-debug" and words:
            flags[word.lstrip("-")] = words.pop(0)
    return flags


def shim_socket(socket_dir, containerd_address, namespace, group):
    """The socket of a group's shim: the stock shim hashes containerd's address, the namespace and the group."""
    key = posixpath.normpath("/".join((containerd_address, namespace, group)))
    return "unix://%s/%s" % (socket_dir.rstrip("/"), hashlib.sha256(key.encode("utf-8")).hexdigest())


def group_of(spec, container_id):
    """The group a container's shim serves: its first group annotation, else the container itself."""
    annotations = spec.get("annotations") if isinstance(spec, dict) else None
    for label in GROUP_LABELS:
        if isinstance(annotations, dict) and annotations.get(label):
            return str(annotations[label])
    return container_id


def joined_shim(bundle, argv, socket_dir):
    """The address of the running shim a grouped container joins, or None when a shim must be started."""
    flags = shim_flags(argv)
    if not all(flags.get(name) for name in ("namespace", "address", "id")):
        return None
    try:
        group = group_of(read_bundle_json(bundle, "config.json")[0], flags["id"])
    except (OSError, ValueError):
        return None
    if group == flags["id"]:
        return None
    address = shim_socket(socket_dir, flags["address"], flags["namespace"], group)
    try:
        # Forwarded (the forwarder listens there) while the group's first bundle names it.
        if stat.S_ISSOCK(os.stat(address[len("unix://"):]).st_mode):
            return address
    except OSError:
        pass
    return None


def write_address(bundle, address):
    """bundle/address, replaced atomically (containerd reads it to reconnect after a restart)."""
    replace_in_bundle(bundle, "address", address.encode("utf-8"), 0o644)


def host_config(docker_root, container_id):
    """The HostConfig dockerd recorded for a container, or None when it is not dockerd's."""
    path = os.path.join(docker_root, "containers", container_id, "hostconfig.json")
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def network_mode(docker_root, container_id):
    """The NetworkMode dockerd recorded for a container, or None when it is not dockerd's."""
    config = host_config(docker_root, container_id)
    return None if config is None else config.get("NetworkMode") or "default"


def published_ports(config):
    """What `docker run -p/-P` asked to publish, in a docker-like notation; empty when nothing."""
    if not config or config.get("NetworkMode") == "host":
        return []
    ports = []
    for port, bindings in sorted((config.get("PortBindings") or {}).items()):
        for binding in bindings or [{}]:
            host = "%s:%s" % (binding.get("HostIp") or "", binding.get("HostPort") or "")
            ports.append("%s->%s" % (host.lstrip(":") or "any", port))
    if config.get("PublishAllPorts"):
        ports.append("-P")
    return ports


def clean_hooks(spec, docker_root):
    """Return (spec without DPU-process hooks, changed); raise Refused for a hook that must not run anywhere."""
    hooks = spec.get("hooks")
    if not isinstance(hooks, dict):
        return spec, False
    changed = False
    kept = {}
    for stage, entries in hooks.items():
        kept[stage] = []
        for hook in entries or []:
            path = str(hook.get("path", ""))
            if not os.path.normpath(path).startswith("/proc/"):
                kept[stage].append(hook)
                continue
            args = [str(a) for a in hook.get("args") or []]
            if args[:1] == ["libnetwork-setkey"]:
                ids = [a for a in args[1:] if CONTAINER_ID.match(a)]
                mode = network_mode(docker_root, ids[0]) if ids else None
                if mode == "none":
                    changed = True
                    continue
                if mode is not None:
                    raise Refused(NETWORK_OFFLOAD % (ids[0][:12], mode))
            raise Refused(FOREIGN_HOOK % (stage, " ".join([path] + args), path))
    if not changed:
        return spec, False
    spec = dict(spec)
    spec["hooks"] = {stage: entries for stage, entries in kept.items() if entries}
    if not spec["hooks"]:
        del spec["hooks"]
    return spec, True


def read_bundle_json(bundle, name):
    """(JSON of bundle/NAME, its mode): the HOST may write the bundle, so no link is followed, no fifo waited on."""
    fd = os.open(os.path.join(bundle, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BUNDLE_FILE:
            raise ValueError("%s is not a regular file of at most %d bytes" % (name, MAX_BUNDLE_FILE))
        return json.loads(handle.read(MAX_BUNDLE_FILE + 1).decode("utf-8")), info.st_mode & 0o7777


def replace_in_bundle(bundle, name, data, mode):
    """bundle/NAME replaced atomically by data: a new file (O_EXCL, no link followed) renamed over it."""
    dir_fd = os.open(bundle, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    tmp = ".%s.dpu-offload-%s" % (name, os.urandom(8).hex())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), mode)
                handle.write(data)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)


def check_bundle(bundle, docker_root):
    """Apply clean_hooks to bundle/config.json in place (atomically) when it changes anything."""
    try:
        spec, mode = read_bundle_json(bundle, "config.json")
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        raise Refused(BAD_BUNDLE % (bundle, exc)) from exc
    container_id = os.path.basename(os.path.normpath(bundle))
    ports = published_ports(host_config(docker_root, container_id)) if CONTAINER_ID.match(container_id) else []
    if ports:
        raise Refused(PUBLISHED % (container_id[:12], ", ".join(ports)))
    spec, changed = clean_hooks(spec, docker_root)
    if changed:
        replace_in_bundle(bundle, "config.json", json.dumps(spec).encode("utf-8"), mode)
    return changed


def socket_of(reply, socket_dir):
    """The local path of the shim address a `start` replied (unix://SOCKET_DIR/<64 hex>), or None."""
    match = SHIM_SOCKET.match(reply)
    if not match or os.path.dirname(match.group("path")) != socket_dir.rstrip("/"):
        return None
    return match.group("path")


def wait_for_socket(path, seconds):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def load_client(rexec):
    """rexec's client_run, from the package beside the rexec program (where the rexec role installed both)."""
    sys.path.insert(0, os.path.dirname(os.path.realpath(rexec)))
    from dpu_offload_rexec.client import client_run  # pylint: disable=import-outside-toplevel
    return client_run


def run_remote(config, argv, capture=False):
    """Run the HOST's shim with argv through rexec; (status, captured stdout or None)."""
    env = read_env_file(config["client_env"])
    env.update({k: os.environ[k] for k in KEEP_ENV if k in os.environ})
    env["PATH"] = SHIM_PATH
    os.environ.clear()
    os.environ.update(env)
    client = load_client(config["rexec"])
    if not capture:
        return client([config["host_shim"]] + argv), None
    saved = os.dup(1)
    # The shim's reply, kept in memory (Linux 3.17+) until its socket is forwarded.
    capture_fd = os.memfd_create("shim-start", os.MFD_CLOEXEC)
    os.dup2(capture_fd, 1)
    try:
        status = client([config["host_shim"]] + argv)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    os.lseek(capture_fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        chunk = os.read(capture_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(capture_fd)
    return status, b"".join(chunks)


def say(message):
    os.write(2, ("%s: %s\n" % (PROG, message)).encode("utf-8", "replace"))


def main(argv, config_path):
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    action = action_of(argv)
    if action != "start":
        return run_remote(config, argv)[0]
    try:
        check_bundle(os.getcwd(), config["docker_root"])
    except Refused as exc:
        say(str(exc))
        return 1
    joined = joined_shim(os.getcwd(), argv, config["shim_sockets"])
    if joined:
        write_address(os.getcwd(), joined)
        os.write(1, joined.encode("utf-8"))
        return 0
    status, out = run_remote(config, argv, capture=True)
    if status == 0:
        socket = socket_of(out.decode("utf-8", "replace"), config["shim_sockets"])
        if socket is None:
            say(FOREIGN_ADDRESS % (out[:200].decode("utf-8", "replace"), config["shim_sockets"]))
            return 1
        if not wait_for_socket(socket, float(config.get("wait", 5))):
            say("the shim's socket %s was not forwarded within %s s (is dpu-offload-stock-shims.service running?)"
                % (socket, config.get("wait", 5)))
    os.write(1, out)
    return status
