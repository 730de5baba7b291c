# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pod start-up through CRI on a lab DPU, the way kubelet starts a pod: used by bench_engine.py.

RunPodSandbox (host network, or a network of its own: CNI on the HOST for
offloaded pods, on the DPU for the local handler's) + CreateContainer +
StartContainer, timed until
StartContainer returns (the container is running then), with the published
CRI v1 stubs on the DPU's containerd socket, reached from the controller
through /proc/PID/root of the lab's DPU container. The pod is then stopped
and removed, untimed.
"""

import subprocess
import time

import grpc
from cri_api.v1 import api_pb2 as api
from cri_api.v1 import api_pb2_grpc as stubs

SOCKET = "/run/containerd/containerd.sock"


def runtime_of(dpu):
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", dpu], check=True, capture_output=True,
                         text=True).stdout.strip()
    return stubs.RuntimeServiceStub(grpc.insecure_channel("unix:///proc/%s/root%s" % (pid, SOCKET)))


def _config(name, attempt, network):
    return api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name=name, namespace="dpu-offload-bench", uid=name, attempt=attempt),
        linux=api.LinuxPodSandboxConfig(security_context=api.LinuxSandboxSecurityContext(
            namespace_options=api.NamespaceOption(network=network, pid=api.POD, ipc=api.POD))))


def start_pod(runtime, name, attempt, image, handler="", network=api.NODE):
    """Milliseconds from RunPodSandbox to a running container; the pod is removed afterwards."""
    config = _config(name, attempt, network)
    t0 = time.monotonic()
    pod = runtime.RunPodSandbox(api.RunPodSandboxRequest(config=config, runtime_handler=handler)).pod_sandbox_id
    try:
        container = runtime.CreateContainer(api.CreateContainerRequest(
            pod_sandbox_id=pod, sandbox_config=config,
            config=api.ContainerConfig(metadata=api.ContainerMetadata(name="sleep"), image=api.ImageSpec(image=image),
                                       command=["sleep", "3600"]))).container_id
        runtime.StartContainer(api.StartContainerRequest(container_id=container))
        elapsed = (time.monotonic() - t0) * 1000.0
    finally:
        runtime.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod))
        runtime.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod))
    return elapsed


def pod_starts(dpu, runs, image, handler="", own_network=False):
    """Milliseconds of each of `runs` pod start-ups (after one untimed warm-up); own_network: not the host's."""
    runtime = runtime_of(dpu)
    network = api.POD if own_network else api.NODE
    name = "bench-%s%s" % (handler or "offloaded", "-net" if own_network else "")
    start_pod(runtime, name, 0, image, handler, network)
    return [start_pod(runtime, name, attempt, image, handler, network) for attempt in range(1, runs + 1)]
