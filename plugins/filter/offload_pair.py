# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: a node's HOST/DPU pair, from the inventory."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.offload_inputs import bare_address

# vsock context ids when the inventory gives none: the HOST's is 2 upstream.
HOST_CID = 2
DPU_CID = 10


def url_host(address):
    """An address as the host part of a URL or an scp-style source: IPv6 literals in brackets."""
    address = bare_address(address)
    return '[%s]' % address if ':' in address else address


def _get(node_vars, name, default=None):
    try:
        value = node_vars[name]
    except KeyError:
        return default
    return default if value is None else value


def _naming(hostvars, dpus, host):
    return [dpu for dpu in dpus if _get(hostvars[dpu], 'dpu_offload_host', '') == host]


def offload_pair(hostvars, node, groups):
    """Return the pair of node: its peer, both addresses, the peer's address
    as a URL host, its address family and both vsock context ids.

    A DPU's peer is the HOST it names in dpu_offload_host; a HOST's peer is
    the DPU that names it. Every HOST pairs with exactly one DPU: a HOST no
    DPU names, or one that several name, stops its own run and theirs.
    """
    hosts = list((groups or {}).get('offload_hosts') or [])
    dpus = list((groups or {}).get('offload_dpus') or [])
    is_host = node in hosts
    if not is_host and node not in dpus:
        raise AnsibleFilterError('%s is in neither offload_hosts nor offload_dpus' % node)
    mine = hostvars[node]
    if is_host:
        named_by = _naming(hostvars, dpus, node)
        if not named_by:
            raise AnsibleFilterError('%s: no DPU of offload_dpus names this HOST in dpu_offload_host; '
                                     'every HOST needs exactly one (see inventories/example/hosts.yml)' % node)
        peer = named_by[0]
    else:
        peer = str(_get(mine, 'dpu_offload_host', ''))
        if not peer:
            raise AnsibleFilterError('%s: a DPU needs dpu_offload_host, the inventory name of its HOST '
                                     '(see inventories/example/hosts.yml)' % node)
        if peer not in hosts:
            raise AnsibleFilterError('%s: dpu_offload_host is %s, which is not a host of offload_hosts' % (node, peer))
        named_by = _naming(hostvars, dpus, peer)
    if len(named_by) > 1:
        raise AnsibleFilterError('%s: the HOST %s is named by %d DPUs (%s) in dpu_offload_host; a HOST pairs with '
                                 'exactly one DPU' % (node, peer if not is_host else node, len(named_by), ', '.join(named_by)))
    theirs = hostvars[peer]
    # The inventory may bracket an IPv6 address; the roles get it bare.
    peer_address = bare_address(_get(theirs, 'dpu_offload_address', ''))
    return {
        'is_host': is_host,
        'peer': peer,
        'address': bare_address(_get(mine, 'dpu_offload_address', '')),
        'peer_address': peer_address,
        'peer_host': url_host(peer_address),
        'family': 'ipv6' if ':' in peer_address else 'ipv4',
        'vsock_cid': _get(mine, 'dpu_offload_vsock_cid', HOST_CID if is_host else DPU_CID),
        # An empty or zero id counts as none given, as before.
        'peer_vsock_cid': _get(theirs, 'dpu_offload_vsock_cid') or (DPU_CID if is_host else HOST_CID),
    }


class FilterModule:
    """The pair of a node."""

    def filters(self):
        return {'offload_pair': offload_pair, 'url_host': url_host}
