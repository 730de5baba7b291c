# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory's settings, checked before anything is written. The samples
are the collection's own inventories (read from their files, group_vars
included), and the same with one mistake each, as a new user makes it."""
from __future__ import annotations

import copy
import pathlib

import pytest
import yaml

from ansible_collections.dpu.offload.plugins.filter.offload_inputs import (
    PORTS,
    address_problem,
    bare_address,
    offload_inputs,
)
from ansible_collections.dpu.offload.plugins.filter.offload_pair import offload_pair

ROOT = pathlib.Path(__file__).resolve().parents[4]


def inventory(name):
    """(hostvars, groups) of inventories/<name> (or a test's inventory file): hosts' vars over group_vars."""
    path = ROOT / name
    files = [path / 'hosts.yml', path / 'group_vars'] if path.is_dir() else [path, None]
    data = yaml.safe_load(files[0].read_text())
    group_vars = {}
    if files[1] is not None:
        for found in files[1].glob('*.yml'):
            group_vars[found.stem] = yaml.safe_load(found.read_text()) or {}
    hostvars, groups = {}, {}
    for group in ('offload_hosts', 'offload_dpus'):
        groups[group] = list(data[group]['hosts'])
        for node, values in data[group]['hosts'].items():
            hostvars[node] = dict(group_vars.get('all', {}), **((data.get('all') or {}).get('vars') or {}),
                                  **group_vars.get(group, {}), **(values or {}))
    return hostvars, groups


SAMPLES = ['inventories/lab', 'inventories/example', 'inventories/vm', 'tests/render/inventory.yml']
LAB = inventory('inventories/lab')


def problems(sample, node, **changes):
    """offload_inputs for node of a copy of sample whose nodes got changes ({node: {var: value or DELETE}})."""
    hostvars, groups = copy.deepcopy(sample)
    for name, values in changes.items():
        for key, value in values.items():
            if value is DELETE:
                hostvars[name.replace('_', '-')].pop(key, None)
            else:
                hostvars[name.replace('_', '-')][key] = value
    return offload_inputs(hostvars, node, groups)


DELETE = object()


@pytest.mark.parametrize('sample', SAMPLES)
def test_the_collections_inventories_pass(sample):
    hostvars, groups = inventory(sample)
    for node in hostvars:
        assert offload_inputs(hostvars, node, groups) == [], node


@pytest.mark.parametrize('value', ['172.30.77.10', '2001:db8::10', '[2001:db8::10]', ' 10.0.0.1 ', '127.0.0.1',
                                   'fd00::1', '::ffff:192.0.2.1'])
def test_ip_addresses_bare_or_bracketed_are_addresses(value):
    assert address_problem(value) == ''


@pytest.mark.parametrize('value, why', [
    ('not-an-ip', 'not an IP address'), ('lab-host', 'not an IP address'), ('server01.example.net', 'not an IP address'),
    ('172.30.77.300', 'not an IP address'), ('172.30.77', 'not an IP address'), ('[2001:db8::10', 'not an IP address'),
    ('2001:db8::10]', 'not an IP address'), ('172.30.77.10/24', 'not an IP address'), ('tcp://172.30.77.10', 'not an IP address'),
    (10, 'not an IP address'), (True, 'not an IP address'), (['172.30.77.10'], 'not an IP address'),
    ('[172.30.77.10]', 'an IPv4 address in brackets'), ('fe80::1%eth0', 'with a zone'),
    ('0.0.0.0', 'the unspecified address'), ('::', 'the unspecified address'), ('224.0.0.1', 'multicast'),
    ('', 'not set'), ('  ', 'not set'), (None, 'not set'),
])
def test_anything_else_is_refused_with_the_reason(value, why):
    assert why in address_problem(value)


def test_the_pair_filter_takes_a_bracketed_address_bare():
    hostvars, groups = copy.deepcopy(LAB)
    hostvars['lab-host']['dpu_offload_address'] = '[2001:db8::10]'
    hostvars['lab-dpu']['dpu_offload_address'] = '2001:db8::20'
    assert offload_inputs(hostvars, 'lab-dpu', groups) == []
    pair = offload_pair(hostvars, 'lab-dpu', groups)
    assert (pair['peer_address'], pair['peer_host'], pair['family']) == ('2001:db8::10', '[2001:db8::10]', 'ipv6')
    assert offload_pair(hostvars, 'lab-host', groups)['address'] == '2001:db8::10'
    assert bare_address(' [fd00::1] ') == 'fd00::1'


def test_a_bad_address_stops_the_node_with_the_variable_and_a_good_value_and_its_partner_too():
    # The first case: the DPU's address is not an IP address.
    dpu = problems(LAB, 'lab-dpu', lab_dpu={'dpu_offload_address': 'not-an-ip'})
    assert dpu == ['lab-dpu: dpu_offload_address is "not-an-ip", not an IP address; set the node\'s address on the '
                   'HOST<->DPU interconnect, e.g. dpu_offload_address: 192.0.2.11 (IPv6: 2001:db8::11).']
    host = problems(LAB, 'lab-host', lab_dpu={'dpu_offload_address': 'not-an-ip'})
    assert host == ['lab-host: stopped with its DPU lab-dpu, whose dpu_offload_address is refused (its message says '
                    'how to fix it); a pair goes on together.']
    missing = problems(LAB, 'lab-host', lab_host={'dpu_offload_address': DELETE})
    assert missing == ['lab-host: dpu_offload_address is not set; every node needs its address on the HOST<->DPU '
                       'interconnect, e.g. dpu_offload_address: 192.0.2.10.']


@pytest.mark.parametrize('changes, node, expected', [
    ({'lab_dpu': {'dpu_offload_engine': 'nonsense'}}, 'lab-dpu',
     'lab-dpu: dpu_offload_engine is "nonsense"; it is stock (the default) or patched, e.g. dpu_offload_engine: stock.'),
    ({'lab_host': {'dpu_offload_transport': 'nfs'}}, 'lab-host',
     'lab-host: dpu_offload_transport is "nfs"; it is qtfs (kernel modules) or sshfs, e.g. dpu_offload_transport: sshfs.'),
    ({'lab_dpu': {'rexec_port': 77777}}, 'lab-dpu',
     'lab-dpu: rexec_port is 77777, not a TCP port; set a number from 1 to 65535, e.g. rexec_port: 7777.'),
    ({'lab_dpu': {'rexec_port': 'seven'}}, 'lab-dpu',
     'lab-dpu: rexec_port is "seven", not a TCP port; set a number from 1 to 65535, e.g. rexec_port: 7777.'),
    ({'lab_host': {'offload_common_sftp_port': 0}}, 'lab-host',
     'lab-host: offload_common_sftp_port is 0, not a TCP port; set a number from 1 to 65535, e.g. '
     'offload_common_sftp_port: 2222.'),
    ({'lab_host': {'offload_common_qtfs_port': 65534}}, 'lab-host',
     'lab-host: offload_common_qtfs_port is 65534, not a TCP port with the 2 after it free; set a number from 1 to '
     '65533, e.g. offload_common_qtfs_port: 12345.'),
    ({'lab_dpu': {'dpu_offload_vsock_cid': 1}}, 'lab-dpu',
     'lab-dpu: dpu_offload_vsock_cid is 1, not a vsock context id (2 to 4294967294); set a number or leave it unset '
     '(the HOST\'s is 2, the DPU\'s 10), e.g. dpu_offload_vsock_cid: 10.'),
])
def test_a_bad_setting_is_named_with_a_good_value_in_one_line(changes, node, expected):
    assert problems(LAB, node, **changes) == [expected]
    assert '\n' not in expected


@pytest.mark.parametrize('value', [7778, '7778', ' 7778'])
def test_ports_may_be_strings_of_digits_as_an_ini_inventory_gives_them(value):
    both = {'rexec_port': value}
    assert problems(LAB, 'lab-dpu', lab_dpu=both, lab_host=both) == []


@pytest.mark.parametrize('changes, node, expected', [
    ({'lab_dpu': {'dpu_offload_host': DELETE}}, 'lab-dpu',
     'lab-dpu: dpu_offload_host is not set; a DPU names its HOST (an inventory name of offload_hosts), e.g. '
     'dpu_offload_host: lab-host.'),
    ({'lab_dpu': {'dpu_offload_host': 'lab-hots'}}, 'lab-dpu',
     'lab-dpu: dpu_offload_host is "lab-hots", which is not a host of offload_hosts; set the inventory name of this '
     'DPU\'s HOST, e.g. dpu_offload_host: lab-host.'),
    ({'lab_dpu': {'dpu_offload_host': 'lab-hots'}}, 'lab-host',
     'lab-host: no DPU names this HOST; set dpu_offload_host: lab-host on its DPU in offload_dpus (every HOST has '
     'exactly one).'),
])
def test_every_name_resolves_to_one_pair(changes, node, expected):
    assert problems(LAB, node, **changes) == [expected]


def test_a_host_two_dpus_name_stops_all_three():
    hostvars, groups = copy.deepcopy(LAB)
    hostvars['lab-dpu2'] = dict(hostvars['lab-dpu'], dpu_offload_address='172.30.77.21')
    groups['offload_dpus'].append('lab-dpu2')
    for node in ('lab-host', 'lab-dpu', 'lab-dpu2'):
        assert offload_inputs(hostvars, node, groups) == [
            '%s: the HOST lab-host is named by 2 DPUs (lab-dpu, lab-dpu2) in dpu_offload_host; a HOST pairs with '
            'exactly one DPU: set dpu_offload_host of the others to their own HOSTs.' % node]


def test_a_node_in_both_groups_is_refused():
    hostvars, groups = copy.deepcopy(LAB)
    groups['offload_dpus'].append('lab-host')
    assert offload_inputs(hostvars, 'lab-host', groups) == [
        'lab-host: the node is in both offload_hosts and offload_dpus; a node is a HOST or a DPU: keep it in one group.']


@pytest.mark.parametrize('changes, expected', [
    ({'lab_dpu': {'dpu_offload_address': '172.30.77.10'}},
     'lab-dpu: dpu_offload_address 172.30.77.10 is also that of its HOST lab-host; each machine of a pair has its own '
     'address, e.g. dpu_offload_address: 192.0.2.11.'),
    ({'lab_dpu': {'dpu_offload_address': '2001:db8::20'}},
     'lab-dpu: dpu_offload_address 2001:db8::20 is IPv6 and that of its HOST lab-host is IPv4 (172.30.77.10); a pair '
     'talks over one family: set both to IPv4 or both to IPv6, e.g. dpu_offload_address: 192.0.2.11.'),
    ({'lab_dpu': {'dpu_offload_engine': 'patched'}},
     'lab-dpu: dpu_offload_engine is "patched" here and "stock" on its HOST lab-host; a pair has one: set it once for '
     'both (group_vars).'),
    ({'lab_dpu': {'rexec_port': 7778}},
     'lab-dpu: rexec_port is 7778 here and 7777 on its HOST lab-host; each side reaches the other on its own setting: '
     'set it once for both (group_vars), e.g. rexec_port: 7777.'),
    ({'lab_dpu': {'dpu_offload_vsock_cid': 2}, 'lab_host': {'dpu_offload_vsock_cid': 2}},
     'lab-dpu: dpu_offload_vsock_cid 2 is also that of its HOST lab-host; each machine has its own, e.g. '
     'dpu_offload_vsock_cid: 10.'),
])
def test_the_two_machines_of_a_pair_must_agree(changes, expected):
    assert problems(LAB, 'lab-dpu', **changes) == [expected]


def test_a_port_of_the_other_transport_need_not_agree():
    # The lab runs sshfs: qtfs's port is never used.
    assert problems(LAB, 'lab-dpu', lab_dpu={'offload_common_qtfs_port': 4000}) == []


def test_the_example_values_are_the_roles_defaults():
    defaults = {}
    for path in ('roles/rexec/defaults/main.yml', 'roles/offload_common/defaults/main/transport.yml'):
        defaults.update(yaml.safe_load((ROOT / path).read_text()))
    assert {name: defaults[name] for name in PORTS} == {name: value for name, (value, dummy) in PORTS.items()}


def test_a_problem_both_machines_share_is_said_once_each():
    both = {'dpu_offload_engine': 'nonsense'}
    assert problems(LAB, 'lab-host', lab_host=both, lab_dpu=both) == [
        'lab-host: dpu_offload_engine is "nonsense"; it is stock (the default) or patched, e.g. dpu_offload_engine: '
        'stock.']
