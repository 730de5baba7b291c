"""CRI, the API kubelet speaks, on the DPU: pods and their containers run on the HOST.

The calls are the ones kubelet makes, through the published CRI v1 stubs
(cri_api), on the DPU's containerd socket. The controller reaches that
socket inside the lab's DPU container through /proc/PID/root. Tests run in
file order and share one pod.
"""
import grpc
import pytest
from cri_api.v1 import api_pb2 as api

from conftest import processes, role_defaults, wait

from cri_client import IMAGE, LOG_DIR, SANDBOX_IMAGE, answers, connect, pod_config

LOOP = "i=0; while true; do echo cri out $i; i=$((i+1)); sleep 0.2; done"


@pytest.fixture(scope='module')
def cri():
    channel, runtime, images = connect()
    yield runtime, images
    channel.close()


@pytest.fixture(scope='module')
def pod(cri, dpu):
    runtime, dummy = cri
    config = pod_config('cri-proof')
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


def test_a_restart_of_the_dpus_containerd_keeps_the_pod_running(cri, pod, hostnode, dpu):
    runtime, dummy = cri
    pod_id, container_id, dummy_config = pod
    before = processes(hostnode, 'sh -c %s' % LOOP)
    dpu.check_output('systemctl restart containerd.service')
    assert wait(lambda: answers(runtime), 30)
    sandboxes = {p.id: p.state for p in runtime.ListPodSandbox(api.ListPodSandboxRequest()).items}
    containers = {c.id: c.state for c in runtime.ListContainers(api.ListContainersRequest()).containers}
    assert sandboxes.get(pod_id) == api.SANDBOX_READY and containers.get(container_id) == api.CONTAINER_RUNNING
    assert processes(hostnode, 'sh -c %s' % LOOP) == before
    reply = runtime.ExecSync(api.ExecSyncRequest(container_id=container_id, cmd=['echo', 'still managed'], timeout=20))
    assert reply.stdout == b'still managed\n'


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
