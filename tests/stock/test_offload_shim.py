"""The DPU's offload shim wrapper (roles/stock_engine/files/offload_shim.py), without a lab."""
import json
import os
import pathlib
import shutil
import socket
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'roles' / 'stock_engine' / 'files'))
import offload_shim  # noqa: E402  pylint: disable=wrong-import-position

CID = 'a' * 64
SETKEY = {'path': '/proc/4242/exe', 'args': ['libnetwork-setkey', '-exec-root=/var/run/docker', CID, 'abcdef012345']}
OTHER = {'path': '/usr/bin/true', 'args': ['true']}


def _docker_root(tmp_path, mode):
    directory = tmp_path / 'docker' / 'containers' / CID
    directory.mkdir(parents=True)
    (directory / 'hostconfig.json').write_text(json.dumps({'NetworkMode': mode}))
    return str(tmp_path / 'docker')


def test_setkey_hook_of_a_none_network_is_dropped_and_others_kept(tmp_path):
    spec = {'ociVersion': '1.0.2', 'hooks': {'prestart': [SETKEY, OTHER], 'poststop': [OTHER]}}
    cleaned, changed = offload_shim.clean_hooks(spec, _docker_root(tmp_path, 'none'))
    assert changed
    assert cleaned['hooks'] == {'prestart': [OTHER], 'poststop': [OTHER]}
    assert spec['hooks']['prestart'] == [SETKEY, OTHER]     # the input is not modified


def test_hooks_key_goes_when_nothing_is_left(tmp_path):
    cleaned, changed = offload_shim.clean_hooks({'hooks': {'prestart': [SETKEY]}}, _docker_root(tmp_path, 'none'))
    assert changed and 'hooks' not in cleaned


@pytest.mark.parametrize('mode', ['default', 'bridge', 'my-network'])
def test_bridge_and_user_networks_are_refused_with_the_reason(tmp_path, mode):
    with pytest.raises(offload_shim.Refused, match="network %r: bridge and user-defined networks need network offload" % mode):
        offload_shim.clean_hooks({'hooks': {'prestart': [SETKEY]}}, _docker_root(tmp_path, mode))


def test_any_other_hook_naming_a_dpu_process_is_refused(tmp_path):
    for hook in ({'path': '/proc/1/exe', 'args': ['x']}, {'path': '/proc/self/../1/exe'},
                 dict(SETKEY, args=['libnetwork-setkey', 'no-container-id'])):
        with pytest.raises(offload_shim.Refused, match='names a process of the DPU'):
            offload_shim.clean_hooks({'hooks': {'createRuntime': [hook]}}, str(tmp_path))
    # A setkey hook of a container dockerd does not know is refused as well.
    with pytest.raises(offload_shim.Refused):
        offload_shim.clean_hooks({'hooks': {'prestart': [SETKEY]}}, str(tmp_path / 'nothing'))


def test_specs_without_dpu_hooks_are_left_alone(tmp_path):
    spec = {'hooks': {'prestart': [OTHER]}}
    assert offload_shim.clean_hooks(spec, str(tmp_path)) == (spec, False)
    assert offload_shim.clean_hooks({'process': {}}, str(tmp_path)) == ({'process': {}}, False)


def test_check_bundle_rewrites_config_json_in_place_keeping_its_mode(tmp_path):
    bundle = tmp_path / 'bundle'
    bundle.mkdir()
    config = bundle / 'config.json'
    config.write_text(json.dumps({'hooks': {'prestart': [SETKEY]}}))
    config.chmod(0o640)
    assert offload_shim.check_bundle(str(bundle), _docker_root(tmp_path, 'none'))
    assert json.loads(config.read_text()) == {}
    assert config.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(bundle)) == ['config.json']
    assert not offload_shim.check_bundle(str(bundle), str(tmp_path))
    assert not offload_shim.check_bundle(str(tmp_path / 'no-bundle'), str(tmp_path))


def test_small_parsers():
    assert offload_shim.action_of(['-namespace', 'moby', '-id', 'x', 'start']) == 'start'
    assert offload_shim.action_of([]) is None


HASH = 'f' * 64


@pytest.mark.parametrize('reply', ['unix:///run/containerd/s/%s\n' % HASH, 'unix:///run/containerd/s/%s' % HASH])
def test_a_shim_socket_in_the_forwarded_directory_is_taken(reply):
    assert offload_shim.socket_of(reply, '/run/containerd/s/') == '/run/containerd/s/' + HASH


# What a HOST whose root is a tenant could answer to make the DPU's containerd dial another socket of the DPU.
@pytest.mark.parametrize('reply', [
    'unix:///run/containerd/containerd.sock\n',
    'unix:///run/containerd/s/../containerd.sock',
    'unix:///run/containerd/s/sub/%s' % HASH,
    'unix:///run/containerd/s/%s/../../containerd.sock' % HASH,
    'unix:///run/containerd/s/%s\nunix:///run/containerd/containerd.sock' % HASH,
    'unix:///run/containerd/s/%s\n\n' % HASH,
    'unix:///run/containerd/s/%s' % HASH.upper(),
    'ttrpc+hybrid:///run/containerd/s/%s' % HASH,
    '/run/containerd/s/%s' % HASH,
    '',
])
def test_any_other_start_reply_is_not_a_shim_socket(reply):
    assert offload_shim.socket_of(reply, '/run/containerd/s') is None


def test_env_file(tmp_path):
    path = tmp_path / 'client.env'
    path.write_text('# comment\n\nCMD_NET_ADDR=tcp://192.0.2.1:7777\nREXEC_TLS_CA="/etc/rexec/tls/ca.crt"\nnot a line\n')
    assert offload_shim.read_env_file(str(path)) == {'CMD_NET_ADDR': 'tcp://192.0.2.1:7777',
                                                     'REXEC_TLS_CA': '/etc/rexec/tls/ca.crt'}


@pytest.fixture
def sockets():
    """A short directory for the forwarded shims' sockets (a unix socket's path is at most 107 bytes)."""
    path = tempfile.mkdtemp(prefix='shim-s-')
    yield path
    shutil.rmtree(path)


@pytest.fixture
def config(tmp_path, monkeypatch, sockets):
    env_file = tmp_path / 'client.env'
    env_file.write_text('CMD_NET_ADDR=tcp://192.0.2.1:7777\n')
    calls = []

    def fake_client(argv):
        calls.append((argv, dict(os.environ)))
        os.write(1, fake_client.output)
        return fake_client.status

    fake_client.output, fake_client.status = b'', 0
    monkeypatch.setattr(offload_shim, 'load_client', lambda rexec: fake_client)
    monkeypatch.setenv('TTRPC_ADDRESS', '/run/containerd/containerd.sock.ttrpc')
    monkeypatch.setenv('LD_PRELOAD', '/tmp/evil.so')
    path = tmp_path / 'shim.json'
    path.write_text(json.dumps({'host_shim': '/usr/bin/containerd-shim-runc-v2', 'rexec': '/usr/local/bin/rexec',
                                'client_env': str(env_file), 'wait': 0.5, 'docker_root': str(tmp_path / 'docker'),
                                'shim_sockets': sockets}))
    return str(path), fake_client, calls


def test_delete_runs_the_host_shim_with_only_the_env_it_needs(config, capfd):
    path, client, calls = config
    client.output, client.status = b'\x0a\x02ok', 0
    assert offload_shim.main(['-namespace', 'moby', '-id', 'x', 'delete'], path) == 0
    argv, env = calls[0]
    assert argv == ['/usr/bin/containerd-shim-runc-v2', '-namespace', 'moby', '-id', 'x', 'delete']
    assert env == {'CMD_NET_ADDR': 'tcp://192.0.2.1:7777', 'TTRPC_ADDRESS': '/run/containerd/containerd.sock.ttrpc',
                   'PATH': offload_shim.SHIM_PATH}
    assert capfd.readouterr().out == '\n\x02ok'


def test_start_waits_for_the_forwarded_socket_then_prints_the_address(config, tmp_path, capfd, monkeypatch, sockets):
    path, client, _calls = config
    sock_path = os.path.join(sockets, HASH)
    client.output = ('unix://%s\n' % sock_path).encode()
    bundle = tmp_path / 'bundle'
    bundle.mkdir()
    monkeypatch.chdir(bundle)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(sock_path))
        assert offload_shim.main(['-namespace', 'moby', '-id', 'x', 'start'], path) == 0
    assert capfd.readouterr().out == 'unix://%s\n' % sock_path
    # Not forwarded in time: the address is still printed, with a line on stderr.
    client.output = ('unix://%s/%s\n' % (sockets, 'e' * 64)).encode()
    assert offload_shim.main(['start'], path) == 0
    captured = capfd.readouterr()
    assert captured.out == client.output.decode() and 'was not forwarded' in captured.err


def test_a_start_reply_naming_another_dpu_socket_is_not_handed_to_containerd(config, tmp_path, capfd, monkeypatch,
                                                                             sockets):
    path, client, _calls = config
    monkeypatch.chdir(tmp_path)
    client.output = b'unix:///run/containerd/containerd.sock\n'
    assert offload_shim.main(['-namespace', 'moby', '-id', 'x', 'start'], path) == 1
    captured = capfd.readouterr()
    assert captured.out == '' and 'not a shim socket in %s' % sockets in captured.err


def test_start_refused_before_anything_runs_on_the_host(config, tmp_path, capfd, monkeypatch):
    path, _client, calls = config
    bundle = tmp_path / 'bundle'
    bundle.mkdir()
    (bundle / 'config.json').write_text(json.dumps({'hooks': {'prestart': [SETKEY]}}))
    _docker_root(tmp_path, 'bridge')
    monkeypatch.chdir(bundle)
    assert offload_shim.main(['-namespace', 'moby', '-id', CID, 'start'], path) == 1
    assert calls == []
    assert 'need network offload' in capfd.readouterr().err


def _hostconfig(tmp_path, config):
    directory = tmp_path / 'docker' / 'containers' / CID
    directory.mkdir(parents=True)
    (directory / 'hostconfig.json').write_text(json.dumps(config))
    bundle = tmp_path / 'bundle' / CID
    bundle.mkdir(parents=True)
    (bundle / 'config.json').write_text(json.dumps({'ociVersion': '1.0.2'}))
    return str(bundle), str(tmp_path / 'docker')


@pytest.mark.parametrize('config, shown', [
    ({'NetworkMode': 'default', 'PortBindings': {'80/tcp': [{'HostIp': '', 'HostPort': '8080'}]}}, '8080->80/tcp'),
    ({'NetworkMode': 'bridge', 'PortBindings': {'53/udp': [{'HostIp': '127.0.0.1', 'HostPort': '5353'}]}},
     '127.0.0.1:5353->53/udp'),
    ({'NetworkMode': 'default', 'PublishAllPorts': True}, '-P'),
])
def test_a_container_that_publishes_ports_is_refused_saying_what_to_use(tmp_path, config, shown):
    bundle, docker_root = _hostconfig(tmp_path, config)
    with pytest.raises(offload_shim.Refused) as refused:
        offload_shim.check_bundle(bundle, docker_root)
    assert shown in str(refused.value) and '--network host' in str(refused.value)


@pytest.mark.parametrize('config', [{'NetworkMode': 'default', 'PortBindings': {}},
                                    {'NetworkMode': 'host', 'PortBindings': {'80/tcp': [{'HostPort': '80'}]}},
                                    {'NetworkMode': 'none'}])
def test_containers_that_publish_nothing_start(tmp_path, config):
    bundle, docker_root = _hostconfig(tmp_path, config)
    assert offload_shim.check_bundle(bundle, docker_root) is False


def test_shim_flags_as_containerd_passes_them():
    argv = ['-namespace', 'k8s.io', '-address', '/run/containerd/containerd.sock', '-publish-binary',
            '/usr/bin/containerd', '-id', 'c1', '-debug', 'start']
    assert offload_shim.shim_flags(argv) == {'namespace': 'k8s.io', 'address': '/run/containerd/containerd.sock',
                                             'publish-binary': '/usr/bin/containerd', 'id': 'c1'}


def test_a_groups_socket_is_where_the_stock_shim_puts_it():
    # Read in the lab: the address file of a docker container's bundle, written by the HOST's stock shim.
    container = '42c7728a22c3982b48e3ec901a982d91da0669c84b2e5ffb9c95fdaf7b9a28f8'
    assert offload_shim.shim_socket('/run/containerd/s', '/run/containerd/containerd.sock', 'moby', container) == (
        'unix:///run/containerd/s/ba93b8797f97739a5f7e663e996a39af12e576adc718425e0014afecae9444e5')


def test_group_is_the_first_group_annotation_else_the_container():
    sandbox = {'annotations': {'io.kubernetes.cri.sandbox-id': 'pod1'}}
    assert offload_shim.group_of(sandbox, 'c1') == 'pod1'
    assert offload_shim.group_of({'annotations': {'io.containerd.runc.v2.group': 'g',
                                                  'io.kubernetes.cri.sandbox-id': 'pod1'}}, 'c1') == 'g'
    assert offload_shim.group_of({}, 'c1') == 'c1'
    assert offload_shim.group_of({'annotations': ['x']}, 'c1') == 'c1'
    assert offload_shim.group_of([], 'c1') == 'c1'


def _grouped_bundle(tmp_path, sockets, group, container='c1', listen=True):
    bundle = tmp_path / container
    bundle.mkdir()
    (bundle / 'config.json').write_text(json.dumps({'annotations': {'io.kubernetes.cri.sandbox-id': group}}))
    address = offload_shim.shim_socket(sockets, '/run/containerd/containerd.sock', 'k8s.io', group)
    listener = socket.socket(socket.AF_UNIX)
    if listen:
        listener.bind(address[len('unix://'):])
    argv = ['-namespace', 'k8s.io', '-address', '/run/containerd/containerd.sock', '-publish-binary',
            '/usr/bin/containerd', '-id', container, 'start']
    return bundle, address, listener, argv


def test_a_pods_container_joins_its_sandboxs_forwarded_shim_without_the_host(config, tmp_path, capfd, monkeypatch,
                                                                             sockets):
    path, _client, calls = config
    bundle, address, listener, argv = _grouped_bundle(tmp_path, sockets, 'pod1')
    with listener:
        monkeypatch.chdir(bundle)
        assert offload_shim.main(argv, path) == 0
    assert calls == []
    assert capfd.readouterr().out == address
    assert (bundle / 'address').read_text() == address
    assert sorted(p.name for p in bundle.iterdir()) == ['address', 'config.json']


def test_a_group_whose_shim_is_not_forwarded_starts_one_on_the_host(config, tmp_path, monkeypatch, sockets):
    path, client, calls = config
    bundle, address, listener, argv = _grouped_bundle(tmp_path, sockets, 'pod1', listen=False)
    client.output = address.encode()
    with listener:
        monkeypatch.chdir(bundle)
        assert offload_shim.main(argv, path) == 0  # (its socket is not forwarded in this test: said on stderr)
    assert [argv_ for argv_, _env in calls] == [['/usr/bin/containerd-shim-runc-v2'] + argv]
    # A sandbox is its own group: always started.
    calls.clear()
    sandbox, address, listener, argv = _grouped_bundle(tmp_path, sockets, 'pod2', container='pod2')
    client.output = address.encode()
    with listener:
        monkeypatch.chdir(sandbox)
        assert offload_shim.main(argv, path) == 0
    assert len(calls) == 1


def test_a_regular_file_where_the_groups_socket_should_be_is_not_joined(tmp_path, sockets):
    bundle, address, listener, argv = _grouped_bundle(tmp_path, sockets, 'pod1', listen=False)
    listener.close()
    pathlib.Path(address[len('unix://'):]).write_text('')
    assert offload_shim.joined_shim(str(bundle), argv, sockets) is None


# The HOST may write the bundles directory (issue 31, point 4): what it plants there is never followed.
def test_a_config_json_that_is_a_link_or_a_fifo_refuses_the_start_before_the_host_runs_anything(
        config, tmp_path, capfd, monkeypatch):
    path, _client, calls = config
    victim = tmp_path / 'dpu-secret.json'
    victim.write_text('{}')
    for plant in (lambda p: p.symlink_to(victim), lambda p: os.mkfifo(str(p))):
        bundle = tmp_path / ('bundle-%d' % len(list(tmp_path.iterdir())))
        bundle.mkdir()
        plant(bundle / 'config.json')
        monkeypatch.chdir(bundle)
        assert offload_shim.main(['-namespace', 'moby', '-id', 'x', 'start'], path) == 1
        assert 'not a regular file' in capfd.readouterr().err
    assert calls == []


def test_a_link_planted_at_the_temporary_name_is_not_written_through(tmp_path, monkeypatch):
    victim = tmp_path / 'shim.json'
    victim.write_text('the DPU own file')
    bundle = tmp_path / 'bundle'
    bundle.mkdir()
    (bundle / 'config.json').write_text(json.dumps({'hooks': {'prestart': [SETKEY]}}))
    monkeypatch.setattr(offload_shim.os, 'urandom', lambda n: b'\x00' * n)
    (bundle / ('.config.json.dpu-offload-' + '00' * 8)).symlink_to(victim)
    _docker_root(tmp_path, 'none')
    with pytest.raises(FileExistsError):
        offload_shim.check_bundle(str(bundle), str(tmp_path / 'docker'))
    assert victim.read_text() == 'the DPU own file'
    assert json.loads((bundle / 'config.json').read_text()) == {'hooks': {'prestart': [SETKEY]}}


def test_the_address_file_is_replaced_never_written_through_a_link(tmp_path):
    victim = tmp_path / 'victim'
    victim.write_text('kept')
    bundle = tmp_path / 'bundle'
    bundle.mkdir()
    (bundle / 'address').symlink_to(victim)
    offload_shim.write_address(str(bundle), 'unix:///run/containerd/s/' + HASH)
    assert victim.read_text() == 'kept'
    assert (bundle / 'address').read_text() == 'unix:///run/containerd/s/' + HASH
    assert not (bundle / 'address').is_symlink() and sorted(p.name for p in bundle.iterdir()) == ['address']
