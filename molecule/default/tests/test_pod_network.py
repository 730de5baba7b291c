"""Pods with their own network, made on the HOST: the DPU's CRI runs CNI, each plugin runs on the HOST.

Through CRI as kubelet calls it (cri_client). The default configuration of
the offload_network role: a bridge on the HOST, host-local addresses,
outbound NAT, portmap for hostPort. Tests run in file order and share two
pods.
"""
import json
import re

import pytest
from cri_api.v1 import api_pb2 as api

from conftest import wait
from cri_client import connect, pod_config, remove_pod, start_container

SUBNET = re.compile(r'^10\.88\.\d+\.\d+$')
WEB = 'mkdir -p /www && echo "hello from %s" > /www/index.html && exec httpd -f -p 8080 -h /www'
DNS = api.DNSConfig(servers=['10.10.10.10'], searches=['pods.example.test'], options=['ndots:3'])
HOST_ADDRESS = '172.30.77.10'
DPU_ADDRESS = '172.30.77.20'


@pytest.fixture(scope='module')
def cri():
    channel, runtime, dummy = connect()
    yield runtime
    channel.close()


def _web_pod(runtime, name, host_port=0):
    extra = {'dns_config': DNS}
    if host_port:
        extra['port_mappings'] = [api.PortMapping(protocol=api.TCP, container_port=8080, host_port=host_port)]
    config = pod_config(name, network=api.POD, **extra)
    pod_id = runtime.RunPodSandbox(api.RunPodSandboxRequest(config=config)).pod_sandbox_id
    container_id = start_container(runtime, pod_id, config, 'web', ['sh', '-c', WEB % name])
    return pod_id, container_id


def _ip(runtime, pod_id):
    return runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status.network.ip


def _exec(runtime, container_id, command, timeout=15):
    reply = runtime.ExecSync(api.ExecSyncRequest(container_id=container_id, cmd=['sh', '-c', command], timeout=timeout))
    return reply.exit_code, reply.stdout.decode() + reply.stderr.decode()


def _get(machine, url):
    return machine.run("python3 -c 'import sys, urllib.request; "
                       "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' %s" % url)


@pytest.fixture(scope='module')
def pods(cri):
    made = [_web_pod(cri, 'net-a', host_port=18080), _web_pod(cri, 'net-b')]
    yield made
    for pod_id, dummy in made:
        remove_pod(cri, pod_id)


def _leftovers(hostnode, dpu):
    """What pod networks leave on each machine: namespaces, veths, bridge ports, per-pod NAT chains, leases, records."""
    host = {
        'netns': hostnode.run('ip netns list').stdout.split('\n'),
        'veth': hostnode.run('ip -o link show type veth').stdout.count('\n'),
        'bridge ports': hostnode.run('ip -o link show master cni-dpu0').stdout.count('\n'),
        'nat chains': sorted(set(re.findall(r'CNI-(?:DN-)?[0-9a-f]{20,}', hostnode.run('iptables-save -t nat').stdout))),
        'leases': [f for f in hostnode.run('ls /var/lib/cni/networks/dpu-offload-pods').stdout.split()
                   if re.match(r'^\d', f)],
        'records': hostnode.run('ls /run/dpu-offload/network').stdout.split(),
    }
    host['netns'] = sorted(line.split()[0] for line in host['netns'] if line.strip())
    dpu_side = {'netns': dpu.run('ls /run/netns').stdout.split(),
                'records': dpu.run('ls /var/lib/dpu-offload/network').stdout.split()}
    return host, dpu_side


def test_the_pod_has_the_address_cri_reports_on_the_host(cri, pods, hostnode):
    pod_id, container_id = pods[0]
    ip = _ip(cri, pod_id)
    assert SUBNET.match(ip)
    status, out = _exec(cri, container_id, 'ip -4 -o addr show eth0')
    assert status == 0 and ' %s/16 ' % ip in out
    # The sandbox runs on the HOST in a namespace the HOST's bridge is wired to.
    assert ' %s/16 ' % ip not in hostnode.check_output('ip -4 -o addr')
    assert hostnode.run('ip -o link show master cni-dpu0').stdout.count('\n') >= 2


def test_two_pods_reach_each_other_by_address(cri, pods):
    ip_a = _ip(cri, pods[0][0])
    status, out = _exec(cri, pods[1][1], 'wget -qO- http://%s:8080/' % ip_a)
    assert (status, out.strip()) == (0, 'hello from net-a')


def test_a_pod_reaches_the_host_and_the_lab_network(cri, pods):
    for address in (HOST_ADDRESS, DPU_ADDRESS):
        status, out = _exec(cri, pods[0][1], 'ping -c 1 -W 3 %s' % address)
        assert status == 0, out


def test_the_host_and_the_dpu_reach_the_pod(cri, pods, hostnode, dpu):
    ip = _ip(cri, pods[1][0])
    for machine in (hostnode, dpu):
        assert _get(machine, 'http://%s:8080/' % ip).stdout.strip() == 'hello from net-b'


def test_a_host_port_publishes_on_the_hosts_address(pods, hostnode, dpu):
    dummy = pods
    assert _get(dpu, 'http://%s:18080/' % HOST_ADDRESS).stdout.strip() == 'hello from net-a'
    assert _get(hostnode, 'http://127.0.0.1:18080/').stdout.strip() == 'hello from net-a'
    # Published on the HOST only: nothing listens on the DPU.
    assert _get(dpu, 'http://127.0.0.1:18080/').rc != 0


def test_the_pods_resolv_conf_is_crIs_dns_config(cri, pods):
    status, out = _exec(cri, pods[0][1], 'cat /etc/resolv.conf')
    assert status == 0
    assert 'nameserver 10.10.10.10' in out and 'search pods.example.test' in out and 'options ndots:3' in out


def test_a_restart_of_the_dpus_containerd_keeps_the_pods_address(cri, pods, dpu, hostnode):
    ip = _ip(cri, pods[1][0])
    dpu.check_output('systemctl restart containerd.service')
    assert wait(lambda: _answers_status(cri, pods[1][0]), 30)
    assert _ip(cri, pods[1][0]) == ip
    assert _get(hostnode, 'http://%s:8080/' % ip).stdout.strip() == 'hello from net-b'


def _answers_status(runtime, pod_id):
    try:
        return bool(_ip(runtime, pod_id))
    except Exception:  # pylint: disable=broad-except
        return False


def test_a_pod_whose_host_namespace_is_gone_is_still_removed(cri, hostnode, dpu):
    pod_id, dummy = _web_pod(cri, 'net-gone')
    netns = json.loads(dpu.check_output('cat /var/lib/dpu-offload/network/%s.json' % pod_id))['netns']
    hostnode.check_output('ip netns delete %s' % netns.rsplit('/', 1)[1])
    cri.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    cri.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert pod_id not in [p.id for p in cri.ListPodSandbox(api.ListPodSandboxRequest()).items]
    assert not hostnode.file('/run/dpu-offload/network/%s.json' % pod_id).exists
    assert not dpu.file('/var/lib/dpu-offload/network/%s.json' % pod_id).exists


def test_twenty_pods_come_and_go_and_leave_nothing(cri, pods, hostnode, dpu):
    before = _leftovers(hostnode, dpu)
    made = []
    for number in range(20):
        config = pod_config('net-many-%d' % number, network=api.POD)
        made.append(cri.RunPodSandbox(api.RunPodSandboxRequest(config=config)).pod_sandbox_id)
    assert len({_ip(cri, pod_id) for pod_id in made}) == 20
    for pod_id in made:
        remove_pod(cri, pod_id)
    assert _leftovers(hostnode, dpu) == before
