# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.offload_pair import offload_pair, url_host

# inventories/lab, and a second pair over IPv6 with vsock context ids.
HOSTVARS = {
    'lab-host': {'dpu_offload_address': '172.30.77.10'},
    'lab-dpu': {'dpu_offload_address': '172.30.77.20', 'dpu_offload_host': 'lab-host'},
    'v6-host': {'dpu_offload_address': '2001:db8::10', 'dpu_offload_vsock_cid': 3},
    'v6-dpu': {'dpu_offload_address': '2001:db8::11', 'dpu_offload_host': 'v6-host', 'dpu_offload_vsock_cid': 11},
}
GROUPS = {'offload_hosts': ['lab-host', 'v6-host'], 'offload_dpus': ['lab-dpu', 'v6-dpu']}


def _with(node, **node_vars):
    hostvars = {name: dict(values) for name, values in HOSTVARS.items()}
    hostvars.setdefault(node, {}).update(node_vars)
    return hostvars


def test_a_dpu_pairs_with_the_host_it_names():
    assert offload_pair(HOSTVARS, 'lab-dpu', GROUPS) == {
        'is_host': False, 'peer': 'lab-host', 'address': '172.30.77.20', 'peer_address': '172.30.77.10',
        'peer_host': '172.30.77.10', 'family': 'ipv4', 'vsock_cid': 10, 'peer_vsock_cid': 2,
    }


def test_a_host_pairs_with_the_dpu_that_names_it():
    assert offload_pair(HOSTVARS, 'lab-host', GROUPS) == {
        'is_host': True, 'peer': 'lab-dpu', 'address': '172.30.77.10', 'peer_address': '172.30.77.20',
        'peer_host': '172.30.77.20', 'family': 'ipv4', 'vsock_cid': 2, 'peer_vsock_cid': 10,
    }


def test_ipv6_is_bracketed_and_vsock_ids_come_from_the_inventory():
    dpu = offload_pair(HOSTVARS, 'v6-dpu', GROUPS)
    assert (dpu['peer'], dpu['peer_host'], dpu['family']) == ('v6-host', '[2001:db8::10]', 'ipv6')
    assert (dpu['vsock_cid'], dpu['peer_vsock_cid']) == (11, 3)
    host = offload_pair(HOSTVARS, 'v6-host', GROUPS)
    assert (host['peer'], host['peer_address'], host['vsock_cid'], host['peer_vsock_cid']) == ('v6-dpu', '2001:db8::11', 3, 11)


def test_an_unset_vsock_id_is_the_default():
    # The peer's: empty or zero counts as unset; this node's: only a missing or null one.
    assert offload_pair(_with('lab-host', dpu_offload_vsock_cid=''), 'lab-dpu', GROUPS)['peer_vsock_cid'] == 2
    assert offload_pair(_with('lab-dpu', dpu_offload_vsock_cid=0), 'lab-host', GROUPS)['peer_vsock_cid'] == 10
    assert offload_pair(_with('lab-dpu', dpu_offload_vsock_cid=None), 'lab-dpu', GROUPS)['vsock_cid'] == 10


def test_missing_addresses_are_empty():
    hostvars = _with('lab-host')
    del hostvars['lab-host']['dpu_offload_address']
    pair = offload_pair(hostvars, 'lab-dpu', GROUPS)
    assert (pair['peer_address'], pair['peer_host'], pair['family']) == ('', '', 'ipv4')
    assert offload_pair(hostvars, 'lab-host', GROUPS)['address'] == ''


def test_a_host_named_by_two_dpus_stops_the_host_and_both_dpus_only():
    hostvars = _with('lab-dpu2', dpu_offload_address='172.30.77.21', dpu_offload_host='lab-host')
    groups = {'offload_hosts': GROUPS['offload_hosts'], 'offload_dpus': GROUPS['offload_dpus'] + ['lab-dpu2']}
    for node in ('lab-host', 'lab-dpu', 'lab-dpu2'):
        with pytest.raises(AnsibleFilterError, match=r'the HOST lab-host is named by 2 DPUs \(lab-dpu, lab-dpu2\)'):
            offload_pair(hostvars, node, groups)
    assert offload_pair(hostvars, 'v6-host', groups)['peer'] == 'v6-dpu'


def test_a_host_no_dpu_names_is_refused():
    groups = dict(GROUPS, offload_hosts=GROUPS['offload_hosts'] + ['spare'])
    with pytest.raises(AnsibleFilterError, match='spare: no DPU of offload_dpus names this HOST'):
        offload_pair(_with('spare', dpu_offload_address='192.0.2.1'), 'spare', groups)
    with pytest.raises(AnsibleFilterError, match='no DPU of offload_dpus names this HOST'):
        offload_pair(HOSTVARS, 'lab-host', {'offload_hosts': ['lab-host']})


@pytest.mark.parametrize('dpu_vars, message', [
    ({'dpu_offload_host': None}, 'a DPU needs dpu_offload_host'),
    ({'dpu_offload_host': ''}, 'a DPU needs dpu_offload_host'),
    ({'dpu_offload_host': 'lab-dpu'}, 'dpu_offload_host is lab-dpu, which is not a host of offload_hosts'),
    ({'dpu_offload_host': 'elsewhere'}, 'dpu_offload_host is elsewhere, which is not a host of offload_hosts'),
])
def test_a_dpu_must_name_a_host_of_offload_hosts(dpu_vars, message):
    with pytest.raises(AnsibleFilterError, match=message):
        offload_pair(_with('lab-dpu', **dpu_vars), 'lab-dpu', GROUPS)


def test_a_node_of_neither_group_is_refused():
    with pytest.raises(AnsibleFilterError, match='stranger is in neither offload_hosts nor offload_dpus'):
        offload_pair(_with('stranger'), 'stranger', GROUPS)


@pytest.mark.parametrize('address, host', [
    ('192.0.2.10', '192.0.2.10'), ('2001:db8::1', '[2001:db8::1]'), ('host.example.net', 'host.example.net'),
    ('', ''), (None, ''),
])
def test_url_host(address, host):
    assert url_host(address) == host
