# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HOST's side of the CNI relay: `cni-exec PLUGIN`, run by the paired DPU through rexec.

It makes the pod's namespace at the path the DPU's containerd chose (the
pod's sandbox, run here, joins that path), runs this machine's plugin of that
name against it with exactly CNI's environment and the configuration from
stdin, and prints the plugin's result. `cni-exec --cleanup` (teardown)
deletes every attachment left and the namespaces. See cni_common.
"""

import os
import shlex
import subprocess
import sys

from cni_common import (CONTAINER_COMMANDS, CNIError, ERR_CONFIG, ERR_ENV, Records, added, attachment, check_plugin,
                        cni_env, config_version, deleted, ensure_netns, error_json, is_netns, load_settings,
                        netns_name, parse_config, remove_netns)

# Plugins find iptables, ip and their IPAM plugin on a PATH: a standard one.
PLUGIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def plugin_binary(plugin, settings):
    check_plugin(plugin)
    binary = os.path.join(settings["plugin_dir"], plugin)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise CNIError(ERR_CONFIG, "no CNI plugin %s on the HOST: install it (Debian: containernetworking-plugins)"
                       % binary)
    return binary


def run_plugin(binary, env, data):
    done = subprocess.run([binary], input=data, env=dict(env, PATH=PLUGIN_PATH), capture_output=True, check=False)
    if done.stderr:
        sys.stderr.buffer.write(done.stderr)
    return done.returncode, done.stdout


def host_call(plugin, data, environ, settings):
    """One plugin call: (exit status, stdout bytes)."""
    binary = plugin_binary(plugin, settings)
    env = cni_env(environ, settings["plugin_dir"])
    command = env["CNI_COMMAND"]
    if command not in CONTAINER_COMMANDS:
        return run_plugin(binary, env, data)
    config = parse_config(data)[0]
    records = Records(settings["state_dir"])
    container = env["CNI_CONTAINERID"]
    netns_dir = settings["netns_dir"]
    if command == "ADD":
        if "CNI_NETNS" not in env:
            raise CNIError(ERR_ENV, "CNI_NETNS is missing")
        with records.locked():
            ensure_netns(env["CNI_NETNS"], netns_dir)
    elif command == "DEL":
        # When the DPU's handle is gone (it rebooted) the namespace is the record's.
        netns = env.get("CNI_NETNS") or records.load(container)["netns"]
        env.pop("CNI_NETNS", None)
        if netns:
            netns_name(netns, netns_dir)
            if is_netns(netns):
                env["CNI_NETNS"] = netns
    elif "CNI_NETNS" in env:
        netns_name(env["CNI_NETNS"], netns_dir)
    status, out = run_plugin(binary, env, data)
    if status != 0:
        return status, out
    key = attachment(config, env, plugin)
    if command == "ADD":
        call = {"plugin": plugin, "env": env, "config": data.decode("utf-8", "replace")}
        records.update(container, lambda record: added(record, key, env["CNI_NETNS"], call))
    elif command == "DEL":
        def forget(record):
            left = deleted(record, key)
            if left is None and record["netns"]:
                remove_netns(record["netns"], netns_dir)
            return left
        records.update(container, forget)
    return status, out


def cleanup(settings):
    """Delete every attachment still recorded (newest first) and the namespaces: (done, problems)."""
    records = Records(settings["state_dir"])
    done, problems = 0, []
    for container in records.all():
        record = records.load(container)
        for entry in reversed(record["attached"]):
            env = dict(entry.get("env") or {}, CNI_COMMAND="DEL")
            if record["netns"] and is_netns(record["netns"]):
                env["CNI_NETNS"] = record["netns"]
            else:
                env.pop("CNI_NETNS", None)
            try:
                status, out = run_plugin(plugin_binary(entry.get("plugin", ""), settings), env,
                                         str(entry.get("config", "")).encode("utf-8"))
            except CNIError as exc:
                status, out = 1, exc.msg.encode()
            if status != 0:
                problems.append("%s: DEL %s: %s" % (container, entry["key"], out.decode("utf-8", "replace").strip()))
        if record["netns"]:
            try:
                remove_netns(record["netns"], settings["netns_dir"])
            except CNIError as exc:
                problems.append("%s: %s" % (container, exc.msg))
        records.drop(container)
        done += 1
    return done, problems


# portmap's chains, made once per machine and never removed by a DEL.
PORTMAP_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")
IPAM_BOOKKEEPING = ("lock",)


def run_cmd(args):
    """(status, stdout) of a command; 127 when it is not there."""
    try:
        done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
                              env={"PATH": PLUGIN_PATH, "LC_ALL": "C"})
    except FileNotFoundError:
        return 127, ""
    return done.returncode, done.stdout


def portmap_undo(rules):
    """The iptables calls that remove portmap's chains from a `-t nat -S` listing, or [] while a pod uses them."""
    lines = rules.splitlines()
    if any(line.startswith("-A CNI-HOSTPORT-DNAT ") for line in lines):
        return []
    calls = []
    for line in lines:
        words = shlex.split(line)
        if len(words) > 2 and words[0] == "-A" and words[1] not in PORTMAP_CHAINS and \
                words[-2:-1] == ["-j"] and words[-1] in PORTMAP_CHAINS:
            calls.append(["-D"] + words[1:])
    present = [chain for chain in PORTMAP_CHAINS if "-N %s" % chain in lines]
    calls += [["-F", chain] for chain in present] + [["-X", chain] for chain in present]
    return calls


def machine_leftovers(settings):
    """What the plugins made once for every pod and no DEL removes: the bridges (without ports), portmap's
    chains (with no pod's rule in them), the IPAM plugin's bookkeeping; problems met, if any."""
    problems = []
    for bridge in settings.get("bridges") or []:
        ports = "/sys/class/net/%s/brif" % bridge
        if os.path.isdir(ports) and not os.listdir(ports):
            status, dummy = run_cmd(["ip", "link", "delete", bridge])
            if status != 0:
                problems.append("could not delete the bridge %s" % bridge)
    for tool in ("iptables", "ip6tables"):
        status, rules = run_cmd([tool, "-w", "-t", "nat", "-S"])
        if status != 0:
            continue
        for call in portmap_undo(rules):
            if run_cmd([tool, "-w", "-t", "nat"] + call)[0] != 0:
                problems.append("%s -t nat %s failed" % (tool, " ".join(call)))
    for network in settings.get("networks") or []:
        directory = os.path.join(settings.get("ipam_dir", "/var/lib/cni/networks"), network)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        if all(name in IPAM_BOOKKEEPING or name.startswith("last_reserved_ip") for name in names):
            for name in names:
                os.unlink(os.path.join(directory, name))
            os.rmdir(directory)
    return problems


def main(argv, settings_path, stdin=None, stdout=None):
    settings = load_settings(settings_path)
    stdout = stdout or sys.stdout.buffer
    if argv == ["--cleanup"]:
        done, problems = cleanup(settings)
        problems += machine_leftovers(settings)
        stdout.write(("pods cleaned up: %d\n" % done).encode())
        for problem in problems:
            sys.stderr.write("cni-exec: %s\n" % problem)
        stdout.flush()
        return 1 if problems else 0
    data = (stdin or sys.stdin.buffer).read()
    try:
        if len(argv) != 1:
            raise CNIError(ERR_CONFIG, "usage: cni-exec PLUGIN (the network configuration on stdin) | cni-exec --cleanup")
        status, out = host_call(argv[0], data, os.environ, settings)
    except CNIError as exc:
        status, out = 1, error_json(config_version(data), exc).encode()
    stdout.write(out)
    stdout.flush()
    return status
