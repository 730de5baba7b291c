"""Boot persistence: the unit that mounts the offload root again, run as at boot.

Runs last (file order): it unmounts and remounts the root under the engine."""
from conftest import ROOT, shared_checks


def _root_mounts(dpu):
    points = [entry.mountpoint for entry in shared_checks.mounts(dpu)]
    return [p for p in points if p == ROOT or p.startswith(ROOT + '/')]


def test_the_boot_unit_rebuilds_the_same_root(hostnode, dpu):
    before = _root_mounts(dpu)
    assert dpu.service('dpu-offload-rootfs.service').is_enabled
    dpu.run_expect([0], 'systemctl stop dpu-offload-dockerd.service dpu-offload-containerd.service')
    try:
        dpu.run_expect([0], 'umount -R %s' % ROOT)
        assert _root_mounts(dpu) == []
        dpu.run_expect([0], 'systemctl restart dpu-offload-rootfs.service')
        assert _root_mounts(dpu) == before
        hostnode.run_expect([0], 'echo boot > /var/lib/docker/tmp/molecule-boot')
        assert dpu.file(ROOT + '/var/lib/docker/tmp/molecule-boot').content_string == 'boot\n'
    finally:
        hostnode.run('rm -f /var/lib/docker/tmp/molecule-boot')
        dpu.run('systemctl start dpu-offload-containerd.service dpu-offload-dockerd.service')
    assert dpu.service('dpu-offload-dockerd.service').is_running
