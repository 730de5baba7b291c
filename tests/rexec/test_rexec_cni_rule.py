# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HOST's rule for the pods' networks (roles/offload_network), rendered from the role's own defaults
and vars as the rexec role writes it, parsed and decided by the server's code: a DPU (or whoever holds its
certificate) may run only cni-exec, with the configuration's plugin names, and exactly CNI's environment."""

import os

import pytest

from test_rexec_role_render import _load, _trust, allowed, allowlist, template, dataloader

EXEC = "/usr/local/lib/dpu-offload/network/cni-exec"
NETNS = "/var/run/netns/cni-5a1d1e2b-0000-4000-8000-000000000001"
ENV = ["CNI_COMMAND=ADD", "CNI_CONTAINERID=" + "c" * 64, "CNI_NETNS=" + NETNS, "CNI_IFNAME=eth0",
       "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=0087f7d0-3024",
       "CNI_PATH=/usr/lib/cni"]


def rule(**extra):
    variables = {}
    for relative in ("roles/offload_network/defaults/main.yml", "roles/offload_network/vars/main.yml"):
        variables.update(_load(relative))
    variables.update(offload_common_is_host=True, offload_common_rexec_client="/usr/local/bin/rexec",
                     offload_common_rexec_client_env="/etc/rexec/client.env")
    variables.update(_trust(extra))
    templar = template.Templar(loader=dataloader.DataLoader(), variables=variables)
    return templar.template(_trust("{{ __offload_network_rexec_rule }}"))


@pytest.fixture(scope="module")
def rules():
    return allowlist(True, rexec_host_commands=[rule()])


def decide(rules, argv, env):
    return rules.decide(os.fsencode(argv[0]), [os.fsencode(a) for a in argv], [os.fsencode(e) for e in env],
                        None)[1]


def test_each_plugin_of_the_configuration_runs_with_exactly_cnis_environment(rules):
    for name in ("bridge", "host-local", "loopback", "portmap"):
        assert allowed(rules, [EXEC, name], ENV), name
    env = decide(rules, [EXEC, "bridge"], ENV + ["LD_PRELOAD=/tmp/evil.so", "CNI_EXTRA=1", "HOME=/tmp"])
    names = sorted(key for key in env if key.startswith(b"CNI_"))
    assert names == [b"CNI_ARGS", b"CNI_COMMAND", b"CNI_CONTAINERID", b"CNI_IFNAME", b"CNI_NETNS", b"CNI_PATH"]
    assert b"LD_PRELOAD" not in env and b"HOME" not in env


@pytest.mark.parametrize("args", [["macvlan"], ["/usr/lib/cni/bridge"], ["../bridge"], ["bridge", "x"], [],
                                  ["bridgeX"], ["xbridge"]])
def test_only_the_configurations_plugin_names_and_no_paths(rules, args):
    assert not allowed(rules, [EXEC] + args, ENV)


@pytest.mark.parametrize("variable", [
    "CNI_NETNS=/proc/1/ns/net",                          # a namespace outside the runtime's directory
    "CNI_NETNS=/var/run/netns/../../proc/1/ns/net",
    "CNI_NETNS=/var/run/netns/a/b",
    "CNI_PATH=/tmp/evil",                                # plugins from elsewhere
    "CNI_PATH=/usr/lib/cni:/tmp/evil",
    "CNI_COMMAND=EXEC",
    "CNI_CONTAINERID=../../etc",
    "CNI_IFNAME=eth0;reboot",
])
def test_a_variable_outside_cnis_shapes_refuses_the_request(rules, variable):
    name = variable.split("=", 1)[0]
    env = [item for item in ENV if not item.startswith(name + "=")] + [variable]
    assert not allowed(rules, [EXEC, "bridge"], env)


def test_the_rule_names_another_configurations_plugins():
    multus = {"cniVersion": "0.3.1", "name": "multus-cni-network", "plugins": [{"type": "multus"}]}
    rules = allowlist(True, rexec_host_commands=[rule(offload_network_cni_config=multus)])
    assert allowed(rules, [EXEC, "multus"], ENV) and allowed(rules, [EXEC, "loopback"], ENV)
    assert not allowed(rules, [EXEC, "bridge"], ENV)
