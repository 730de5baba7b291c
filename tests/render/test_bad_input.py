"""Wrong inventories, as a new user writes them, against offload.yml's first
play (the real one, read from the playbook), run on the controller with a
stand-in pair whose records go to a temporary directory; a last play only
says which nodes would go on to deploy. Each case checks the exit status, the
one-line message naming the user's variable and the fix, and that nothing
was written."""
import copy

import pytest
import yaml

from render_lib import ROOT, run_playbook

HOST, DPU = 'bad-host', 'bad-dpu'
INVENTORY = {
    'offload_hosts': {'hosts': {HOST: {'dpu_offload_address': '192.0.2.10'}}},
    'offload_dpus': {'hosts': {DPU: {'dpu_offload_address': '192.0.2.11', 'dpu_offload_host': HOST}}},
    'all': {'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': '{{ ansible_playbook_python }}',
                     'dpu_offload_transport': 'sshfs'}},
}


def first_play():
    """offload.yml's first play, its relative includes made absolute, then a play that only reports who goes on."""
    play = yaml.safe_load((ROOT / 'playbooks/offload.yml').read_text())[0]
    for task in play['post_tasks']:
        if 'ansible.builtin.include_tasks' in task:
            task['ansible.builtin.include_tasks'] = str(ROOT / 'playbooks' / task['ansible.builtin.include_tasks'])
    reached = {'name': 'The plays after the first', 'hosts': 'dpu_offload_engine_stock:dpu_offload_engine_patched',
               'gather_facts': False,
               'tasks': [{'name': 'Reached', 'ansible.builtin.debug': {'msg': 'would deploy {{ inventory_hostname }}'}}]}
    return [play, reached]


@pytest.fixture
def offload(tmp_path):
    """Runs the first play on a copy of INVENTORY changed by change(inventory); returns (run, records)."""
    (tmp_path / 'play.yml').write_text(yaml.safe_dump(first_play(), sort_keys=False))
    records = tmp_path / 'records'

    def run(change=None, *extra):
        inventory = copy.deepcopy(INVENTORY)
        inventory['all']['vars']['offload_common_mode_file'] = str(records / '{{ inventory_hostname }}' / 'mode')
        if change:
            change(inventory)
        (tmp_path / 'hosts.yml').write_text(yaml.safe_dump(inventory))
        result = run_playbook(tmp_path / 'play.yml', tmp_path / 'hosts.yml', *extra)
        return result, {p.parent.name: p.read_text() for p in records.glob('*/mode')}
    return run


def node(inventory, name):
    group = 'offload_hosts' if name == HOST else 'offload_dpus'
    return inventory[group]['hosts'][name]


def test_a_good_pair_is_recorded_with_its_addresses_and_goes_on(offload):
    check, written = offload(None, '--check')
    assert check.rc == 0 and written == {}, check
    result, written = offload()
    assert result.rc == 0, result
    assert written == {HOST: 'stock\naddress=192.0.2.10\npeer=bad-dpu\npeer_address=192.0.2.11\n',
                       DPU: 'stock\naddress=192.0.2.11\npeer=bad-host\npeer_address=192.0.2.10\n'}
    assert 'would deploy %s' % HOST in result.output and 'would deploy %s' % DPU in result.output


def test_a_dpu_address_that_is_not_an_ip_stops_both_before_anything_is_written(offload):
    result, written = offload(lambda inv: node(inv, DPU).update(dpu_offload_address='not-an-ip'))
    assert result.rc == 2, result
    assert result.failed == {
        DPU: 'bad-dpu: dpu_offload_address is "not-an-ip", not an IP address; set the node\'s address on the '
             'HOST<->DPU interconnect, e.g. dpu_offload_address: 192.0.2.11 (IPv6: 2001:db8::11).',
        HOST: 'bad-host: stopped with its DPU bad-dpu, whose dpu_offload_address is refused (its message says how '
              'to fix it); a pair goes on together.'}, result
    assert written == {} and 'would deploy' not in result.output


def test_an_unknown_engine_is_named_in_one_line_before_any_argument_spec(offload):
    result, written = offload(lambda inv: inv['all']['vars'].update(dpu_offload_engine='nonsense'))
    assert result.rc == 2, result
    for name in (HOST, DPU):
        assert result.failed[name] == ('%s: dpu_offload_engine is "nonsense"; it is stock (the default) or patched, '
                                       'e.g. dpu_offload_engine: stock.' % name), result
    # No argument spec ran, let alone dumped itself.
    assert 'argument_spec' not in result.output and 'offload_common_engine' not in result.output
    assert len(result.output.splitlines()) < 60, result
    assert written == {}


def test_an_unreachable_dpu_stops_its_host_saying_so_and_nothing_is_written(offload):
    # Nothing listens on port 1: ssh is refused at once.
    result, written = offload(lambda inv: node(inv, DPU).update(ansible_connection='ssh', ansible_host='127.0.0.1',
                                                                ansible_port=1))
    assert result.rc == 4, result
    assert set(result.unreachable) == {DPU}, result
    assert result.failed == {
        HOST: 'bad-host stops before recording the engine mode: its partner bad-dpu is unreachable (see above). '
              'Nothing was changed on this pair; re-run playbooks/offload.yml once bad-dpu is back.'}, result
    assert 'teardown' not in result.output
    assert written == {} and 'would deploy' not in result.output


def test_a_run_limited_to_one_machine_of_the_pair_stops_naming_the_other(offload):
    result, written = offload(None, '--limit', HOST)
    assert result.rc == 2, result
    assert result.failed == {
        HOST: 'bad-host stops before recording the engine mode: its partner bad-dpu is not in this run (--limit, or '
              'a group left it out); the two machines of a pair deploy together: run them both, e.g. --limit '
              'bad-host,bad-dpu.'}, result
    assert written == {}


def test_an_address_change_on_a_deployed_pair_is_refused_naming_teardown_then_deploy(offload):
    first, before = offload()
    assert first.rc == 0 and len(before) == 2, first

    def to_ipv6(inventory):
        node(inventory, HOST)['dpu_offload_address'] = '2001:db8::10'
        node(inventory, DPU)['dpu_offload_address'] = '[2001:db8::11]'
    result, after = offload(to_ipv6)
    assert result.rc == 2, result
    assert result.failed == {
        HOST: 'bad-host: it was deployed with dpu_offload_address 192.0.2.10, and the inventory now says '
              '2001:db8::10; an address changes only through a redeploy (its certificate, rexec and the sshfs mounts '
              'name it): run playbooks/teardown.yml --limit bad-host,bad-dpu, then playbooks/offload.yml with the '
              'new address.',
        DPU: 'bad-dpu: it was deployed with dpu_offload_address 192.0.2.11, and the inventory now says '
             '2001:db8::11; an address changes only through a redeploy (its certificate, rexec and the sshfs mounts '
             'name it): run playbooks/teardown.yml --limit bad-dpu,bad-host, then playbooks/offload.yml with the new '
             'address.'}, result
    assert after == before and 'would deploy' not in result.output


# --- the stock mode's play, where both machines run stock_engine side by side.
STOCK_STEPS = ROOT / 'roles/stock_engine/tasks/present.yml'
GATE = 'Go on only while the other machine of the pair does'


def stock_tasks():
    return yaml.safe_load(STOCK_STEPS.read_text())


@pytest.mark.parametrize('step', [
    "Deploy rexec with the mode's allowlists (commands, sockets, fifos)",
    "Keep this side's shared tmpfs directories on disk, so that they outlive a reboot",
    # It authorises this side's key on the peer and reads the peer's host key.
    "Make this side's sshfs key and pin the peer's endpoint",
    # The DPU's CNI runs the HOST's plugins.
    "Give pods their own networks on the HOST",
    'Install the offload shim, its settings and the containerd configuration',
    "Start the DPU's containerd",
])
def test_each_step_of_the_stock_play_that_needs_the_other_side_comes_after_a_gate(step):
    names = [task['name'] for task in stock_tasks()]
    assert names[names.index(step) - 1].startswith(GATE), names


def test_every_stock_gate_stops_a_node_whose_partner_failed_before_it(tmp_path):
    """The role's own gate tasks, each after a task that fails on the DPU: the HOST stops at the first one."""
    gates = [task for task in stock_tasks() if task['name'].startswith(GATE)]
    for index, gate in enumerate(gates):
        steps = [{'name': 'The DPU fails', 'ansible.builtin.fail': {'msg': 'broken on purpose'},
                  'when': 'inventory_hostname == %r' % DPU}, gate,
                 {'name': 'Past the gate', 'ansible.builtin.debug': {'msg': 'past the gate {{ inventory_hostname }}'}}]
        play = [{'name': 'Stock steps', 'hosts': 'offload_hosts:offload_dpus', 'gather_facts': False,
                 'vars': {'ansible_facts': {'pkg_mgr': 'apt'}},
                 'roles': [{'role': 'dpu.offload.offload_common'}], 'tasks': steps}]
        (tmp_path / 'play.yml').write_text(yaml.safe_dump(play, sort_keys=False))
        (tmp_path / 'hosts.yml').write_text(yaml.safe_dump(INVENTORY))
        result = run_playbook(tmp_path / 'play.yml', tmp_path / 'hosts.yml')
        assert result.rc == 2, result
        step = gate['vars']['offload_common_pair_step']
        assert result.failed == {
            DPU: 'broken on purpose',
            HOST: 'bad-host stops before %s: its partner bad-dpu failed (its error is above). Fix what the error says '
                  'and re-run playbooks/offload.yml (to undo what this run did instead: playbooks/teardown.yml --limit '
                  'bad-host,bad-dpu).' % step}, (index, result)
        assert 'past the gate' not in result.output
    # Without a failure both go on.
    (tmp_path / 'play.yml').write_text(yaml.safe_dump([dict(play[0], tasks=steps[1:])], sort_keys=False))
    result = run_playbook(tmp_path / 'play.yml', tmp_path / 'hosts.yml')
    assert result.rc == 0 and result.output.count('past the gate bad-') == 2, result


def test_forgetting_the_record_takes_its_directory_when_nothing_else_is_in_it(offload, tmp_path):
    # teardown.yml's last play: the record goes, and /etc/dpu-offload with it unless something else lives there.
    result, written = offload()
    assert result.rc == 0 and len(written) == 2, result
    records = tmp_path / 'records'
    (records / DPU / 'someone-elses').write_text('x')
    forget = [{'name': 'Forget', 'hosts': 'offload_hosts:offload_dpus', 'gather_facts': False,
               'tasks': [{'name': 'Forget the engine mode', 'ansible.builtin.include_role': {
                   'name': 'dpu.offload.offload_common', 'tasks_from': 'engine_mode.yml'},
                   'vars': {'offload_common_mode_action': 'forget'}}]}]
    (tmp_path / 'forget.yml').write_text(yaml.safe_dump(forget, sort_keys=False))
    for check in (('--check',), ()):
        assert (records / HOST / 'mode').exists()
        result = run_playbook(tmp_path / 'forget.yml', tmp_path / 'hosts.yml', *check)
        assert result.rc == 0 and result.recap[HOST]['changed'] == '1', result
    assert sorted(p.name for p in records.iterdir()) == [DPU]
    assert [p.name for p in (records / DPU).iterdir()] == ['someone-elses']
    again = run_playbook(tmp_path / 'forget.yml', tmp_path / 'hosts.yml')
    assert again.rc == 0 and again.recap[HOST]['changed'] == '0' and again.recap[DPU]['changed'] == '0', again
