# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: what is wrong with the inventory's settings of a node and its pair,
checked before anything is written, each problem one line that names the
variable the user set and shows a value that works."""

from __future__ import annotations

import ipaddress
import json

ENGINES = ('stock', 'patched')
TRANSPORTS = ('qtfs', 'sshfs')
# Port settings a user may give, with the default of the role that reads
# them (what a message shows as a good value; tests/unit holds them to the
# roles' defaults) and how many ports from there on the setting takes.
PORTS = {
    'rexec_port': (7777, 1),
    'offload_common_sftp_port': (2222, 1),
    # files, epoll, fifos: base + 0, 1, 2
    'offload_common_qtfs_port': (12345, 3),
    'offload_common_uds_port': (12121, 1),
}
# Which transport uses a port setting (None: every one).
PORT_TRANSPORT = {'rexec_port': None, 'offload_common_sftp_port': 'sshfs',
                  'offload_common_qtfs_port': 'qtfs', 'offload_common_uds_port': 'qtfs'}
# Example values, as in inventories/example (documentation addresses).
EXAMPLE_ADDRESS = {'host': ('192.0.2.10', '2001:db8::10'), 'dpu': ('192.0.2.11', '2001:db8::11')}
VSOCK_MIN = 2          # 0 and 1 are the hypervisor's and the local one
VSOCK_MAX = 0xFFFFFFFE  # 0xFFFFFFFF is "any"
_UNSET = object()


def _say(value):
    """A value as a message shows it: the way the user wrote it, quoted when a string."""
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, default=str)


def _get(node_vars, name, default=_UNSET):
    try:
        return node_vars[name]
    except KeyError:
        return default


def bare_address(value):
    """An address without surrounding blanks or the brackets of an IPv6 literal."""
    text = '' if value is None else str(value).strip()
    if text.startswith('[') and text.endswith(']'):
        text = text[1:-1]
    return text


def address_problem(value):
    """Why value is not a node's interconnect address ('' when it is one)."""
    if value is None or isinstance(value, (bool, int, float, list, dict)):
        return 'not an IP address' if value is not None else 'not set'
    text = str(value).strip()
    if not text:
        return 'not set'
    bracketed = text.startswith('[') and text.endswith(']')
    try:
        address = ipaddress.ip_address(bare_address(text))
    except ValueError:
        return 'not an IP address'
    if bracketed and address.version == 4:
        return 'an IPv4 address in brackets (brackets are for IPv6 only)'
    if getattr(address, 'scope_id', None):
        return 'an IPv6 address with a zone (%...), which a TLS certificate cannot name'
    if address.is_unspecified:
        return 'the unspecified address, which names no machine'
    if address.is_multicast:
        return 'a multicast address, which names no one machine'
    return ''


def _family(value):
    return 'IPv%d' % ipaddress.ip_address(bare_address(value)).version


def port_problem(value, span=1):
    """Why value is not a TCP port setting ('' when it is one); span ports from it on must fit."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        number = None
    top = 65536 - span
    if number is None or not 0 < number <= top:
        return 'not a TCP port' if span == 1 else 'not a TCP port with the %d after it free' % (span - 1)
    return ''


def _port_number(value):
    return int(str(value).strip())


def vsock_problem(value):
    """Why value is not a vsock context id ('' when it is one)."""
    if isinstance(value, bool):
        return 'not a vsock context id'
    try:
        number = int(str(value).strip())
    except ValueError:
        return 'not a vsock context id'
    if not VSOCK_MIN <= number <= VSOCK_MAX:
        return 'not a vsock context id (%d to %d)' % (VSOCK_MIN, VSOCK_MAX)
    return ''


def _own(hostvars, node, side):
    """(variable, message) for each of node's own settings that is wrong, in the order a user reads them."""
    mine = hostvars[node]
    found = []
    engine = _get(mine, 'dpu_offload_engine')
    if engine is not _UNSET and engine not in ENGINES:
        found.append(('dpu_offload_engine', '%s: dpu_offload_engine is %s; it is stock (the default) or patched, '
                      'e.g. dpu_offload_engine: stock.' % (node, _say(engine))))
    transport = _get(mine, 'dpu_offload_transport')
    if transport is not _UNSET and transport not in TRANSPORTS:
        found.append(('dpu_offload_transport', '%s: dpu_offload_transport is %s; it is qtfs (kernel modules) or '
                      'sshfs, e.g. dpu_offload_transport: sshfs.' % (node, _say(transport))))
    address = _get(mine, 'dpu_offload_address', None)
    why = address_problem(address)
    if why == 'not set':
        found.append(('dpu_offload_address', '%s: dpu_offload_address is not set; every node needs its address on '
                      'the HOST<->DPU interconnect, e.g. dpu_offload_address: %s.'
                      % (node, EXAMPLE_ADDRESS[side][0])))
    elif why:
        found.append(('dpu_offload_address', '%s: dpu_offload_address is %s, %s; set the node\'s address on the '
                      'HOST<->DPU interconnect, e.g. dpu_offload_address: %s (IPv6: %s).'
                      % ((node, _say(address), why) + EXAMPLE_ADDRESS[side])))
    for name, (default, span) in PORTS.items():
        value = _get(mine, name)
        if value is not _UNSET and port_problem(value, span):
            found.append((name, '%s: %s is %s, %s; set a number from 1 to %d, e.g. %s: %d.'
                          % (node, name, _say(value), port_problem(value, span), 65536 - span, name, default)))
    cid = _get(mine, 'dpu_offload_vsock_cid', None)
    if cid is not None and vsock_problem(cid):
        found.append(('dpu_offload_vsock_cid', '%s: dpu_offload_vsock_cid is %s, %s; set a number or leave it unset '
                      '(the HOST\'s is 2, the DPU\'s 10), e.g. dpu_offload_vsock_cid: %d.'
                      % (node, _say(cid), vsock_problem(cid), 2 if side == 'host' else 10)))
    return found


def _naming(hostvars, dpus, host):
    return [dpu for dpu in dpus if str(_get(hostvars[dpu], 'dpu_offload_host', None) or '') == host]


def _pairing(hostvars, node, hosts, dpus):
    """(peer, message): node's peer, or the message that says why it has none."""
    if node in hosts and node in dpus:
        return None, ('%s: the node is in both offload_hosts and offload_dpus; a node is a HOST or a DPU: '
                      'keep it in one group.' % node)
    if node not in hosts and node not in dpus:
        return None, '%s: the node is in neither offload_hosts nor offload_dpus.' % node
    if node in hosts:
        named_by = _naming(hostvars, dpus, node)
        if not named_by:
            return None, ('%s: no DPU names this HOST; set dpu_offload_host: %s on its DPU in offload_dpus '
                          '(every HOST has exactly one).' % (node, node))
        host = node
    else:
        host = _get(hostvars[node], 'dpu_offload_host', None)
        unnamed = [h for h in hosts if not _naming(hostvars, dpus, h)]
        example = (unnamed or hosts or ['server01'])[0]
        if host is None or str(host).strip() == '':
            return None, ('%s: dpu_offload_host is not set; a DPU names its HOST (an inventory name of '
                          'offload_hosts), e.g. dpu_offload_host: %s.' % (node, example))
        if str(host) not in hosts:
            return None, ('%s: dpu_offload_host is %s, which is not a host of offload_hosts; set the inventory name '
                          'of this DPU\'s HOST, e.g. dpu_offload_host: %s.' % (node, _say(host), example))
        host = str(host)
        named_by = _naming(hostvars, dpus, host)
    if len(named_by) > 1:
        return None, ('%s: the HOST %s is named by %d DPUs (%s) in dpu_offload_host; a HOST pairs with exactly one '
                      'DPU: set dpu_offload_host of the others to their own HOSTs.'
                      % (node, host, len(named_by), ', '.join(named_by)))
    return (named_by[0] if node in hosts else host), ''


def _port_value(node_vars, name):
    value = _get(node_vars, name)
    return PORTS[name][0] if value is _UNSET else _port_number(value)


def offload_inputs(hostvars, node, groups):
    """Every problem of node's inventory settings, and of its pair's, as one-line messages (none: go on).

    A node whose partner's settings are wrong is stopped too, with a message
    that names the partner's variables: the pair stops together."""
    hosts = list((groups or {}).get('offload_hosts') or [])
    dpus = list((groups or {}).get('offload_dpus') or [])
    side = 'host' if node in hosts else 'dpu'
    own = _own(hostvars, node, side)
    problems = [message for dummy, message in own]
    peer, why = _pairing(hostvars, node, hosts, dpus)
    if why:
        return problems + [why]
    theirs = _own(hostvars, peer, 'dpu' if side == 'host' else 'host')
    # A node with problems of its own stops on them; one without, on its partner's.
    if theirs and not own:
        names = ', '.join(sorted({name for name, dummy in theirs}))
        problems.append('%s: stopped with its %s %s, whose %s is refused (its message says how to fix it); '
                        'a pair goes on together.' % (node, 'DPU' if side == 'host' else 'HOST', peer, names))
    if own or theirs:
        return problems
    # Both sides are right on their own: now what the two must agree on.
    mine, other = hostvars[node], hostvars[peer]
    what = 'its %s %s' % ('DPU' if side == 'host' else 'HOST', peer)
    address, peer_address = bare_address(mine['dpu_offload_address']), bare_address(other['dpu_offload_address'])
    if ipaddress.ip_address(address) == ipaddress.ip_address(peer_address):
        problems.append('%s: dpu_offload_address %s is also that of %s; each machine of a pair has its own address, '
                        'e.g. dpu_offload_address: %s.' % (node, address, what, EXAMPLE_ADDRESS[side][0]))
    elif _family(address) != _family(peer_address):
        problems.append('%s: dpu_offload_address %s is %s and that of %s is %s (%s); a pair talks over one family: '
                        'set both to IPv4 or both to IPv6, e.g. dpu_offload_address: %s.'
                        % (node, address, _family(address), what, _family(peer_address), peer_address,
                           EXAMPLE_ADDRESS[side][0 if _family(peer_address) == 'IPv4' else 1]))
    for name, default in (('dpu_offload_engine', 'stock'), ('dpu_offload_transport', 'qtfs')):
        here, there = _get(mine, name, default), _get(other, name, default)
        if here != there:
            problems.append('%s: %s is %s here and %s on %s; a pair has one: set it once for both (group_vars).'
                            % (node, name, _say(here), _say(there), what))
    transport = _get(mine, 'dpu_offload_transport', 'qtfs')
    for name, used_by in PORT_TRANSPORT.items():
        if used_by not in (None, transport):
            continue
        here, there = _port_value(mine, name), _port_value(other, name)
        if here != there:
            problems.append('%s: %s is %d here and %d on %s; each side reaches the other on its own setting: '
                            'set it once for both (group_vars), e.g. %s: %d.'
                            % (node, name, here, there, what, name, PORTS[name][0]))
    cid, peer_cid = _get(mine, 'dpu_offload_vsock_cid', None), _get(other, 'dpu_offload_vsock_cid', None)
    if cid is not None and peer_cid is not None and int(str(cid)) == int(str(peer_cid)):
        problems.append('%s: dpu_offload_vsock_cid %s is also that of %s; each machine has its own, e.g. '
                        'dpu_offload_vsock_cid: %d.' % (node, cid, what, 2 if side == 'host' else 10))
    return problems


class FilterModule:
    """The inventory's settings, checked."""

    def filters(self):
        return {'offload_inputs': offload_inputs}
