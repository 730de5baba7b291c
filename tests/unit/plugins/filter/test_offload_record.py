# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A node's record of its deploy, and the refusal of a run that would change
its address or its partner without a teardown first."""
from __future__ import annotations

import pytest

from ansible_collections.dpu.offload.plugins.filter.offload_record import (
    offload_record,
    offload_record_change,
    offload_record_text,
)

# offload_pair's answer on inventories/lab's DPU.
LAB_DPU = {'is_host': False, 'peer': 'lab-host', 'address': '172.30.77.20', 'peer_address': '172.30.77.10',
           'peer_host': '172.30.77.10', 'family': 'ipv4', 'vsock_cid': 10, 'peer_vsock_cid': 2}
RECORD = 'stock\naddress=172.30.77.20\npeer=lab-host\npeer_address=172.30.77.10\n'


def test_the_record_holds_the_mode_first_then_the_pair():
    assert offload_record_text('stock', LAB_DPU) == RECORD
    assert offload_record(RECORD) == {'engine': 'stock', 'address': '172.30.77.20', 'peer': 'lab-host',
                                      'peer_address': '172.30.77.10'}
    # Without a pair (engine_mode run alone) only the mode, as records were before.
    assert offload_record_text('patched') == 'patched\n'


@pytest.mark.parametrize('text, engine', [('stock\n', 'stock'), ('patched', 'patched'), ('', ''), (None, '')])
def test_records_of_earlier_deploys_and_none_read_as_the_mode_alone(text, engine):
    assert offload_record(text) == {'engine': engine}
    assert offload_record_change(offload_record(text), 'lab-dpu', LAB_DPU) == ''


def test_the_same_pair_goes_on_also_written_otherwise():
    assert offload_record_change(offload_record(RECORD), 'lab-dpu', LAB_DPU) == ''
    v6 = dict(LAB_DPU, address='2001:db8::20', peer_address='2001:db8::10')
    written = 'stock\naddress=2001:DB8:0::20\npeer=lab-host\npeer_address=2001:db8::10\n'
    assert offload_record_change(offload_record(written), 'lab-dpu', v6) == ''


def test_a_new_address_of_the_node_is_refused_naming_the_redeploy():
    # The case: a lab deployed over IPv4, asked for IPv6.
    v6 = dict(LAB_DPU, address='2001:db8::20')
    assert offload_record_change(offload_record(RECORD), 'lab-dpu', v6) == (
        'lab-dpu: it was deployed with dpu_offload_address 172.30.77.20, and the inventory now says 2001:db8::20; an '
        'address changes only through a redeploy (its certificate, rexec and the sshfs mounts name it): run '
        'playbooks/teardown.yml --limit lab-dpu,lab-host, then playbooks/offload.yml with the new address.')


def test_a_new_address_of_the_partner_is_refused_on_this_node_too():
    msg = offload_record_change(offload_record(RECORD), 'lab-dpu', dict(LAB_DPU, peer_address='172.30.77.11'))
    assert msg.startswith('lab-dpu: its partner lab-host was deployed with dpu_offload_address 172.30.77.10, and the '
                          'inventory now says 172.30.77.11;')
    assert msg.endswith('run playbooks/teardown.yml --limit lab-dpu,lab-host, then playbooks/offload.yml with the '
                        'new address.')


def test_a_new_partner_is_refused_naming_the_old_pair():
    msg = offload_record_change(offload_record(RECORD), 'lab-dpu', dict(LAB_DPU, peer='lab-host2'))
    assert msg == ('lab-dpu: it was deployed as the pair of lab-host, and the inventory now pairs it with lab-host2 '
                   '(dpu_offload_host); a pair changes only through a redeploy: run playbooks/teardown.yml --limit '
                   'lab-dpu,lab-host with the inventory that deployed them, then playbooks/offload.yml with this one.')
