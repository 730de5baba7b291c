# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pair gate: a node goes on while its partner does, and otherwise says
which machine stopped, why and what to do, offering the teardown only when
the run may have changed something."""
from __future__ import annotations

import pytest

from ansible_collections.dpu.offload.plugins.filter.pair_stop import pair_stop

PAIR = ('lab-host', 'lab-dpu')
# What Ansible registered for the first task that went to the DPU: over SSH
# to a machine that is down, and through community.docker.docker (the lab)
# to a container that is not there, which Ansible reports as a module failure.
UNREACHABLE = {'unreachable': True, 'changed': False,
               'msg': 'Task failed: Failed to connect to the host via ssh: ssh: connect to host 127.0.0.1 port 1: '
                      'Connection refused'}
NO_CONTAINER = {'changed': False, 'failed': True, 'module_stdout': '', 'rc': 1,
                'module_stderr': 'Error response from daemon: No such container: lab-dpu\n',
                'msg': 'Module result deserialization failed: No start of json char found'}
STOPPED = dict(NO_CONTAINER, module_stderr='Error response from daemon: Container 1d2c3b4a is not running\n')
# A node whose module ran and said why it failed is not gone.
MODULE_FAILED = {'changed': False, 'failed': True, 'msg': 'No package matching dpu-offload-no-such-package is available'}
SKIPPED = {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False'}
DPU_VARS = {'offload_common_pair': {'peer': 'lab-host'}, '__offload_common_reach': SKIPPED, 'dpu_offload_done': ['mode']}


def play(all_hosts=PAIR, hosts=PAIR, batch=PAIR):
    return {'all': list(all_hosts), 'hosts': list(hosts), 'batch': list(batch)}


def test_a_node_goes_on_while_its_partner_is_in_the_play_or_finished_the_stage():
    assert pair_stop('lab-host', 'lab-dpu', DPU_VARS, play()) == ''
    assert pair_stop('lab-host', 'lab-dpu', DPU_VARS, None, after='mode') == ''


def test_an_unreachable_partner_before_anything_was_written():
    # The case: the HOST stops at the first gate, before it records anything.
    msg = pair_stop('lab-host', 'lab-dpu', dict(DPU_VARS, __offload_common_reach=UNREACHABLE),
                    play(hosts=['lab-host'], batch=['lab-host']), step='recording the engine mode', written=False)
    assert msg == ('lab-host stops before recording the engine mode: its partner lab-dpu is unreachable (see above). '
                   'Nothing was changed on this pair; re-run playbooks/offload.yml once lab-dpu is back.')
    assert 'teardown' not in msg


@pytest.mark.parametrize('result', [NO_CONTAINER, STOPPED])
def test_a_lab_container_that_is_not_there_counts_as_unreachable(result):
    msg = pair_stop('lab-host', 'lab-dpu', dict(DPU_VARS, __offload_common_reach=result),
                    play(hosts=['lab-host'], batch=['lab-host']), written=False)
    assert 'its partner lab-dpu is unreachable (see above)' in msg
    failed = pair_stop('lab-host', 'lab-dpu', dict(DPU_VARS, __offload_common_reach=MODULE_FAILED),
                       play(hosts=['lab-host'], batch=['lab-host']), written=False)
    assert 'its partner lab-dpu failed (its error is above)' in failed


def test_a_failed_partner_after_something_was_written_offers_the_teardown():
    msg = pair_stop('lab-host', 'lab-dpu', DPU_VARS, play(hosts=['lab-host'], batch=['lab-host']),
                    step='sharing the directories')
    assert msg == ('lab-host stops before sharing the directories: its partner lab-dpu failed (its error is above). '
                   'Fix what the error says and re-run playbooks/offload.yml (to undo what this run did instead: '
                   'playbooks/teardown.yml --limit lab-host,lab-dpu).')


def test_a_failed_partner_before_anything_was_written():
    msg = pair_stop('lab-dpu', 'lab-host', {}, play(hosts=['lab-dpu'], batch=['lab-dpu']), written=False)
    assert msg == ('lab-dpu stops: its partner lab-host failed (its error is above). Nothing was changed on this pair; '
                   'fix what the error says and re-run playbooks/offload.yml.')


def test_between_plays_the_partner_must_have_finished_the_stage():
    msg = pair_stop('lab-host', 'lab-dpu', dict(DPU_VARS, dpu_offload_done=['mode']), None, after='rexec',
                    step='sharing its directories')
    assert msg.startswith('lab-host stops before sharing its directories: its partner lab-dpu failed')


def test_a_partner_left_out_of_the_run_is_named_with_the_limit_that_takes_both():
    expected = ('lab-host stops: its partner lab-dpu is not in this run (--limit, or a group left it out); the two '
                'machines of a pair deploy together: run them both, e.g. --limit lab-host,lab-dpu.')
    assert pair_stop('lab-host', 'lab-dpu', {}, play(all_hosts=['lab-host'], hosts=['lab-host'], batch=['lab-host']),
                     written=False) == expected
    assert pair_stop('lab-host', 'lab-dpu', {'dpu_offload_done': []}, None, after='mode') == expected


def test_a_partner_in_another_batch_names_the_serial_setting():
    msg = pair_stop('lab-host', 'lab-dpu', DPU_VARS, play(batch=['lab-host']))
    assert 'its partner lab-dpu is in another batch (dpu_offload_serial)' in msg
