"""CRI from the controller, as kubelet calls it: the published CRI v1 stubs (cri_api) on the DPU's
containerd socket, reached inside the lab's DPU container through /proc/PID/root."""
import os
import subprocess

import grpc
from cri_api.v1 import api_pb2 as api
from cri_api.v1 import api_pb2_grpc as stubs

SANDBOX_IMAGE = 'localhost/dpu-offload/pause:1'
IMAGE = 'localhost/dpu-offload/busybox:latest'
LOG_DIR = '/var/log/dpu-offload-cri-test'


def socket_url():
    name = os.environ.get('LAB_DPU', 'lab-dpu')
    pid = subprocess.run(['docker', 'inspect', '-f', '{{.State.Pid}}', name], check=True,
                         capture_output=True, text=True).stdout.strip()
    return 'unix:///proc/%s/root/run/containerd/containerd.sock' % pid


def connect():
    """(channel, runtime stub, image stub)."""
    channel = grpc.insecure_channel(socket_url())
    return channel, stubs.RuntimeServiceStub(channel), stubs.ImageServiceStub(channel)


def pod_config(name, network=api.NODE, **extra):
    return api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name=name, namespace='dpu-offload-test', uid=name + '-uid', attempt=0),
        # A pod in the HOST's network has the HOST's UTS namespace too, whose name runc does not set.
        hostname='' if network == api.NODE else name, log_directory=LOG_DIR + '/' + name,
        linux=api.LinuxPodSandboxConfig(security_context=api.LinuxSandboxSecurityContext(
            namespace_options=api.NamespaceOption(network=network, pid=api.POD, ipc=api.POD))), **extra)


def start_container(runtime, pod_id, config, name, command, image=IMAGE):
    container_id = runtime.CreateContainer(api.CreateContainerRequest(
        pod_sandbox_id=pod_id, sandbox_config=config,
        config=api.ContainerConfig(metadata=api.ContainerMetadata(name=name), image=api.ImageSpec(image=image),
                                   command=command, log_path=name + '.log'))).container_id
    runtime.StartContainer(api.StartContainerRequest(container_id=container_id))
    return container_id


def remove_pod(runtime, pod_id):
    """Stop and remove a pod and its containers, whatever state it is in."""
    for call in (lambda: runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod_id)),
                 lambda: runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod_id))):
        try:
            call()
        except grpc.RpcError:
            pass


def answers(runtime):
    try:
        runtime.Version(api.VersionRequest(), timeout=2)
        return True
    except grpc.RpcError:
        return False


def main(argv):
    """`cri_client.py run-pod NAME`: a pod with a network of its own, for playbooks (molecule's cleanup)."""
    if len(argv) != 2 or argv[0] != 'run-pod':
        raise SystemExit('usage: cri_client.py run-pod NAME')
    channel, runtime, dummy = connect()
    config = pod_config(argv[1], network=api.POD)
    print(runtime.RunPodSandbox(api.RunPodSandboxRequest(config=config)).pod_sandbox_id)
    channel.close()


if __name__ == '__main__':
    import sys
    main(sys.argv[1:])
