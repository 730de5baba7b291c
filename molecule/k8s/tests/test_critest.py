"""critest's table from side_effect (lab/k8s/critest.yml): every spec that passes on the local runtime handler
passes offloaded, except the ones explained in the README (the reason each cannot hold)."""
import json
import os

from conftest import BUILD

# Each spec that passes locally and not offloaded, and why (README, "critest").
EXPLAINED = {
    'port mapping with host port and container port': 'critest dials 127.0.0.1:hostPort where it runs (the DPU); the port is published on the HOST',
    'HostNetwork is true': "critest checks the host network's port from the DPU; the pod is in the HOST's network",
    'portforward in host network': "containerd dials localhost in its own namespace (the DPU's), not the HOST's",
    'starting container with volume': 'critest makes the host path on the DPU; the container binds the HOST path',
    'non-recursive readonly mounts': 'critest makes the host path on the DPU; the container binds the HOST path',
    'should allow privilege escalation when false': 'the image root file system is an sshfs mount, which is nosuid',
}


def test_every_spec_that_passes_locally_passes_offloaded_or_is_explained():
    with open(os.path.join(BUILD, 'critest', 'table.json'), encoding='utf-8') as handle:
        table = json.load(handle)
    rows = {row['handler']: row for row in table['rows']}
    assert rows['local']['passed'] > 0 and rows['offloaded']['passed'] > 0
    unexplained = [spec for spec in table['regressions'] if not any(key in spec for key in EXPLAINED)]
    assert unexplained == [], unexplained
