"""The CNI relay of roles/offload_network (cni_common, cni_host, cni_dpu), without a lab.

The HOST's side runs real executables as plugins (small scripts in a temp
plugin directory that record what they got); making and deleting network
namespaces is the one thing replaced, since it needs root and changes the
machine.
"""
import json
import os
import pathlib
import socket
import stat
import struct
import threading
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'roles' / 'offload_network' / 'files'))
import cni_common  # noqa: E402  pylint: disable=wrong-import-position
import cni_dpu  # noqa: E402  pylint: disable=wrong-import-position
import cni_host  # noqa: E402  pylint: disable=wrong-import-position

CID = 'c' * 64
NETNS = '/var/run/netns/cni-5a1d1e2b-0000-4000-8000-000000000001'
BRIDGE = {'cniVersion': '1.0.0', 'name': 'dpu-offload-pods', 'type': 'bridge', 'bridge': 'cni-dpu0',
          'ipam': {'type': 'host-local', 'ranges': [[{'subnet': '10.88.0.0/16'}]]}}
RESULT = {'cniVersion': '1.0.0', 'interfaces': [{'name': 'eth0', 'sandbox': NETNS}],
          'ips': [{'address': '10.88.0.7/16', 'gateway': '10.88.0.1', 'interface': 0}]}
# What containerd's CRI sets, plus what must never reach a plugin.
ENV = {'CNI_COMMAND': 'ADD', 'CNI_CONTAINERID': CID, 'CNI_NETNS': NETNS, 'CNI_IFNAME': 'eth0',
       'CNI_ARGS': 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web', 'CNI_PATH': '/opt/cni/bin',
       'LD_PRELOAD': '/tmp/evil.so', 'HOME': '/root'}


def plugin(directory, name, result=None, status=0):
    """A plugin that writes its environment and stdin to NAME.calls and prints result."""
    path = directory / name
    out = json.dumps(result if result is not None else {'cniVersion': '1.0.0'})
    path.write_text('#!/bin/sh\nlog=%s\n{ env | grep -v "^_=" | sort; echo ---; cat; echo; echo ===; } >> "$log"\n'
                    "printf '%%s' '%s'\nexit %d\n" % (directory / (name + '.calls'), out, status))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def calls(directory, name):
    """Each call of a plugin: (environment dict, stdin)."""
    text = (directory / (name + '.calls')).read_text() if (directory / (name + '.calls')).exists() else ''
    found = []
    for block in text.split('===\n'):
        if '---\n' not in block:
            continue
        env_text, stdin = block.split('---\n', 1)
        env = dict(line.split('=', 1) for line in env_text.splitlines() if '=' in line)
        found.append((env, stdin.strip()))
    return found


@pytest.fixture
def netns(monkeypatch):
    """Namespaces as a set of paths: ip netns add/delete change the set."""
    made = set()

    def run_ip(args):
        if args[:2] == ['netns', 'add']:
            made.add('/var/run/netns/' + args[2])
        elif args[:2] == ['netns', 'delete']:
            made.discard('/var/run/netns/' + args[2])
        else:
            made.add(('ip',) + tuple(args))
    monkeypatch.setattr(cni_common, 'run_ip', run_ip)
    monkeypatch.setattr(cni_common, 'is_netns', lambda path: path in made)
    for module in (cni_host, cni_dpu):
        for name in ('is_netns', 'run_ip'):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, getattr(cni_common, name))
    return made


@pytest.fixture
def host(tmp_path):
    plugins = tmp_path / 'plugins'
    plugins.mkdir()
    return {'plugin_dir': str(plugins), 'netns_dir': '/var/run/netns', 'state_dir': str(tmp_path / 'state')}


def add(host, name='bridge', env=None, config=None):
    data = json.dumps(config or dict(BRIDGE, type=name)).encode()
    return cni_host.host_call(name, data, dict(ENV, **(env or {})), host)


def test_the_host_makes_the_namespace_and_runs_its_plugin_with_exactly_cnis_environment(host, netns):
    plugin(pathlib.Path(host['plugin_dir']), 'bridge', RESULT)
    status, out = add(host)
    assert status == 0 and json.loads(out) == RESULT
    assert NETNS in netns
    env, stdin = calls(pathlib.Path(host['plugin_dir']), 'bridge')[0]
    assert {k: v for k, v in env.items() if k.startswith('CNI_')} == {
        'CNI_COMMAND': 'ADD', 'CNI_CONTAINERID': CID, 'CNI_NETNS': NETNS, 'CNI_IFNAME': 'eth0',
        'CNI_ARGS': ENV['CNI_ARGS'], 'CNI_PATH': host['plugin_dir']}
    assert 'LD_PRELOAD' not in env and 'HOME' not in env and env['PATH'] == cni_host.PLUGIN_PATH
    assert json.loads(stdin) == dict(BRIDGE, type='bridge')


def test_the_namespace_goes_with_the_last_attachment_whatever_the_order(host, netns):
    directory = pathlib.Path(host['plugin_dir'])
    for name in ('bridge', 'portmap', 'loopback'):
        plugin(directory, name, RESULT if name == 'bridge' else {'cniVersion': '1.0.0'})
    add(host, 'loopback', {'CNI_IFNAME': 'lo'}, {'cniVersion': '1.0.0', 'name': 'cni-loopback', 'type': 'loopback'})
    add(host, 'bridge')
    add(host, 'portmap')
    delete = {'CNI_COMMAND': 'DEL'}
    add(host, 'loopback', dict(delete, CNI_IFNAME='lo'), {'cniVersion': '1.0.0', 'name': 'cni-loopback', 'type': 'loopback'})
    add(host, 'portmap', delete)
    assert NETNS in netns
    # The bridge's DEL still finds the namespace (it reads the addresses there to undo the NAT rules).
    add(host, 'bridge', delete)
    assert calls(directory, 'bridge')[-1][0]['CNI_NETNS'] == NETNS
    assert NETNS not in netns and cni_common.Records(host['state_dir']).all() == []


def test_a_del_after_the_dpu_lost_its_handle_uses_the_hosts_namespace(host, netns):
    plugin(pathlib.Path(host['plugin_dir']), 'bridge', RESULT)
    add(host)
    # containerd sends no namespace when its own is gone (the DPU rebooted without restore).
    environ = dict(ENV, CNI_COMMAND='DEL')
    del environ['CNI_NETNS']
    status, dummy = cni_host.host_call('bridge', json.dumps(BRIDGE).encode(), environ, host)
    assert status == 0 and calls(pathlib.Path(host['plugin_dir']), 'bridge')[-1][0]['CNI_NETNS'] == NETNS
    assert NETNS not in netns


def test_a_del_of_a_namespace_already_gone_succeeds_without_one(host, netns):
    plugin(pathlib.Path(host['plugin_dir']), 'bridge')
    status, dummy = add(host, env={'CNI_COMMAND': 'DEL'})
    assert status == 0 and 'CNI_NETNS' not in calls(pathlib.Path(host['plugin_dir']), 'bridge')[-1][0]


def test_a_failed_plugin_records_nothing_and_passes_its_error_on(host, netns):
    error = {'cniVersion': '1.0.0', 'code': 999, 'msg': 'no'}
    plugin(pathlib.Path(host['plugin_dir']), 'bridge', error, status=1)
    status, out = add(host)
    assert status == 1 and json.loads(out) == error
    assert cni_common.Records(host['state_dir']).load(CID)['attached'] == []


@pytest.mark.parametrize('name, environ, words', [
    ('../bridge', {}, 'not a plugin name'),
    ('/usr/lib/cni/bridge', {}, 'not a plugin name'),
    ('macvlan', {}, 'no CNI plugin'),
    ('bridge', {'CNI_NETNS': '/proc/1/ns/net'}, 'not a namespace of /var/run/netns'),
    ('bridge', {'CNI_NETNS': '/var/run/netns/../../proc/1/ns/net'}, 'not a namespace'),
    ('bridge', {'CNI_NETNS': '/var/run/netns/a/b'}, 'not a namespace'),
    ('bridge', {'CNI_COMMAND': 'EXEC'}, 'CNI_COMMAND'),
    ('bridge', {'CNI_CONTAINERID': '../x'}, 'not a container id'),
    ('bridge', {'CNI_CONTAINERID': ''}, 'CNI_CONTAINERID is missing'),
])
def test_the_host_refuses_what_cni_never_sends(host, netns, name, environ, words):
    plugin(pathlib.Path(host['plugin_dir']), 'bridge')
    with pytest.raises(cni_common.CNIError) as error:
        add(host, name, environ)
    assert words in error.value.msg
    assert netns == set()


def test_host_main_prints_a_cni_error_with_the_configurations_version(host, netns, tmp_path, capsys):
    settings = tmp_path / 'settings.json'
    settings.write_text(json.dumps(host))

    class Stream:
        def __init__(self, data=b''):
            self.data, self.written = data, b''

        def read(self):
            return self.data

        def write(self, data):
            self.written += data

        def flush(self):
            pass
    out = Stream()
    status = cni_host.main(['macvlan'], str(settings), stdin=Stream(json.dumps(BRIDGE).encode()), stdout=out)
    error = json.loads(out.written)
    assert status == 1 and error['cniVersion'] == '1.0.0' and error['code'] == cni_common.ERR_CONFIG


def test_cleanup_deletes_every_attachment_left_newest_first_then_the_namespace(host, netns):
    directory = pathlib.Path(host['plugin_dir'])
    for name in ('bridge', 'portmap'):
        plugin(directory, name)
    add(host, 'bridge')
    add(host, 'portmap')
    done, problems = cni_host.cleanup(host)
    assert (done, problems) == (1, [])
    assert calls(directory, 'portmap')[-1][0]['CNI_COMMAND'] == 'DEL'
    env, stdin = calls(directory, 'bridge')[-1]
    assert env['CNI_COMMAND'] == 'DEL' and env['CNI_NETNS'] == NETNS and json.loads(stdin)['type'] == 'bridge'
    assert NETNS not in netns and cni_common.Records(host['state_dir']).all() == []


# ---- the DPU's side


@pytest.fixture
def dpu(tmp_path):
    return {'host_plugin_dir': '/usr/lib/cni', 'netns_dir': '/var/run/netns', 'state_dir': str(tmp_path / 'dpu'),
            'subnets': ['10.88.0.0/16']}


class Remote:
    """The HOST as the DPU's relay sees it: answers and remembers the calls."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.seen = []

    def __call__(self, settings, plugin_name, env, data):
        self.seen.append((plugin_name, dict(env), data))
        return self.answers.pop(0) if self.answers else (0, b'{}')


def test_the_dpu_sends_cnis_environment_with_the_hosts_plugin_directory_and_records_the_pod(dpu, netns):
    remote = Remote((0, json.dumps(RESULT).encode()))
    status, out = cni_dpu.dpu_call('bridge', json.dumps(BRIDGE).encode(), dict(ENV), dpu, remote)
    assert status == 0 and json.loads(out) == RESULT
    plugin_name, env, dummy = remote.seen[0]
    assert plugin_name == 'bridge' and env['CNI_PATH'] == '/usr/lib/cni' and set(env) == set(cni_common.CNI_KEYS) | {'CNI_PATH'}
    assert cni_common.Records(dpu['state_dir']).load(CID)['netns'] == NETNS


def test_the_dpu_refuses_an_address_outside_the_pod_subnets_and_undoes_the_add(dpu, netns):
    bad = dict(RESULT, ips=[{'address': '172.30.77.20/24', 'interface': 0}])
    remote = Remote((0, json.dumps(bad).encode()), (0, b''))
    with pytest.raises(cni_common.CNIError) as error:
        cni_dpu.dpu_call('bridge', json.dumps(BRIDGE).encode(), dict(ENV), dpu, remote)
    assert '172.30.77.20 is outside the pod subnets 10.88.0.0/16' in error.value.msg
    assert remote.seen[1][1]['CNI_COMMAND'] == 'DEL'


def test_loopback_addresses_are_the_namespaces_own_and_its_lo_comes_up_on_the_dpu_too(dpu, netns):
    result = {'cniVersion': '1.0.0', 'ips': [{'address': '127.0.0.1/8'}, {'address': '::1/128'}]}
    remote = Remote((0, json.dumps(result).encode()))
    config = json.dumps({'cniVersion': '1.0.0', 'name': 'cni-loopback', 'type': 'loopback'}).encode()
    status, dummy = cni_dpu.dpu_call('loopback', config, dict(ENV, CNI_IFNAME='lo'), dpu, remote)
    assert status == 0 and ('ip', '-n', NETNS.rsplit('/', 1)[1], 'link', 'set', 'lo', 'up') in netns


def test_an_unreachable_host_is_a_cni_error_to_try_again(dpu, netns):
    with pytest.raises(cni_common.CNIError) as error:
        cni_dpu.dpu_call('bridge', json.dumps(BRIDGE).encode(), dict(ENV), dpu, Remote((255, b'')))
    assert error.value.code == cni_common.ERR_TRY_LATER and 'did not run CNI plugin bridge' in error.value.msg


def test_restore_makes_the_dpus_handles_again_and_cleanup_removes_them(dpu, netns, tmp_path):
    cni_dpu.dpu_call('bridge', json.dumps(BRIDGE).encode(), dict(ENV), dpu, Remote((0, json.dumps(RESULT).encode())))
    assert cni_dpu.restore(dpu) == 1 and NETNS in netns
    assert cni_dpu.restore(dpu) == 0
    cache = tmp_path / 'results'
    cache.mkdir()
    for name in ('dpu-offload-pods-%s-eth0' % CID, 'cni-loopback-%s-lo' % CID, 'other-%s-eth0' % ('d' * 64)):
        (cache / name).write_text('{}')
    assert cni_dpu.cleanup(dict(dpu, cache_dir=str(cache))) == 1 and NETNS not in netns
    assert os.listdir(str(cache)) == ['other-%s-eth0' % ('d' * 64)]


def test_records_survive_garbage_and_concurrent_writers_are_serialised(tmp_path):
    records = cni_common.Records(str(tmp_path))
    os.makedirs(str(tmp_path), exist_ok=True)
    (tmp_path / (CID + '.json')).write_text('{not json')
    assert records.load(CID) == {'netns': '', 'attached': []}
    records.update(CID, lambda r: cni_common.added(r, 'n/eth0/bridge', NETNS))
    records.update(CID, lambda r: cni_common.added(r, 'n/eth0/portmap', NETNS))
    assert [a['key'] for a in records.load(CID)['attached']] == ['n/eth0/bridge', 'n/eth0/portmap']
    assert records.update(CID, lambda r: cni_common.deleted(r, 'n/eth0/bridge'))['netns'] == NETNS
    assert records.update(CID, lambda r: cni_common.deleted(r, 'n/eth0/portmap')) is None
    assert records.all() == []


# What `iptables -t nat -S` shows once portmap has run (Debian 12, iptables-nft).
NAT = '''-P PREROUTING ACCEPT
-P OUTPUT ACCEPT
-N CNI-HOSTPORT-DNAT
-N CNI-HOSTPORT-MASQ
-N CNI-HOSTPORT-SETMARK
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A POSTROUTING -s 172.17.0.0/16 -j MASQUERADE
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
'''


def test_portmaps_chains_go_with_their_jumps_and_nothing_else():
    assert cni_host.portmap_undo(NAT) == [
        ['-D', 'PREROUTING', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'CNI-HOSTPORT-DNAT'],
        ['-D', 'OUTPUT', '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'CNI-HOSTPORT-DNAT'],
        ['-D', 'POSTROUTING', '-m', 'comment', '--comment', 'CNI portfwd requiring masquerade', '-j', 'CNI-HOSTPORT-MASQ'],
        ['-F', 'CNI-HOSTPORT-DNAT'], ['-F', 'CNI-HOSTPORT-SETMARK'], ['-F', 'CNI-HOSTPORT-MASQ'],
        ['-X', 'CNI-HOSTPORT-DNAT'], ['-X', 'CNI-HOSTPORT-SETMARK'], ['-X', 'CNI-HOSTPORT-MASQ']]


def test_portmaps_chains_stay_while_a_pod_publishes_a_port():
    used = NAT + '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name" -j CNI-DN-0123456789abcdef01234\n'
    assert cni_host.portmap_undo(used) == []
    assert cni_host.portmap_undo('-P PREROUTING ACCEPT\n') == []


def test_the_ipam_bookkeeping_of_an_empty_network_goes_and_a_leased_one_stays(tmp_path, monkeypatch):
    monkeypatch.setattr(cni_host, 'run_cmd', lambda args: (1, ''))
    for network, files in (('empty', ['lock', 'last_reserved_ip.0']), ('leased', ['lock', '10.88.0.7'])):
        directory = tmp_path / network
        directory.mkdir()
        for name in files:
            (directory / name).write_text('x')
    assert cni_host.machine_leftovers({'networks': ['empty', 'leased', 'absent'], 'ipam_dir': str(tmp_path)}) == []
    assert not (tmp_path / 'empty').exists() and (tmp_path / 'leased' / '10.88.0.7').exists()


# ---- port forwarding (cni_forward)

import cni_forward  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order


def test_the_add_records_the_pods_address_for_port_forwarding(dpu, netns):
    cni_dpu.dpu_call('bridge', json.dumps(BRIDGE).encode(), dict(ENV), dpu, Remote((0, json.dumps(RESULT).encode())))
    records = cni_common.Records(dpu['state_dir'])
    assert cni_forward.pods(records) == {NETNS: '10.88.0.7'}
    # A pod whose ADD gave no address of its own (loopback only) is not forwarded to.
    assert cni_common.pod_address({'ips': [{'address': '127.0.0.1/8'}]}) is None


def test_the_redirect_sends_loopback_tcp_but_the_relays_own_port_to_it():
    rule = cni_forward.redirect_rule('-A', 39999)
    assert rule[rule.index('-A') + 1] == 'OUTPUT' and rule[rule.index('-d') + 1] == '127.0.0.1/32'
    assert rule[rule.index('!') + 1:rule.index('!') + 3] == ['--dport', '39999']
    assert rule[-4:] == ['-j', 'REDIRECT', '--to-ports', '39999']
    assert cni_forward.redirect_rule('-C')[3] == '-C'


def test_the_original_port_is_read_from_the_redirected_connection():
    class Conn:
        def getsockopt(self, level, option, size):
            assert (level, option, size) == (0, 80, 16)
            return struct.pack('!HH4s8x', 2, 8080, bytes([127, 0, 0, 1]))
    assert cni_forward.original_port(Conn()) == 8080


def test_the_relay_copies_both_ways_and_closes_both_ends():
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    thread = threading.Thread(target=cni_forward.pipe, args=(b, c))
    thread.start()
    a.sendall(b'request')
    assert d.recv(100) == b'request'
    d.sendall(b'answer')
    assert a.recv(100) == b'answer'
    a.shutdown(socket.SHUT_WR)
    d.shutdown(socket.SHUT_WR)
    thread.join(5)
    assert not thread.is_alive() and a.recv(10) == b'' and d.recv(10) == b''
