"""CRI, the API kubelet speaks, on the DPU: pods and their containers run on the HOST.

The calls are the ones kubelet makes, through the published CRI v1 stubs
(cri_api), on the DPU's containerd socket. The controller reaches that
socket inside the lab's DPU container through /proc/PID/root. Tests run in
file order and share one pod.
"""
import os
import subprocess

import grpc
import pytest
from cri_api.v1 import api_pb2 as api
from cri_api.v1 import api_pb2_grpc as stubs

from conftest import processes, role_defaults, wait

SANDBOX_IMAGE = 'localhost/dpu-offload/pause:1'
IMAGE = 'localhost/dpu-offload/busybox:latest'
LOOP = "i=0; while true; do echo cri out $i; i=$((i+1)); sleep 0.2; done"
LOG_DIR = '/var/log/dpu-offload-cri-test'


def _socket():
    name = os.environ.get('LAB_DPU', 'lab-dpu')
    pid = subprocess.run(['docker', 'inspect', '-f', '{{.State.Pid}}', name], check=True,
                         capture_output=True, text=True).stdout.strip()
    return 'unix:///proc/%s/root/run/containerd/containerd.sock' % pid


@pytest.fixture(scope='module')
def cri():
    channel = grpc.insecure_channel(_socket())
    yield stubs.RuntimeServiceStub(channel), stubs.ImageServiceStub(channel)
    channel.close()


def _pod_config(name, network=api.NODE):
    return api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name=name, namespace='dpu-offload-test', uid=name + '-uid', attempt=0),
        # A pod in the HOST's network has the HOST's UTS namespace too, whose name runc does not set.
        hostname='' if network == api.NODE else name, log_directory=LOG_DIR + '/' + name,
        linux=api.LinuxPodSandboxConfig(security_context=api.LinuxSandboxSecurityContext(
            namespace_options=api.NamespaceOption(network=network, pid=api.POD, ipc=api.POD))))


@pytest.fixture(scope='module')
def pod(cri, dpu):
    runtime, dummy = cri
    config = _pod_config('cri-proof')
    pod_id = runtime.RunPodSandbox(api.RunPodSandboxRequest(config=config)).pod_sandbox_id
    container_id = runtime.CreateContainer(api.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=config,
        config=api.ContainerConfig(metadata=api.ContainerMetadata(name='loop'), image=api.ImageSpec(image=IMAGE),
                                   command=['sh', '-c', LOOP], log_path='loop.log'))).container_id
    runtime.StartContainer(api.StartContainerRequest(container_id=container_id))
    yield pod_id, container_id, config
    for call in (lambda: runtime.StopContainer(api.StopContainerRequest(container_id=container_id, timeout=2)),
                 lambda: runtime.RemoveContainer(api.RemoveContainerRequest(container_id=container_id)),
                 lambda: runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id)),
                 lambda: runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id))):
        try:
            call()
        except grpc.RpcError:
            pass
    dpu.run('rm -rf %s' % LOG_DIR)


def test_version_status_and_the_sandbox_image(cri):
    runtime, images = cri
    version = runtime.Version(api.VersionRequest())
    assert version.runtime_name == 'containerd' and version.runtime_api_version == 'v1'
    conditions = {c.type: c.status for c in runtime.Status(api.StatusRequest()).status.conditions}
    assert conditions['RuntimeReady'] is True
    image = images.ImageStatus(api.ImageStatusRequest(image=api.ImageSpec(image=SANDBOX_IMAGE))).image
    assert SANDBOX_IMAGE in image.repo_tags


def test_the_sandbox_runs_on_the_host_and_is_ready(cri, pod, hostnode, dpu):
    runtime, dummy = cri
    pod_id = pod[0]
    status = runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
    assert status.state == api.SANDBOX_READY
    # runc on the HOST runs the sandbox, in CRI's containerd namespace; the DPU runs no pause.
    assert pod_id in hostnode.check_output('runc --root /run/containerd/runc/k8s.io list -q').split()
    # ps shows the role's entrypoint as its words joined by spaces.
    pause = ' '.join(role_defaults.stock_sandbox_entrypoint())
    assert processes(hostnode, pause) and not processes(dpu, pause)


def test_the_container_runs_on_the_host_in_the_pod(cri, pod, hostnode, dpu):
    runtime, images = cri
    pod_id, container_id, dummy_config = pod
    status = runtime.ContainerStatus(api.ContainerStatusRequest(container_id=container_id)).status
    assert status.state == api.CONTAINER_RUNNING
    # The image it was created from: its tag, and its digest (or id) as ImageStatus gives them.
    image = images.ImageStatus(api.ImageStatusRequest(image=api.ImageSpec(image=IMAGE))).image
    assert status.image.image == IMAGE and status.image_ref in list(image.repo_digests) + [image.id]
    pids = processes(hostnode, 'sh -c %s' % LOOP)
    assert len(pids) == 1 and processes(dpu, 'sh -c %s' % LOOP) == []
    # In the sandbox's namespaces (pid and ipc of the pod, the HOST's network).
    sandbox_pid = int(hostnode.check_output(
        "runc --root /run/containerd/runc/k8s.io state %s | sed -n 's/.*\"pid\": \\([0-9]*\\).*/\\1/p'" % pod_id))
    for ns in ('ipc', 'net'):
        assert hostnode.check_output('readlink /proc/%d/ns/%s' % (pids[0], ns)) == \
            hostnode.check_output('readlink /proc/%d/ns/%s' % (sandbox_pid, ns))
    assert hostnode.check_output('readlink /proc/%d/ns/net' % pids[0]) == hostnode.check_output('readlink /proc/1/ns/net')


def test_exec_sync_returns_stdout_and_the_exit_code(cri, pod):
    runtime, dummy = cri
    reply = runtime.ExecSync(api.ExecSyncRequest(container_id=pod[1], cmd=['sh', '-c', 'echo hello; exit 3'],
                                                 timeout=20))
    assert (reply.stdout, reply.exit_code) == (b'hello\n', 3)


def test_the_log_file_on_the_dpu_holds_what_the_container_printed(pod, dpu):
    log = '%s/cri-proof/loop.log' % LOG_DIR
    assert wait(lambda: 'cri out 3' in dpu.run('cat %s' % log).stdout, 15)
    # CRI's log format: time, stream, tag, text.
    assert ' stdout F cri out 0' in dpu.check_output('head -1 %s' % log)


def _answers(runtime):
    try:
        runtime.Version(api.VersionRequest(), timeout=2)
        return True
    except grpc.RpcError:
        return False


def test_a_restart_of_the_dpus_containerd_keeps_the_pod_running(cri, pod, hostnode, dpu):
    runtime, dummy = cri
    pod_id, container_id, dummy_config = pod
    before = processes(hostnode, 'sh -c %s' % LOOP)
    dpu.check_output('systemctl restart containerd.service')
    assert wait(lambda: _answers(runtime), 30)
    sandboxes = {p.id: p.state for p in runtime.ListPodSandbox(api.ListPodSandboxRequest()).items}
    containers = {c.id: c.state for c in runtime.ListContainers(api.ListContainersRequest()).containers}
    assert sandboxes.get(pod_id) == api.SANDBOX_READY and containers.get(container_id) == api.CONTAINER_RUNNING
    assert processes(hostnode, 'sh -c %s' % LOOP) == before
    reply = runtime.ExecSync(api.ExecSyncRequest(container_id=container_id, cmd=['echo', 'still managed'], timeout=20))
    assert reply.stdout == b'still managed\n'


def test_a_pod_with_its_own_network_is_refused_with_the_reason(cri):
    runtime, dummy = cri
    with pytest.raises(grpc.RpcError) as exc:
        runtime.RunPodSandbox(api.RunPodSandboxRequest(config=_pod_config('cri-netns', network=api.POD)))
    assert 'needs network offload' in exc.value.details() and 'use hostNetwork' in exc.value.details()
    # Nothing that looks like a pod is left, and nothing stuck: CRI removed what it made.
    left = [p for p in runtime.ListPodSandbox(api.ListPodSandboxRequest()).items if p.metadata.name == 'cri-netns']
    assert [p.state for p in left] in ([], [api.SANDBOX_NOTREADY])
    for sandbox in left:
        runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=sandbox.id))
        runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id))


def test_stop_and_remove_leave_nothing_on_either_side(cri, pod, hostnode, dpu):
    runtime, dummy = cri
    pod_id, container_id, dummy_config = pod
    runtime.StopContainer(api.StopContainerRequest(container_id=container_id, timeout=2))
    runtime.RemoveContainer(api.RemoveContainerRequest(container_id=container_id))
    runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert wait(lambda: processes(hostnode, 'sh -c %s' % LOOP) == [])
    assert not hostnode.run('runc --root /run/containerd/runc/k8s.io list -q').stdout.split()
    for machine in (hostnode, dpu):
        table = machine.file('/proc/self/mountinfo').content_string
        assert pod_id not in table and container_id not in table
    listed = runtime.ListPodSandbox(api.ListPodSandboxRequest()).items
    assert pod_id not in [p.id for p in listed]
