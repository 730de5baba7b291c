# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DPU's side of the CNI relay: every CNI plugin of the DPU's containerd.

Installed under each plugin name in containerd's CNI bin directory, it runs
`cni-exec NAME` on the HOST through rexec (the rexec client in this process)
with exactly CNI's environment and the configuration on stdin, and hands the
HOST's result to containerd, after checking that the addresses in it lie in
the pod subnets: what the HOST writes is not believed blindly. Its records
(on disk) let the DPU make its own handle on each pod's namespace again at
boot (`restore`), so a pod keeps its address in CRI through a DPU reboot.
See cni_common.
"""

import json
import os
import sys

from cni_common import (CONTAINER_COMMANDS, CNIError, ERR_CONFIG, ERR_TRY_LATER, Records, added, attachment,
                        check_plugin, cni_env, config_version, deleted, ensure_netns, error_json, is_netns,
                        load_settings, netns_name, parse_config, pod_address, remove_netns, result_problems, run_ip)

LOOPBACK = "loopback"


def read_env_file(path):
    """KEY=VALUE lines (the rexec role's client.env); comments and blanks skipped."""
    env = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key.strip()] = value.strip().strip('"')
    return env


def load_client(rexec):
    """rexec's client_run, from the package beside the rexec program (where the rexec role installed both)."""
    sys.path.insert(0, os.path.dirname(os.path.realpath(rexec)))
    from dpu_offload_rexec.client import client_run  # pylint: disable=import-outside-toplevel
    return client_run


def _read_all(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def remote_plugin(settings, plugin, env, data):
    """cni-exec PLUGIN on the HOST with env, data on its stdin: (status, stdout bytes)."""
    client_env = read_env_file(settings["client_env"])
    client_env.update(env)
    os.environ.clear()
    os.environ.update(client_env)
    client = load_client(settings["rexec"])
    # The client reads fd 0 and writes fd 1: memory files stand in for them (Linux 3.17+).
    stdin_fd = os.memfd_create("cni-config", os.MFD_CLOEXEC)
    os.write(stdin_fd, data)
    os.lseek(stdin_fd, 0, os.SEEK_SET)
    out_fd = os.memfd_create("cni-result", os.MFD_CLOEXEC)
    saved = os.dup(0), os.dup(1)
    os.dup2(stdin_fd, 0)
    os.dup2(out_fd, 1)
    try:
        status = client([settings["host_exec"], plugin])
    finally:
        os.dup2(saved[0], 0)
        os.dup2(saved[1], 1)
        for fd in saved + (stdin_fd,):
            os.close(fd)
    out = _read_all(out_fd)
    os.close(out_fd)
    return status, out


def dpu_call(plugin, data, environ, settings, remote=remote_plugin):
    """One plugin call of the DPU's containerd: (exit status, stdout bytes)."""
    check_plugin(plugin)
    env = cni_env(environ, settings["host_plugin_dir"])
    command = env["CNI_COMMAND"]
    if "CNI_NETNS" in env:
        netns_name(env["CNI_NETNS"], settings["netns_dir"])
    if command not in CONTAINER_COMMANDS:
        return remote(settings, plugin, env, data)
    config = parse_config(data)[0]
    records = Records(settings["state_dir"])
    container = env["CNI_CONTAINERID"]
    key = attachment(config, env, plugin)
    if command == "ADD":
        # Recorded first: a DPU that reboots during the call still makes its handle again.
        records.update(container, lambda record: added(record, key, env.get("CNI_NETNS", "")))
    status, out = remote(settings, plugin, env, data)
    if status != 0 and not out.strip():
        raise CNIError(ERR_TRY_LATER, "dpu.offload: the HOST did not run CNI plugin %s (rexec exit status %d); "
                       "the DPU's containerd log has rexec's reason" % (plugin, status))
    if status == 0 and command == "ADD":
        try:
            result = json.loads(out.decode("utf-8"))
            problems = result_problems(result, settings.get("subnets"))
        except ValueError:
            result, problems = None, ["the result is not JSON"]
        if problems:
            remote(settings, plugin, dict(env, CNI_COMMAND="DEL"), data)
            raise CNIError(ERR_CONFIG, "dpu.offload: refusing what the HOST's %s plugin returned: %s"
                           % (plugin, "; ".join(problems)))
        address = pod_address(result)
        if address:
            # Where port forwarding to this pod goes (cni_forward).
            records.update(container, lambda record: dict(record, ip=address))
    if status == 0 and command == "DEL":
        records.update(container, lambda record: deleted(record, key))
    if status == 0 and command == "ADD" and plugin == LOOPBACK and "CNI_NETNS" in env:
        # containerd's own handle on the pod's namespace gets its loopback up too: CRI's port
        # forwarding dials localhost there, and a pod that stays on the DPU needs it.
        run_ip(["-n", netns_name(env["CNI_NETNS"], settings["netns_dir"]), "link", "set", "lo", "up"])
    return status, out


def main(plugin, settings_path, stdin=None, stdout=None):
    settings = load_settings(settings_path)
    stdout = stdout or sys.stdout.buffer
    data = (stdin or sys.stdin.buffer).read()
    try:
        status, out = dpu_call(plugin, data, dict(os.environ), settings)
    except CNIError as exc:
        status, out = 1, error_json(config_version(data), exc).encode()
    stdout.write(out)
    stdout.flush()
    return status


def restore(settings):
    """At boot: the DPU's (empty) namespace of every pod it had, made again; how many were made."""
    records = Records(settings["state_dir"])
    made = 0
    for container in records.all():
        netns = records.load(container)["netns"]
        if netns and not is_netns(netns) and ensure_netns(netns, settings["netns_dir"]):
            made += 1
    return made


def cleanup(settings):
    """Teardown: the records, and whatever containerd left of them (a namespace, libcni's cached
    results) when its pods went without CNI DEL; how many records."""
    records = Records(settings["state_dir"])
    containers = records.all()
    cache = settings.get("cache_dir", "/var/lib/cni/results")
    try:
        cached = os.listdir(cache)
    except FileNotFoundError:
        cached = []
    for container in containers:
        netns = records.load(container)["netns"]
        if netns and is_netns(netns):
            remove_netns(netns, settings["netns_dir"])
        for name in cached:
            if "-%s-" % container in name:
                os.unlink(os.path.join(cache, name))
        records.drop(container)
    return len(containers)


def service_main(argv, settings_path):
    """dpu-offload-pod-network.service: `restore` at boot, `cleanup` at teardown."""
    settings = load_settings(settings_path)
    if argv == ["restore"]:
        print("pod namespaces made again: %d" % restore(settings))
        return 0
    if argv == ["cleanup"]:
        print("pod records removed: %d" % cleanup(settings))
        return 0
    sys.stderr.write("usage: cni-dpu restore|cleanup\n")
    return 2
