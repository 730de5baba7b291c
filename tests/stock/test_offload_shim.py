"""The DPU's offload shim wrapper (roles/stock_engine/files/offload_shim.py), without a lab."""
import json
import os
import pathlib
import socket
import sys

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
    assert offload_shim.socket_of('unix:///run/containerd/s/abc\n') == '/run/containerd/s/abc'
    assert offload_shim.socket_of('ttrpc+hybrid://x') is None


def test_env_file(tmp_path):
    path = tmp_path / 'client.env'
    path.write_text('# comment\n\nCMD_NET_ADDR=tcp://192.0.2.1:7777\nREXEC_TLS_CA="/etc/rexec/tls/ca.crt"\nnot a line\n')
    assert offload_shim.read_env_file(str(path)) == {'CMD_NET_ADDR': 'tcp://192.0.2.1:7777',
                                                     'REXEC_TLS_CA': '/etc/rexec/tls/ca.crt'}


@pytest.fixture
def config(tmp_path, monkeypatch):
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
                                'client_env': str(env_file), 'wait': 0.5, 'docker_root': str(tmp_path / 'docker')}))
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


def test_start_waits_for_the_forwarded_socket_then_prints_the_address(config, tmp_path, capfd, monkeypatch):
    path, client, _calls = config
    sock_path = tmp_path / 's.sock'
    client.output = ('unix://%s\n' % sock_path).encode()
    bundle = tmp_path / 'bundle'
    bundle.mkdir()
    monkeypatch.chdir(bundle)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(sock_path))
        assert offload_shim.main(['-namespace', 'moby', '-id', 'x', 'start'], path) == 0
    assert capfd.readouterr().out == 'unix://%s\n' % sock_path
    # Not forwarded in time: the address is still printed, with a line on stderr.
    client.output = b'unix:///nonexistent/s.sock\n'
    assert offload_shim.main(['start'], path) == 0
    captured = capfd.readouterr()
    assert captured.out == 'unix:///nonexistent/s.sock\n' and 'was not forwarded' in captured.err


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
