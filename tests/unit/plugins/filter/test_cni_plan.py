# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.cni_plan import cni_links, cni_local, cni_plan

# The role's default: Debian's reference plugins.
DEFAULT = {
    'cniVersion': '1.0.0', 'name': 'dpu-offload-pods',
    'plugins': [
        {'type': 'bridge', 'bridge': 'cni-dpu0', 'isGateway': True, 'ipMasq': True,
         'ipam': {'type': 'host-local', 'ranges': [[{'subnet': '10.88.0.0/16'}], [{'subnet': 'fd88::/64'}]]}},
        {'type': 'portmap', 'capabilities': {'portMappings': True}}]}
# multus delegating to SR-IOV, as seed 002 deploys it: no subnet the plan can read.
MULTUS = {'cniVersion': '0.3.1', 'name': 'multus-cni-network',
          'plugins': [{'type': 'multus', 'kubeconfig': '/etc/cni/net.d/multus.d/multus.kubeconfig',
                       'delegates': [{'type': 'sriov', 'ipam': {'type': 'whereabouts'}}]}]}


def test_the_default_network_needs_the_reference_plugins_on_the_host():
    assert cni_plan(DEFAULT) == {
        'name': 'dpu-offload-pods', 'plugins': ['bridge', 'loopback', 'portmap'],
        'host_plugins': ['bridge', 'host-local', 'loopback', 'portmap'],
        'subnets': ['10.88.0.0/16', 'fd88::/64'], 'bridges': ['cni-dpu0']}


def test_a_legacy_ipam_subnet_is_read_and_normalised():
    config = {'cniVersion': '0.4.0', 'name': 'n', 'plugins': [
        {'type': 'bridge', 'ipam': {'type': 'host-local', 'subnet': '10.1.2.3/24'}}]}
    assert cni_plan(config)['subnets'] == ['10.1.2.0/24']
    assert cni_plan(config)['bridges'] == ['cni0']


def test_given_subnets_win_where_the_ipam_names_none():
    plan = cni_plan(MULTUS, ['10.56.217.0/24'])
    assert plan['plugins'] == ['loopback', 'multus'] and plan['subnets'] == ['10.56.217.0/24']
    assert cni_plan(MULTUS)['subnets'] == []


@pytest.mark.parametrize('config, words', [
    ([DEFAULT], 'must be a network configuration list'),
    ({'cniVersion': '1.0.0', 'plugins': [{'type': 'bridge'}]}, 'needs a "name"'),
    ({'name': 'n', 'plugins': [{'type': 'bridge'}]}, 'cniVersion'),
    ({'cniVersion': '1.0.0', 'name': 'n', 'type': 'bridge'}, 'non-empty "plugins" list'),
    ({'cniVersion': '1.0.0', 'name': 'n', 'plugins': [{'type': '/usr/lib/cni/bridge'}]}, 'plain plugin name'),
    ({'cniVersion': '1.0.0', 'name': 'n', 'plugins': [{'type': '../bridge'}]}, 'plain plugin name'),
    ({'cniVersion': '1.0.0', 'name': 'n',
      'plugins': [{'type': 'bridge', 'ipam': {'type': 'host-local', 'subnet': 'ten'}}]}, 'not a network'),
])
def test_bad_configurations_are_refused_naming_the_variable(config, words):
    with pytest.raises(AnsibleFilterError) as error:
        cni_plan(config)
    assert 'offload_network_cni_config' in str(error.value) and words in str(error.value)


def test_bad_given_subnets_are_refused():
    with pytest.raises(AnsibleFilterError, match='not a network'):
        cni_plan(DEFAULT, ['10.88.0.0/33'])
    with pytest.raises(AnsibleFilterError, match='must be a list'):
        cni_plan(DEFAULT, '10.88.0.0/16')


def test_links_name_each_plugin_and_drop_the_ones_no_longer_configured():
    assert cni_links(['bridge', 'loopback'], '/l/cni/', '../cni-plugin', ['bridge', 'macvlan']) == [
        {'path': '/l/cni/bridge', 'src': '../cni-plugin'}, {'path': '/l/cni/loopback', 'src': '../cni-plugin'},
        {'path': '/l/cni/macvlan', 'state': 'absent'}]


@pytest.mark.parametrize('plugins, present', [(['../x'], []), (['bridge'], ['a/b']), (['bridge'], ['.hidden'])])
def test_links_refuse_names_that_are_not_plugin_names(plugins, present):
    with pytest.raises(AnsibleFilterError, match='not a plugin name'):
        cni_links(plugins, '/l/cni', '../cni-plugin', present)


def test_a_local_configuration_runs_the_dpus_own_plugins_under_other_names():
    local = cni_local(DEFAULT)
    assert [p['type'] for p in local['config']['plugins']] == ['local-bridge', 'local-portmap']
    assert local['config']['plugins'][0]['ipam']['type'] == 'local-host-local'
    assert local['links'] == [{'name': 'local-bridge', 'target': 'bridge'},
                              {'name': 'local-host-local', 'target': 'host-local'},
                              {'name': 'local-portmap', 'target': 'portmap'}]
    # The relayed configuration is left as it was.
    assert DEFAULT['plugins'][0]['type'] == 'bridge'


def test_local_links_sit_beside_the_relay_and_are_not_removed():
    entries = cni_links(['bridge', 'loopback'], '/l/cni', '../cni-plugin', ['local-bridge', 'old'],
                        local=[{'name': 'local-bridge', 'target': 'bridge'}])
    assert {'path': '/l/cni/local-bridge', 'src': '/usr/lib/cni/bridge'} in entries
    assert [e['path'] for e in entries if e.get('state') == 'absent'] == ['/l/cni/old']
