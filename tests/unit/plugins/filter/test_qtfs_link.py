# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.qtfs_link import qtfs_link

HOST = {'is_host': True, 'address': '192.0.2.10', 'peer_address': '192.0.2.11', 'vsock_cid': 2, 'peer_vsock_cid': 10}
DPU = {'is_host': False, 'address': '192.0.2.11', 'peer_address': '192.0.2.10', 'vsock_cid': 10, 'peer_vsock_cid': 2}


def test_over_tcp_both_modules_reach_the_hosts_address_and_the_host_opens_its_ports():
    for pair in (HOST, DPU):
        params = qtfs_link(pair, 'tcp', 12345, 12121)['module_params']
        assert params == {'qtfs_server_ip': '192.0.2.10', 'qtfs_server_port': 12345}
    assert qtfs_link(HOST, 'tcp', 12345, 12121)['host_ports'] == ['12345-12347', '12121']
    assert qtfs_link(HOST, 'tcp', '12345', '12121')['endpoints'] == ['192.0.2.10', 12121, '192.0.2.11', 12121]
    assert qtfs_link(DPU, 'tcp', 12345, 12121)['endpoints'] == ['192.0.2.11', 12121, '192.0.2.10', 12121]


def test_over_vsock_the_hosts_context_id_and_no_tcp_port():
    for pair in (HOST, DPU):
        link = qtfs_link(pair, 'vsock', 12345, 12121)
        assert link['module_params'] == {'qtfs_server_vsock_cid': 2, 'qtfs_server_vsock_port': 12345}
        assert link['host_ports'] == []
    assert qtfs_link(DPU, 'vsock', 12345, 12121)['endpoints'] == [10, 12121, 2, 12121]


@pytest.mark.parametrize('pair, connection, port', [(HOST, 'udp', 12345), (HOST, 'tcp', 0), (HOST, 'tcp', 'x'),
                                                    ({'address': 'x'}, 'tcp', 12345)])
def test_bad_input_is_refused(pair, connection, port):
    with pytest.raises(AnsibleFilterError):
        qtfs_link(pair, connection, port, 12121)
