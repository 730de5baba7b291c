# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: whether a node goes on at a gate of its pair, and if not the one
line that says why it stops and what to do."""

from __future__ import annotations


def _get(node_vars, name, default=None):
    try:
        value = node_vars[name]
    except (KeyError, TypeError):
        return default
    return default if value is None else value


# What the docker CLI says when the container is not there to exec into: the
# lab's nodes are containers, and Ansible reports that as a module failure.
GONE = ('is not running', 'No such container')


def _unreachable(result):
    """Whether the first task that went to the node found no one there."""
    if not isinstance(result, dict):
        return False
    if result.get('unreachable'):
        return True
    said = '%s %s' % (result.get('module_stderr') or '', result.get('msg') or '')
    return bool(result.get('failed')) and not (result.get('module_stdout') or '').strip() and any(g in said for g in GONE)


def pair_stop(node, peer, peer_vars, play, after='', step='', written=True):
    """'' when node may go on; else why it stops.

    Inside a play (after empty), the partner must still be in the play's
    batch: a node that failed or went unreachable is out of it. Between plays
    (after, a stage pair_done.yml records), the partner must have finished
    that stage. play holds the play's host lists: all (ansible_play_hosts_all),
    hosts (ansible_play_hosts, without the failed) and batch
    (ansible_play_batch). written says whether this run may have changed the
    pair by now: only then does the message offer the teardown.
    """
    play = play or {}
    if after:
        if after in (_get(peer_vars, 'dpu_offload_done') or []):
            return ''
    elif peer in (play.get('batch') or []):
        return ''
    before = ' before %s' % step if step else ''
    undo = (' (to undo what this run did instead: playbooks/teardown.yml --limit %s,%s)' % (node, peer)
            if written else '')
    if _unreachable(_get(peer_vars, '__offload_common_reach')):
        what = 'its partner %s is unreachable (see above)' % peer
        todo = 're-run playbooks/offload.yml once %s is back' % peer
    elif (peer not in (play.get('all') or [])) if not after else _get(peer_vars, 'offload_common_pair') is None:
        return ('%s stops%s: its partner %s is not in this run (--limit, or a group left it out); the two machines '
                'of a pair deploy together: run them both, e.g. --limit %s,%s.' % (node, before, peer, node, peer))
    elif not after and peer in (play.get('hosts') or []):
        return ('%s stops%s: its partner %s is in another batch (dpu_offload_serial); the two machines of a pair '
                'deploy in one batch: leave dpu_offload_serial unset, or at least the number of nodes.'
                % (node, before, peer))
    else:
        what = 'its partner %s failed (its error is above)' % peer
        todo = 'fix what the error says and re-run playbooks/offload.yml'
    if written:
        return '%s stops%s: %s. %s%s.' % (node, before, what, todo[0].upper() + todo[1:], undo)
    return '%s stops%s: %s. Nothing was changed on this pair; %s.' % (node, before, what, todo)


class FilterModule:
    """The pair gate's decision."""

    def filters(self):
        return {'pair_stop': pair_stop}
