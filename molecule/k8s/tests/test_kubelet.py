"""kubelet on the DPU, its pods on the HOST, driven with kubectl from the controller (issue 28's points).

The node is registered under the HOST's name; pods name it (there is no
scheduler in the lab). Tests run in file order and share the namespace's
pods; the last ones restart the DPU's engine and the DPU itself.
"""
import json
import os
import pty
import select
import subprocess
import time

import pytest

from conftest import KUBECTL, NODE, kubectl, pod, processes, wait

NS = 'dpu-offload-k8s'
HOSTPATH = '/var/lib/dpu-offload-lab-hostpath'
# httpd is the shell's child, not the namespace's pid 1 (which ignores SIGTERM): a test can kill it.
WEB = ('echo "web started in $(hostname)"; mkdir -p /tmp/www; echo hello-from-$(hostname) > /tmp/www/index.html; '
       'httpd -f -p 8080 -h /tmp/www & wait')
HOSTNET = 'echo hostnet started; touch /tmp/alive; exec sleep 100000'
MANIFEST = {
    'apiVersion': 'v1', 'kind': 'List', 'items': [
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'cfg', 'namespace': NS},
         'data': {'greeting': 'hello-from-configmap'}},
        {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'sec', 'namespace': NS},
         'stringData': {'password': 'hello-from-secret'}},
        {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'web', 'namespace': NS, 'labels': {'app': 'web'}},
         'spec': {
             'nodeName': NODE,
             'containers': [{
                 'name': 'web', 'image': 'registry.k8s.io/e2e-test-images/busybox:1.29-2',
                 'command': ['sh', '-c', WEB], 'stdin': True,
                 'readinessProbe': {'httpGet': {'path': '/', 'port': 8080}, 'periodSeconds': 2},
                 'livenessProbe': {'tcpSocket': {'port': 8080}, 'periodSeconds': 3},
                 'volumeMounts': [{'name': 'cfg', 'mountPath': '/etc/cfg'}, {'name': 'sec', 'mountPath': '/etc/sec'},
                                  {'name': 'info', 'mountPath': '/etc/info'}, {'name': 'host', 'mountPath': '/host'},
                                  {'name': 'scratch', 'mountPath': '/scratch'}]}],
             'volumes': [{'name': 'cfg', 'configMap': {'name': 'cfg'}}, {'name': 'sec', 'secret': {'secretName': 'sec'}},
                         {'name': 'info', 'downwardAPI': {'items': [{'path': 'name', 'fieldRef': {'fieldPath': 'metadata.name'}}]}},
                         {'name': 'host', 'hostPath': {'path': HOSTPATH}},
                         {'name': 'scratch', 'emptyDir': {}}]}},
        {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'hostnet', 'namespace': NS},
         'spec': {'nodeName': NODE, 'hostNetwork': True,
                  'containers': [{'name': 'sleep', 'image': 'registry.k8s.io/e2e-test-images/busybox:1.29-2',
                                  'command': ['sh', '-c', HOSTNET],
                                  'livenessProbe': {'exec': {'command': ['test', '-e', '/tmp/alive']}, 'periodSeconds': 3}}]}},
    ]}


def ready(name):
    status = pod(name, NS)['status']
    return any(c['type'] == 'Ready' and c['status'] == 'True' for c in status.get('conditions', []))


def container_state(name):
    status = pod(name, NS)['status']['containerStatuses'][0]
    return status['containerID'], status['restartCount'], status.get('ready')


HTTPD = 'httpd -f -p 8080 -h /tmp/www'


def host_pids(machine, argv, ip=None):
    """Pids on machine whose command line is argv (and, with ip, whose network has that address)."""
    found = processes(machine, argv)
    if ip is None:
        return found
    return [pid for pid in found if ' %s/' % ip in machine.run('nsenter -t %d -n ip -4 -o addr' % pid).stdout]


def kexec(name, command, *flags):
    return kubectl('exec', '-n', NS, *flags, name, '--', 'sh', '-c', command).stdout


@pytest.fixture(scope='module')
def pods(k8s, hostnode):
    hostnode.check_output('mkdir -p %s && echo hello-from-the-host > %s/file' % (HOSTPATH, HOSTPATH))
    kubectl('create', 'namespace', NS, check=False)
    k8s('apply', '-f', '-', stdin=json.dumps(MANIFEST))
    assert wait(lambda: ready('web') and ready('hostnet'), 180), kubectl('describe', 'pod', '-n', NS).stdout[-3000:]
    yield
    kubectl('delete', 'namespace', NS, '--wait=true', timeout=300, check=False)
    hostnode.run('rm -rf %s' % HOSTPATH)


def test_a_pod_runs_on_the_host_with_the_address_kubectl_shows(pods, hostnode, dpu):
    ip = pod('web', NS)['status']['podIP']
    wide = kubectl('get', 'pod', 'web', '-n', NS, '-o', 'wide').stdout
    assert ip in wide and NODE in wide
    # On the HOST, in a network namespace with the pod's address; nothing of it on the DPU.
    assert len(host_pids(hostnode, HTTPD, ip)) == 1 and processes(dpu, HTTPD) == []
    assert ' %s/' % ip in kexec('web', 'ip -4 -o addr show eth0')


def test_a_host_network_pod_is_in_the_hosts_network(pods, hostnode):
    pid = processes(hostnode, 'sleep 100000')[0]
    assert hostnode.check_output('readlink /proc/%d/ns/net' % pid) == hostnode.check_output('readlink /proc/1/ns/net')


def test_volumes_are_seen_with_their_contents(pods):
    assert kexec('web', 'cat /etc/cfg/greeting') == 'hello-from-configmap'
    assert kexec('web', 'cat /etc/sec/password') == 'hello-from-secret'
    assert kexec('web', 'cat /etc/info/name') == 'web'
    token = kexec('web', 'cat /var/run/secrets/kubernetes.io/serviceaccount/token')
    assert token.count('.') == 2 and kexec('web', 'cat /var/run/secrets/kubernetes.io/serviceaccount/namespace') == NS
    # hostPath is the HOST's path: the pod runs there.
    assert kexec('web', 'cat /host/file').strip() == 'hello-from-the-host'
    assert '/scratch' in kexec('web', 'grep " /scratch " /proc/mounts')


def test_an_update_of_the_configmap_reaches_the_running_pod(pods):
    kubectl('patch', 'configmap', 'cfg', '-n', NS, '--type', 'merge', '-p', '{"data": {"greeting": "updated"}}')
    assert wait(lambda: kexec('web', 'cat /etc/cfg/greeting') == 'updated', 150)


def test_logs_and_follow(pods):
    assert 'web started in web' in kubectl('logs', '-n', NS, 'web').stdout
    proc = subprocess.Popen(KUBECTL + ['logs', '-f', '-n', NS, 'hostnet'], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'hostnet started'
        assert proc.poll() is None          # still following
    finally:
        proc.kill()
        proc.wait()


def test_exec_with_and_without_a_terminal(pods):
    assert kexec('web', 'echo plain; exit 0') == 'plain\n'
    assert kubectl('exec', '-n', NS, 'web', '--', 'sh', '-c', 'exit 3', check=False).returncode == 3
    assert kubectl('exec', '-i', '-n', NS, 'web', '--', 'cat', stdin='piped in\n').stdout == 'piped in\n'
    # -t needs a terminal on this side: run kubectl on a pseudo-terminal.
    leader, follower = pty.openpty()
    proc = subprocess.Popen(KUBECTL + ['exec', '-it', '-n', NS, 'web', '--', 'sh', '-c', 'tty; echo tty-done'],
                            stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output = b''
    end = time.monotonic() + 30
    while b'tty-done' not in output and time.monotonic() < end:
        if select.select([leader], [], [], 1)[0]:
            try:
                output += os.read(leader, 4096)
            except OSError:
                break
    proc.wait(10)
    os.close(leader)
    assert b'/dev/pts/' in output and b'tty-done' in output


def test_attach_reaches_the_containers_stdin(pods):
    attach = subprocess.Popen(KUBECTL + ['attach', '-i', '-n', NS, 'web', '-c', 'web'], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert attach.poll() is None, attach.stderr.read()
    finally:
        attach.kill()
        attach.wait()


def test_port_forward_reaches_the_pod_on_the_host(pods):
    forward = subprocess.Popen(KUBECTL + ['port-forward', '-n', NS, 'pod/web', '18099:8080'], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert 'Forwarding from' in forward.stdout.readline()
        body = subprocess.run(['python3', '-c', 'import urllib.request, sys; '
                               'sys.stdout.write(urllib.request.urlopen("http://127.0.0.1:18099/", timeout=10).read().decode())'],
                              capture_output=True, text=True, timeout=30, check=False).stdout
        assert body.strip() == 'hello-from-web'
    finally:
        forward.kill()
        forward.wait()


def test_cp_from_and_to_the_container(pods, tmp_path):
    source = tmp_path / 'in.txt'
    source.write_text('copied in\n')
    kubectl('cp', str(source), '%s/web:/tmp/in.txt' % NS)
    assert kexec('web', 'cat /tmp/in.txt') == 'copied in\n'
    kubectl('cp', '%s/web:/tmp/www/index.html' % NS, str(tmp_path / 'out.html'))
    assert (tmp_path / 'out.html').read_text() == 'hello-from-web\n'


def test_probes_act(pods, hostnode):
    before_id, before_restarts, dummy = container_state('web')
    # The readiness probe (HTTP, dialled from the DPU) fails: the pod is no longer ready, then is again.
    kexec('web', 'mv /tmp/www/index.html /tmp/index.html.away')
    assert wait(lambda: not ready('web'), 60)
    kexec('web', 'mv /tmp/index.html.away /tmp/www/index.html')
    assert wait(lambda: ready('web'), 60)
    # The liveness probe (TCP) fails: kubelet restarts the container, on the HOST.
    kexec('web', 'kill $(pidof httpd)')
    assert wait(lambda: container_state('web')[1] > before_restarts and ready('web'), 120)
    after_id = container_state('web')[0]
    ip = pod('web', NS)['status']['podIP']
    assert after_id != before_id and len(host_pids(hostnode, HTTPD, ip)) == 1
    # The liveness probe (exec, through CRI) fails: the same.
    hostnet_restarts = container_state('hostnet')[1]
    kexec('hostnet', 'rm /tmp/alive')
    assert wait(lambda: container_state('hostnet')[1] > hostnet_restarts and ready('hostnet'), 120)


def test_a_restart_of_the_dpus_containerd_keeps_the_pods(pods, dpu):
    before = {name: container_state(name)[:2] for name in ('web', 'hostnet')}
    dpu.check_output('systemctl restart containerd.service')
    time.sleep(10)
    assert wait(lambda: ready('web') and ready('hostnet'), 120)
    assert {name: container_state(name)[:2] for name in ('web', 'hostnet')} == before


def test_a_dpu_reboot_keeps_the_pods_running_and_kubelet_finds_them_again(pods, hostnode, dpu):
    before = {name: container_state(name)[:2] for name in ('web', 'hostnet')}
    ip = pod('web', NS)['status']['podIP']
    pid = host_pids(hostnode, HTTPD, ip)
    subprocess.run(['docker', 'restart', dpu.ansible.get_variables()['inventory_hostname']], check=True, timeout=180)
    # The pod runs on through the reboot, same process.
    assert host_pids(hostnode, HTTPD, ip) == pid
    assert wait(lambda: ready('web') and ready('hostnet'), 300)
    assert {name: container_state(name)[:2] for name in ('web', 'hostnet')} == before
    assert pod('web', NS)['status']['podIP'] == ip


def test_restart_policy_brings_a_crashed_container_back_and_deletion_leaves_nothing(pods, hostnode, dpu):
    crash = {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'crash', 'namespace': NS},
             'spec': {'nodeName': NODE, 'restartPolicy': 'Always',
                      'containers': [{'name': 'crash', 'image': 'registry.k8s.io/e2e-test-images/busybox:1.29-2',
                                      'command': ['sh', '-c', 'echo crash-once; sleep 2; exit 1']}]}}
    kubectl('apply', '-f', '-', stdin=json.dumps(crash))
    assert wait(lambda: container_state('crash')[1] >= 1, 120)
    uid = pod('crash', NS)['metadata']['uid']
    kubectl('delete', 'pod', 'crash', '-n', NS, '--wait=true', timeout=180)
    command = 'sh -c echo crash-once; sleep 2; exit 1'
    assert processes(hostnode, command) == [] and processes(dpu, command) == []
    assert wait(lambda: not dpu.file('/var/lib/kubelet/pods/%s' % uid).exists, 60)
