# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: how one node of a pair reaches the other over qtfs, by TCP (test builds) or vsock."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

CONNECTIONS = ('tcp', 'vsock')


def _port(value, what):
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if not 0 < number < 65536:
        raise AnsibleFilterError('qtfs_link: %s must be a port (1-65535), got %r' % (what, value))
    return number


def qtfs_link(pair, connection, qtfs_port, uds_port):
    """For one node (pair: offload_common_pair) - module_params: what qtfs_server.ko and qtfs.ko are given to
    reach the qtfs server (the HOST: its address and port over TCP, its vsock context id and port over vsock);
    endpoints: this node's then its peer's endpoint of the unix-socket proxy (the HOST's engine and the DPU's
    udsproxyd take them in that order); host_ports: the TCP ports the HOST opens to its DPU (none over vsock)."""
    if connection not in CONNECTIONS:
        raise AnsibleFilterError('qtfs_link: the connection is tcp or vsock, got %r (offload_common_qtfs_connection)'
                                 % (connection,))
    if not isinstance(pair, dict) or 'is_host' not in pair:
        raise AnsibleFilterError('qtfs_link needs offload_common_pair, got %r' % (pair,))
    port = _port(qtfs_port, 'offload_common_qtfs_port')
    uds = _port(uds_port, 'offload_common_uds_port')
    tcp = connection == 'tcp'
    own = pair.get('address') if tcp else pair.get('vsock_cid')
    peer = pair.get('peer_address') if tcp else pair.get('peer_vsock_cid')
    server = own if pair['is_host'] else peer
    if tcp:
        params = {'qtfs_server_ip': server, 'qtfs_server_port': port}
    else:
        params = {'qtfs_server_vsock_cid': server, 'qtfs_server_vsock_port': port}
    return {
        'module_params': params,
        'endpoints': [own, uds, peer, uds],
        # Base +0 files, +1 epoll, +2 fifos; and the proxy's.
        'host_ports': ['%d-%d' % (port, port + 2), str(uds)] if tcp else [],
    }


class FilterModule:
    """qtfs's connection between the pair."""

    def filters(self):
        return {'qtfs_link': qtfs_link}
