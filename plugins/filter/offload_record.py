# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: a node's record of its deploy (the engine mode, its own and its
partner's addresses), and what a new run asks for that only a redeploy can
change."""

from __future__ import annotations

import ipaddress

from ansible_collections.dpu.offload.plugins.filter.offload_inputs import bare_address

KEYS = ('address', 'peer', 'peer_address')


def offload_record_text(engine, pair=None):
    """The record a deploy writes: the mode on the first line (all a record held before), then key=value lines
    of the pair (none when it is not known)."""
    pair = pair or {}
    lines = [str(engine)] + ['%s=%s' % (key, pair[key]) for key in KEYS if key in pair]
    return '\n'.join(lines) + '\n'


def offload_record(text):
    """The record read back: engine ('' when there is none) and, from newer records, address, peer, peer_address."""
    lines = (text or '').splitlines()
    record = {'engine': lines[0].strip() if lines else ''}
    for line in lines[1:]:
        key, sep, value = line.partition('=')
        if sep and key.strip() in KEYS:
            record[key.strip()] = value.strip()
    return record


def _same_address(one, two):
    try:
        return ipaddress.ip_address(bare_address(one)) == ipaddress.ip_address(bare_address(two))
    except ValueError:
        return bare_address(one) == bare_address(two)


def offload_record_change(record, node, pair):
    """'' when the pair the inventory asks for is the one node was deployed with (or nothing tells);
    else the one-line message that refuses the run before anything is written."""
    if not record.get('engine') or any(key not in record for key in KEYS) or any(key not in (pair or {}) for key in KEYS):
        return ''
    redeploy = ('run playbooks/teardown.yml --limit %s,%s, then playbooks/offload.yml with the new address'
                % (node, record['peer']))
    if record['peer'] != pair['peer']:
        return ('%s: it was deployed as the pair of %s, and the inventory now pairs it with %s (dpu_offload_host); '
                'a pair changes only through a redeploy: run playbooks/teardown.yml --limit %s,%s with the inventory '
                'that deployed them, then playbooks/offload.yml with this one.'
                % (node, record['peer'], pair['peer'], node, record['peer']))
    if not _same_address(record['address'], pair['address']):
        return ('%s: it was deployed with dpu_offload_address %s, and the inventory now says %s; an address changes '
                'only through a redeploy (its certificate, rexec and the sshfs mounts name it): %s.'
                % (node, record['address'], pair['address'], redeploy))
    if not _same_address(record['peer_address'], pair['peer_address']):
        return ('%s: its partner %s was deployed with dpu_offload_address %s, and the inventory now says %s; an '
                'address changes only through a redeploy (rexec and the sshfs mounts name it here): %s.'
                % (node, record['peer'], record['peer_address'], pair['peer_address'], redeploy))
    return ''


class FilterModule:
    """A node's deploy record."""

    def filters(self):
        return {'offload_record': offload_record, 'offload_record_text': offload_record_text,
                'offload_record_change': offload_record_change}
