"""What offload_network writes on each side, rendered with its own defaults, vars and templates
(tests/render/network.yml): the default pod network on an IPv4 and an IPv6 pair, and the example
multus + SR-IOV configuration (inventories/example/multus-sriov.yml)."""
import json
import pathlib
import py_compile

import pytest
import yaml

from render_lib import ROOT, node_data, render

EXAMPLE = ROOT / 'inventories' / 'example' / 'multus-sriov.yml'
CONF = '_etc_dpu-offload_network_cni_10-%s.conflist'
UNIT = '_etc_systemd_system_dpu-offload-pod-network.service'


@pytest.fixture(scope='module')
def default(tmp_path_factory):
    out = tmp_path_factory.mktemp('network')
    render('network.yml', out, '--limit', 's4-host,s4-dpu,s6-dpu', inventory=pathlib.Path(__file__).parent / 'pairs.yml')
    return out


@pytest.fixture(scope='module')
def multus(tmp_path_factory):
    out = tmp_path_factory.mktemp('multus')
    render('network.yml', out, '-e', '@%s' % EXAMPLE, '--limit', 's4-host,s4-dpu', inventory=pathlib.Path(__file__).parent / 'pairs.yml')
    return out


def test_the_dpu_gets_the_configuration_and_routes_the_pod_subnet_through_its_host(default):
    data = node_data(default, 's4-dpu')
    assert data['plan']['plugins'] == ['bridge', 'loopback', 'portmap']
    conf = json.loads((default / 's4-dpu' / (CONF % 'dpu-offload-pods')).read_text())
    defaults = yaml.safe_load((ROOT / 'roles/offload_network/defaults/main.yml').read_text())
    assert conf == json.loads(json.dumps(defaults['offload_network_cni_config']))
    unit = (default / 's4-dpu' / UNIT).read_text()
    assert 'ExecStart=ip route replace 10.88.0.0/16 via 192.0.2.20\n' in unit
    assert 'ExecStop=-ip route del 10.88.0.0/16 via 192.0.2.20\n' in unit
    assert 'Before=containerd.service' in unit and 'cni-dpu restore' in unit
    # An IPv6 pair gets no IPv4 route through an IPv6 address.
    assert 'ip route' not in (default / 's6-dpu' / UNIT).read_text()
    assert data['links'][-1] == {'path': '/usr/local/lib/dpu-offload/network/cni/stale', 'state': 'absent'}


def test_the_host_gets_only_its_side_and_the_dpu_checks_results_against_the_subnets(default):
    host = node_data(default, 's4-host')
    assert host['settings'] == {'plugin_dir': '/usr/lib/cni', 'netns_dir': '/var/run/netns',
                                'state_dir': '/run/dpu-offload/network', 'bridges': ['cni-dpu0'],
                                'networks': ['dpu-offload-pods']}
    assert not any(path.endswith(('.conflist', '.service', 'cni_dpu.py')) for path in host['files'])
    dpu = node_data(default, 's4-dpu')['settings']
    assert dpu['subnets'] == ['10.88.0.0/16'] and dpu['host_exec'] == '/usr/local/lib/dpu-offload/network/cni-exec'
    assert dpu['state_dir'] == '/var/lib/dpu-offload/network'


def test_the_launchers_are_python_that_compiles(default, tmp_path):
    for node, name in (('s4-host', 'cni-exec'), ('s4-dpu', 'cni-plugin'), ('s4-dpu', 'cni-dpu')):
        text = (default / node / ('_usr_local_lib_dpu-offload_network_' + name)).read_text()
        assert text.startswith('#!/bin/sh\n') and 'python3 -I -S "$0" "$@"' in text
        copy = tmp_path / (name + '.py')
        copy.write_text(text)
        py_compile.compile(str(copy), doraise=True)


def test_the_multus_example_runs_multus_on_the_host_and_routes_both_networks(multus):
    plan = node_data(multus, 's4-dpu')['plan']
    assert plan['plugins'] == ['loopback', 'multus'] and plan['host_plugins'] == ['loopback', 'multus']
    assert plan['subnets'] == ['10.88.0.0/16', '10.56.217.0/24']
    assert node_data(multus, 's4-host')['rule']['args'] == ['{re:loopback|multus}']
    unit = (multus / 's4-dpu' / UNIT).read_text()
    assert 'ip route replace 10.56.217.0/24 via 192.0.2.20' in unit
    conf = json.loads((multus / 's4-dpu' / (CONF % 'multus-cni-network')).read_text())
    assert conf['plugins'][0]['delegates'][0]['plugins'][0]['type'] == 'bridge'
