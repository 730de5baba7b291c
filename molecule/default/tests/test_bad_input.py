"""Wrong inputs against the deployed lab, as a new user makes them: a copy
of the lab's inventory with one mistake each, run through
playbooks/offload.yml. Each is refused with a non-zero exit and one line
that names the user's variable (or the partner that stopped) and the fix,
and the deployed pair is left exactly as it was; the next tests run on it.
"""
import copy
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from conftest import REXEC

ROOT = pathlib.Path(__file__).resolve().parents[3]
HOST = os.environ.get('LAB_HOST', 'lab-host')
DPU = os.environ.get('LAB_DPU', 'lab-dpu')
# What a deploy writes on both nodes that a refused run must leave alone.
WATCHED = ['/etc/dpu-offload/mode', REXEC.client_env, REXEC.config_dir + '/server.env', '/etc/dpu-offload/sshfs']


def lab_inventory():
    """The lab's inventory directory, as conftest finds it (molecule's links, or LAB_INVENTORY)."""
    from conftest import _inventory  # pylint: disable=import-outside-toplevel
    return pathlib.Path(_inventory())


class Run:
    def __init__(self, result):
        self.rc = result.returncode
        self.output = result.stdout + result.stderr
        self.failed, self.unreachable, self.recap = {}, {}, {}
        for line in self.output.splitlines():
            for kind, found in (('FAILED!', self.failed), ('UNREACHABLE!', self.unreachable)):
                marker = ']: %s => ' % kind
                if line.startswith('fatal: [') and marker in line:
                    found[line[len('fatal: ['):line.index(']')].split(' -> ')[0]] = json.loads(line.split(marker, 1)[1])
        for line in self.output.split('PLAY RECAP')[-1].splitlines():
            if ' : ok=' in line:
                self.recap[line.split()[0]] = dict(item.split('=') for item in line.split(':', 1)[1].split())

    def __repr__(self):
        return 'rc=%d\n%s' % (self.rc, self.output[-5000:])


@pytest.fixture
def offload(tmp_path):
    """Runs playbooks/offload.yml on a copy of the lab's inventory, changed by change(hosts, all_vars)."""
    source = lab_inventory()
    hosts_file = next(source / name for name in ('hosts.yml', 'hosts') if (source / name).exists())
    base = yaml.safe_load(hosts_file.read_text())

    def run(change):
        hosts = copy.deepcopy(base)
        change(hosts)
        work = tmp_path / 'inventory'
        work.mkdir(exist_ok=True)
        (work / 'hosts.yml').write_text(yaml.safe_dump(hosts))
        if not (work / 'group_vars').exists():
            (work / 'group_vars').symlink_to((source / 'group_vars').resolve())
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
                   ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default', ANSIBLE_CALLBACK_RESULT_FORMAT='json')
        # molecule forces colour on; its codes would hide the lines parsed here.
        env.pop('ANSIBLE_FORCE_COLOR', None)
        binary = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
        result = subprocess.run([binary, '-i', str(work), str(ROOT / 'playbooks/offload.yml')], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=900, check=False)
        return Run(result)
    return run


def node_vars(hosts, name):
    return hosts['offload_hosts' if name == HOST else 'offload_dpus']['hosts'][name]


def snapshot(machine):
    return {path: machine.run('cat %s 2>/dev/null; ls -l --time-style=+%%s %s 2>/dev/null' % (path, path)).stdout
            for path in WATCHED}


@pytest.fixture
def untouched(hostnode, dpu):
    """Asserts that the test changed nothing the deploy wrote, on either node."""
    before = (snapshot(hostnode), snapshot(dpu))
    yield
    assert (snapshot(hostnode), snapshot(dpu)) == before


def one_line(run, name):
    msg = run.failed[name]['msg']
    assert '\n' not in msg, msg
    return msg


def test_a_dpu_address_that_is_not_an_ip_is_refused_before_anything_is_written(offload, untouched):
    run = offload(lambda hosts: node_vars(hosts, DPU).update(dpu_offload_address='not-an-ip'))
    assert run.rc == 2, run
    assert one_line(run, DPU).startswith('%s: dpu_offload_address is "not-an-ip", not an IP address; set the '
                                         "node's address on the HOST<->DPU interconnect, e.g. dpu_offload_address:"
                                         % DPU), run
    assert one_line(run, HOST).startswith('%s: stopped with its DPU %s, whose dpu_offload_address is refused'
                                          % (HOST, DPU)), run
    assert run.recap[HOST]['changed'] == '0' and run.recap[DPU]['changed'] == '0', run


def test_an_unknown_engine_is_refused_by_name_in_one_line(offload, untouched):
    def nonsense(hosts):
        for name in (HOST, DPU):
            node_vars(hosts, name)['dpu_offload_engine'] = 'nonsense'
    run = offload(nonsense)
    assert run.rc == 2, run
    assert one_line(run, DPU) == ('%s: dpu_offload_engine is "nonsense"; it is stock (the default) or patched, '
                                  'e.g. dpu_offload_engine: stock.' % DPU), run
    assert 'argument_spec' not in run.output and len(run.output.splitlines()) < 80, run


def test_an_address_change_on_the_deployed_lab_names_teardown_then_deploy(offload, untouched):
    def to_ipv6(hosts):
        node_vars(hosts, HOST)['dpu_offload_address'] = 'fd00:77::10'
        node_vars(hosts, DPU)['dpu_offload_address'] = '[fd00:77::20]'
    run = offload(to_ipv6)
    assert run.rc == 2, run
    for name, peer, address in ((HOST, DPU, 'fd00:77::10'), (DPU, HOST, 'fd00:77::20')):
        msg = one_line(run, name)
        assert msg.startswith('%s: it was deployed with dpu_offload_address ' % name), msg
        assert msg.endswith('the inventory now says %s; an address changes only through a redeploy (its certificate, '
                            'rexec and the sshfs mounts name it): run playbooks/teardown.yml --limit %s,%s, then '
                            'playbooks/offload.yml with the new address.' % (address, name, peer)), msg
    assert run.recap[HOST]['changed'] == '0' and run.recap[DPU]['changed'] == '0', run


def test_an_unreachable_dpu_stops_its_host_saying_so_and_no_teardown(offload, untouched):
    # The connection goes to a container that does not exist, as to a stopped lab-dpu; through docker exec
    # Ansible reports it as a module failure (a machine over SSH is UNREACHABLE: tests/render/test_bad_input.py).
    run = offload(lambda hosts: node_vars(hosts, DPU).update(ansible_host='dpu-offload-no-such-container'))
    assert run.rc == 2 and 'No such container' in run.failed[DPU].get('module_stderr', ''), run
    assert one_line(run, HOST) == (
        '%s stops before recording the engine mode: its partner %s is unreachable (see above). Nothing was changed on '
        'this pair; re-run playbooks/offload.yml once %s is back.' % (HOST, DPU, DPU)), run
    assert 'teardown' not in run.output
    assert run.recap[HOST]['changed'] == '0', run


def test_a_dpu_failing_inside_the_stock_play_stops_its_host_before_its_next_step(offload, untouched):
    # The DPU's package installation fails (a mirror without the package, say), in the play both nodes run.
    run = offload(lambda hosts: node_vars(hosts, DPU).update(stock_engine_packages=['dpu-offload-no-such-package']))
    assert run.rc == 2, run
    assert 'dpu-offload-no-such-package' in run.failed[DPU]['msg'], run
    assert one_line(run, HOST) == (
        '%s stops before deploying rexec: its partner %s failed (its error is above). Fix what the error says and '
        're-run playbooks/offload.yml (to undo what this run did instead: playbooks/teardown.yml --limit %s,%s).'
        % (HOST, DPU, HOST, DPU)), run
    # The gate was the HOST's last task: it ran nothing of rexec's.
    after_gate = run.output.split('fatal: [%s]' % HOST, 1)[1].split('PLAY RECAP')[0]
    assert not [line for line in after_gate.splitlines() if '[%s' % HOST in line], run
    assert run.recap[HOST]['changed'] == '0' and run.recap[DPU]['changed'] == '0', run
