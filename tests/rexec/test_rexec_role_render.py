# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The allowlists the rexec role writes, rendered from the roles' own defaults and templates, parsed by the server's code.

What each default entry allows is what the offload needs, with fixed
argument shapes: see docs/rexec.md ("What the default entries allow").
"""

import os

import pytest

yaml = pytest.importorskip("yaml")
template = pytest.importorskip("ansible.template")
dataloader = pytest.importorskip("ansible.parsing.dataloader")
from dpu_offload_rexec import policy_commands  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# The roles' vars use the collection's own filters (dpu.offload.url_host):
# let this process find the collection where `make venv` links it.
finder = pytest.importorskip("ansible.utils.collection_loader._collection_finder")
finder._AnsibleCollectionFinder(paths=[os.path.join(ROOT, ".build", "collections")])._install()  # pylint: disable=protected-access


def _trust(value):
    trust = getattr(template, "trust_as_template", None)
    if trust is None:
        return value
    if isinstance(value, str):
        return trust(value)
    if isinstance(value, list):
        return [_trust(item) for item in value]
    if isinstance(value, dict):
        return {key: _trust(item) for key, item in value.items()}
    return value


def _load(relative):
    with open(os.path.join(ROOT, relative), encoding="utf-8") as handle:
        return _trust(yaml.safe_load(handle))


ROLE_VARS = ("roles/offload_common/defaults/main/remote_commands.yml", "roles/offload_common/defaults/main/rexec.yml",
             "roles/rexec/defaults/main.yml", "roles/rexec/vars/main.yml")
STOCK_VARS = ("roles/stock_engine/defaults/main.yml", "roles/stock_engine/vars/main.yml")


def render(name, is_host, files=ROLE_VARS, **extra):
    variables = {}
    for relative in files:
        variables.update(_load(relative))
    variables.update(offload_common_is_host=is_host, offload_common_peer="lab-dpu" if is_host else "lab-host",
                     offload_common_address="192.0.2.1", offload_common_peer_address="192.0.2.2",
                     inventory_hostname="lab-host" if is_host else "lab-dpu", ansible_managed="managed")
    variables.update(_trust(extra))
    templar = template.Templar(loader=dataloader.DataLoader(), variables=variables)
    with open(os.path.join(ROOT, "roles/rexec/templates", name), encoding="utf-8") as handle:
        return templar.template(_trust(handle.read()))


def allowlist(is_host, files=ROLE_VARS, **extra):
    text = render("whitelist.j2", is_host, files, **extra)
    parsed = policy_commands.parse_allowlist(text.encode(), realpath=lambda path: path)
    assert parsed.problems == [], text
    return parsed


class Procs:
    table = {1: ("systemd", 0), 50: ("sshd", 1), 200: ("containerd-shim", 1), 201: ("nginx", 200), 300: ("runc", 1)}

    def stat(self, pid):
        return self.table.get(pid)

    def exe(self, pid):
        return None


def allowed(rules, argv, env=()):
    argv = [os.fsencode(arg) for arg in argv]
    try:
        rules.decide(argv[0], argv, [os.fsencode(item) for item in env], Procs())
    except policy_commands.Refusal:
        return False
    return True


def test_server_env_names_the_paired_node_as_the_only_peer():
    text = render("server.env.j2", True)
    assert "REXEC_TLS_PEERS=lab-dpu\n" in text
    assert "REXEC_TLS_PEERS=lab-host\n" in render("server.env.j2", False)


def test_host_allowlist_patched_mode():
    rules = allowlist(True)
    assert sorted(rules.rules) == [b"/usr/bin/containerd-shim", b"/usr/bin/kill", b"/usr/sbin/modprobe"]
    kill = "/usr/bin/kill"
    assert allowed(rules, [kill, "-9", "201"]) and allowed(rules, [kill, "-s", "TERM", "200"]) and allowed(rules, [kill, "300"])
    for args in (["-9", "50"], ["-9", "1"], ["-9", "-1"], ["-9", "0"], ["-9", "--", "-200"], ["-l"], []):
        assert not allowed(rules, [kill] + args), args
    modprobe = "/usr/sbin/modprobe"
    assert allowed(rules, [modprobe, "overlay"])
    for args in (["-C", "/var/lib/docker/x", "overlay"], ["-d", "/tmp", "overlay"], ["overlay", "a=1"], ["--dry-run", "overlay"]):
        assert not allowed(rules, [modprobe] + args), args
    shim = ["/usr/bin/containerd-shim", "-namespace", "moby", "-workdir",
            "/var/lib/docker/containerd/daemon/io.containerd.runtime.v1.linux/moby/abc", "-address",
            "/run/containerd/containerd.sock", "-containerd-binary", "/usr/bin/containerd"]
    assert allowed(rules, shim) and allowed(rules, shim + ["-runtime-root", "/var/run/docker/runtime-runc", "-debug"])
    assert not allowed(rules, shim[:-1] + ["/tmp/evil"])              # the binary the shim calls back is fixed
    assert not allowed(rules, shim + ["-bad flag with spaces"])


def test_dpu_allowlist_patched_mode_is_containerd_publish_only():
    rules = allowlist(False)
    assert sorted(rules.rules) == [b"/usr/bin/containerd"]
    publish = ["/usr/bin/containerd", "--address", "/run/containerd/containerd.sock", "publish", "--topic", "/tasks/exit",
               "--namespace", "moby"]
    assert allowed(rules, publish)
    assert not allowed(rules, ["/usr/bin/containerd", "--version"])
    assert not allowed(rules, ["/usr/bin/containerd", "--config", "/tmp/evil.toml"])
    assert not allowed(rules, publish[:2] + ["/tmp/evil.sock"] + publish[3:])
    assert not allowed(rules, ["/usr/bin/dockerd", "--version"])      # the HOST's dockerd wrapper is opt-in


def test_dockerd_wrapper_when_opted_in_runs_only_the_units_command_line():
    rules = allowlist(False, offload_common_host_dockerd_wrapper=True, patched_docker_dockerd_extra_args=["--debug", "a b"])
    assert allowed(rules, ["/usr/bin/dockerd", "--containerd", "/run/containerd/containerd.sock", "--debug", "a b"])
    assert not allowed(rules, ["/usr/bin/dockerd", "--containerd", "/run/containerd/containerd.sock"])
    assert not allowed(rules, ["/usr/bin/dockerd", "--version"])


def stock_shim_rule():
    """stock_engine's own rule for the HOST's shim, as its vars render it with its defaults."""
    variables = {}
    for relative in ("roles/offload_common/defaults/main/remote_commands.yml", "roles/stock_engine/defaults/main.yml",
                     "roles/stock_engine/vars/main.yml"):
        variables.update(_load(relative))
    templar = template.Templar(loader=dataloader.DataLoader(), variables=variables)
    return templar.template(_trust("{{ __stock_engine_shim_rule }}"))


def test_stock_mode_shim_rule():
    # roles/stock_engine passes its shim rule whole (the engine owns its rules).
    rules = allowlist(True, rexec_host_commands=[stock_shim_rule()])
    shim = "/usr/bin/containerd-shim-runc-v2"
    common = [shim, "-namespace", "default", "-address", "/run/containerd/containerd.sock", "-publish-binary",
              "/usr/bin/containerd"]
    env = ["TTRPC_ADDRESS=/run/containerd/containerd.sock.ttrpc", "GOMAXPROCS=2"]
    assert allowed(rules, common + ["-id", "c1", "start"], env)
    assert allowed(rules, common + ["-id", "c1", "-debug", "start"], env)
    assert allowed(rules, common + ["-id", "c1", "-bundle", "/run/containerd/io.containerd.runtime.v2.task/default/c1", "delete"],
                   env)
    assert allowed(rules, common + ["delete"], env)
    assert not allowed(rules, common + ["-id", "c1", "start"], ["TTRPC_ADDRESS=/tmp/evil.sock"])
    assert not allowed(rules, common[:-1] + ["/tmp/evil", "-id", "c1", "start"], env)
    assert not allowed(rules, common + ["-id", "c1", "-bundle", "/tmp/x/y", "delete"], env)
    assert not allowed(rules, [shim, "--help"])


def test_a_path_without_rules_runs_without_arguments_only():
    rules = allowlist(True, rexec_host_commands=["/usr/bin/ps"],
                      rexec_command_rules=[{"command": "/usr/sbin/runc", "args": ["delete {name}"]}],
                      rexec_extra_allowed_commands=["/usr/sbin/runc"])
    assert allowed(rules, ["/usr/bin/ps"]) and not allowed(rules, ["/usr/bin/ps", "-ef"])
    assert allowed(rules, ["/usr/sbin/runc", "delete", "c1"]) and not allowed(rules, ["/usr/sbin/runc", "run", "c1"])


# docker top: dockerd runs `ps OPTIONS -qPIDS` (OPTIONS: the user's, split at blanks, -ef by default), then `ps OPTIONS`.
PS_ALLOWED = [["-ef"], ["-ef", "-q1234,5678"], ["aux"], ["aux", "-q42"], ["-o", "pid,args", "-q42"], ["-o", "comm=", "-p", "1"],
              ["-p", "1"], ["-eo", "pid,user,args"], ["-opid,comm"], ["axjf"], ["-ef", "--forest"], ["--sort=-rss", "-e"],
              ["-o", "pid,comm=COMMAND", "-q7"], ["-efL", "-q1"]]
PS_REFUSED = [[], [""], ["/etc/shadow"], ["-ef", "../../etc/shadow"], ["-n", "/boot/System.map", "-ef"],
              ["-efn", "System.map"], ["N", "System.map"], ["axN", "map"], ["-ef", "-q1", "/tmp/x"], ["--info"],
              ["-o", "pid", "--namelist=/tmp/x"], ["-t", "pts/0"], ["-e\u00b2"]]


def test_stock_mode_ps_takes_only_options_that_read_processes():
    rules = allowlist(True, files=ROLE_VARS + STOCK_VARS,
                      rexec_host_commands="{{ __stock_engine_rexec_vars.host.rexec_host_commands }}")
    assert sorted(rules.rules) == [b"/usr/bin/containerd-shim-runc-v2", b"/usr/bin/ps"]
    for args in PS_ALLOWED:
        assert allowed(rules, ["/usr/bin/ps"] + args), args
    for args in PS_REFUSED:
        assert not allowed(rules, ["/usr/bin/ps"] + args), args
    # and no rule takes anything: every ps rule's words are checked
    assert all(" {any}" not in rule.pattern for rule in rules.rules[b"/usr/bin/ps"])
