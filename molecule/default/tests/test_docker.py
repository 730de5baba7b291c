"""docker on the DPU, its containers on the HOST: every command an operator runs.

The image (localhost/dpu-offload/busybox:latest, a static busybox made with
docker import) comes from the scenario's side_effect playbook. Tests run in
file order and share one detached container.
"""
import json

import pytest

from conftest import docker_container, processes, wait

IMAGE = 'localhost/dpu-offload/busybox:latest'
NAME = 'docker-proof'
LOOP = "i=0; while true; do echo out $i; echo err $i >&2; i=$((i+1)); sleep 0.2; done"


def _inspect(dpu, name):
    return json.loads(dpu.check_output('docker inspect %s' % name))[0]


def _last_out(dpu, name):
    """The number of the newest `out N` line in the container's log (-1 if none).

    Its stdout and stderr are relayed apart, so the newest entry of all may be
    either stream's: count stdout's own lines."""
    numbers = [int(line.split()[1]) for line in dpu.run('docker logs --tail 6 %s' % name).stdout.splitlines()
               if line.startswith('out ') and line.split()[1].isdigit()]
    return max(numbers, default=-1)


@pytest.fixture(scope='module')
def container(dpu):
    yield from docker_container(dpu, NAME, IMAGE, LOOP)


def test_docker_runs_on_the_offloaded_containerd(dpu):
    info = json.loads(dpu.check_output("docker info --format '{{json .}}'"))
    assert info['Driver'] == 'vfs'
    assert info['LiveRestoreEnabled'] is True
    # The runtime dockerd uses is the offload wrapper, found first on containerd's PATH.
    assert dpu.file('/usr/local/bin/containerd-shim-runc-v2').contains('offload_shim')


def test_process_runs_on_host_only(hostnode, dpu, container):
    state = _inspect(dpu, container)['State']
    assert state['Running'] is True
    pid = state['Pid']
    assert hostnode.file('/proc/%d/cmdline' % pid).content_string.split('\0')[:2] == ['sh', '-c']
    assert not dpu.file('/proc/%d/cmdline' % pid).exists or \
        dpu.file('/proc/%d/cmdline' % pid).content_string.split('\0')[:2] != ['sh', '-c']
    assert processes(dpu, 'sh -c %s' % LOOP) == []
    # runc on the HOST knows it, in dockerd's containerd namespace.
    cid = _inspect(dpu, container)['Id']
    assert cid in hostnode.check_output('runc --root /run/docker/runtime-runc/moby list -q').split()


def test_ps_and_logs_stdout_and_stderr(dpu, container):
    assert container in dpu.check_output("docker ps --format '{{.Names}}'").split()
    assert wait(lambda: 'out 3' in dpu.run('docker logs %s' % container).stdout)
    logs = dpu.run('docker logs %s' % container)
    assert 'out 0' in logs.stdout and 'err 0' in logs.stderr and 'err 0' not in logs.stdout


def test_exec_plain_tty_and_stdin(dpu, container):
    result = dpu.run("docker exec %s sh -c 'echo out; echo err >&2; exit 3'" % container)
    assert (result.rc, result.stdout, result.stderr.strip()) == (3, 'out\n', 'err')
    assert dpu.check_output('docker exec -t %s sh -c "test -t 1 && echo tty"' % container).strip() == 'tty'
    for i in range(3):
        assert dpu.check_output("printf 'line %d\\n' | docker exec -i %s cat" % (i, container)) == 'line %d' % i


def test_run_rm_returns_exit_code_and_stdin(dpu):
    result = dpu.run("printf 'a\\nb\\nc\\n' | docker run --rm -i %s sh -c 'wc -l; echo err >&2; exit 7'" % IMAGE)
    assert result.rc == 7, result.stderr
    assert result.stdout.strip() == '3'
    assert 'err' in result.stderr


def test_top_lists_the_host_processes(dpu, container):
    pid = _inspect(dpu, container)['State']['Pid']
    top = dpu.check_output('docker top %s -o pid,args' % container)
    assert str(pid) in [line.split()[0] for line in top.splitlines()[1:]]


def test_stats(dpu, container):
    stats = json.loads(dpu.check_output("docker stats --no-stream --format '{{json .}}' %s" % container))
    assert stats['Name'] == container and int(stats['PIDs']) >= 1


def _runs(dpu, name):
    """How many times the container's loop has started: each run's first line is `out 0`."""
    return dpu.run('docker logs %s' % name).stdout.splitlines().count('out 0')


def test_stop_start_restart_at_once(hostnode, dpu, container):
    old = _inspect(dpu, container)['State']['Pid']
    base = _runs(dpu, container)
    dpu.check_output('docker stop -t 1 %s' % container)
    assert not hostnode.file('/proc/%d' % old).exists
    dpu.check_output('docker start %s' % container)
    started = _inspect(dpu, container)['State']
    assert started['Running'] and hostnode.file('/proc/%d' % started['Pid']).exists
    # Each run appends to the same log; wait for its first line before the next restart, so a
    # loaded machine that kills a run early (sh ignores SIGTERM, -t 1) cannot skip one.
    assert wait(lambda: _runs(dpu, container) == base + 1, timeout=30)
    for round_ in range(3):
        dpu.check_output('docker restart -t 1 %s' % container)
        assert wait(lambda: _runs(dpu, container) == base + 2 + round_, timeout=30), round_
    state = _inspect(dpu, container)['State']
    assert state['Running'] and hostnode.file('/proc/%d' % state['Pid']).exists
    # The last run's output keeps flowing through the relayed fifo.
    lines = len(dpu.run('docker logs %s' % container).stdout.splitlines())
    assert wait(lambda: len(dpu.run('docker logs %s' % container).stdout.splitlines()) > lines, timeout=30)


def test_kill_and_restart_policy(hostnode, dpu):
    dpu.run('docker rm -f docker-policy')
    dpu.check_output('docker run -d --name docker-policy --restart=always %s sleep 600' % IMAGE)
    first = _inspect(dpu, 'docker-policy')['State']['Pid']
    hostnode.check_output('kill -9 %d' % first)
    assert wait(lambda: _inspect(dpu, 'docker-policy')['RestartCount'] >= 1
                and _inspect(dpu, 'docker-policy')['State']['Running'], timeout=20), \
        (_inspect(dpu, 'docker-policy')['State'], hostnode.run('test -e /proc/%d' % first).rc)
    second = _inspect(dpu, 'docker-policy')['State']['Pid']
    assert second != first and hostnode.file('/proc/%d' % second).exists
    dpu.check_output('docker update --restart=no docker-policy')
    dpu.check_output('docker kill docker-policy')
    assert wait(lambda: not _inspect(dpu, 'docker-policy')['State']['Running'])
    dpu.check_output('docker rm docker-policy')


def test_networks(hostnode, dpu):
    host_addr = hostnode.check_output("ip -4 -o addr show scope global | awk '{print $4}'")
    own = dpu.check_output("docker run --rm --network host %s ip -4 -o addr show scope global" % IMAGE)
    assert host_addr.split('/')[0] in own
    for mode in ('none', 'default'):
        out = dpu.check_output("docker run --rm --network %s %s ip -o link" % (mode, IMAGE))
        assert [line.split(':')[1].strip() for line in out.splitlines()] == ['lo']
    dpu.run('docker network rm dpu-offload-probe')
    dpu.check_output('docker network create dpu-offload-probe')
    try:
        refused = dpu.run('docker run --rm --network dpu-offload-probe %s true' % IMAGE)
        assert refused.rc != 0 and 'need network offload' in refused.stderr, refused.stderr
    finally:
        dpu.run('docker network rm dpu-offload-probe')
    assert dpu.check_output('docker ps -aq --filter status=created') == ''


def test_publishing_ports_is_refused_with_the_reason(dpu):
    for flags in ('-p 8080:80', '-P --expose 80'):
        refused = dpu.run('docker run --rm %s %s true' % (flags, IMAGE))
        assert refused.rc != 0 and 'publishes ports' in refused.stderr and '--network host' in refused.stderr, refused.stderr
    # With the HOST's network a port needs no publishing: docker ignores -p there.
    assert dpu.run('docker run --rm --network host -p 8080:80 %s true' % IMAGE).rc == 0
    assert dpu.check_output('docker ps -aq --filter status=created') == ''


def test_no_dpu_hook_reaches_the_host(hostnode, dpu):
    dpu.run('docker rm -f docker-none')
    dpu.check_output('docker run -d --name docker-none --network none %s sleep 600' % IMAGE)
    try:
        cid = _inspect(dpu, 'docker-none')['Id']
        spec = json.loads(hostnode.file('/run/containerd/io.containerd.runtime.v2.task/moby/%s/config.json' % cid).content_string)
        hooks = [h for stage in (spec.get('hooks') or {}).values() for h in stage]
        assert [h for h in hooks if h['path'].startswith('/proc/')] == []
    finally:
        dpu.run('docker rm -f docker-none')


def test_save_load_import_without_registry(dpu):
    dpu.check_output('docker save -o /var/tmp/dpu-offload-save.tar %s' % IMAGE)
    dpu.check_output('docker tag %s localhost/dpu-offload/reloaded:1' % IMAGE)
    dpu.check_output('docker rmi localhost/dpu-offload/reloaded:1')
    loaded = dpu.check_output('docker load -i /var/tmp/dpu-offload-save.tar')
    assert IMAGE.rsplit('/', maxsplit=1)[-1] in loaded
    dpu.check_output("docker export $(docker create %s true) | docker import - localhost/dpu-offload/exported:1" % IMAGE)
    assert dpu.check_output('docker run --rm localhost/dpu-offload/exported:1 echo imported') == 'imported'
    dpu.run('docker rmi localhost/dpu-offload/exported:1; rm -f /var/tmp/dpu-offload-save.tar')
    dpu.run('docker container prune -f')


def test_engine_restarts_keep_the_container(hostnode, dpu, container):
    pid = _inspect(dpu, container)['State']['Pid']
    before = _last_out(dpu, container)
    dpu.check_output('systemctl restart docker.service')
    assert wait(lambda: dpu.run('docker inspect %s' % container).rc == 0)
    dpu.check_output('systemctl restart containerd.service')
    assert wait(lambda: dpu.run("docker exec %s echo alive" % container).stdout == 'alive\n', timeout=20)
    state = _inspect(dpu, container)['State']
    assert state['Running'] and state['Pid'] == pid and hostnode.file('/proc/%d' % pid).exists
    # The relay opens the fifos again after dockerd's restart, with backoff: give it the time the faults tests give.
    assert wait(lambda: _last_out(dpu, container) > before + 3, timeout=30), (before, _last_out(dpu, container))


def test_rm_leaves_nothing_on_either_side(hostnode, dpu, container):
    info = _inspect(dpu, container)
    pid, cid = info['State']['Pid'], info['Id']
    dpu.check_output('docker rm -f %s' % container)
    assert wait(lambda: not hostnode.file('/proc/%d' % pid).exists)
    assert wait(lambda: not [line for line in hostnode.check_output('ps -eo args=').splitlines()
                             if 'containerd-shim-runc-v2' in line and (' -id %s ' % cid) in line + ' '])
    assert not hostnode.file('/run/docker/runtime-runc/moby/%s' % cid).exists
    assert not dpu.file('/run/containerd/io.containerd.runtime.v2.task/moby/%s' % cid).exists
    assert not dpu.file('/run/docker/containerd/%s' % cid).exists
    assert wait(lambda: [s for s in dpu.check_output('ls -A /run/containerd/s').split() if s] ==
                [s for s in hostnode.check_output('ls -A /run/containerd/s').split() if s])


def test_zz_engine_benchmark_runs(dpu):
    """bench/bench_engine.py in quick mode on this lab, so that it cannot rot; its figures are not judged."""
    import os
    import subprocess
    import sys
    root = os.path.join(os.path.dirname(__file__), '..', '..', '..')
    result = subprocess.run([sys.executable, os.path.join(root, 'bench', 'bench_engine.py'), '--quick'],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'docker run --rm true, offloaded' in result.stdout and 'QUICK MODE' in result.stdout
    assert dpu.check_output("docker ps -aq --filter name=bench-") == ''
