"""Renders of tests/render/qtfs.yml, made once per session and shared by the
render tests: the qtfs pair of tests/render/inventory.yml over vsock and over
TCP, and the lab's pair (inventories/lab, sshfs)."""
import pytest

from render_lib import HERE, ROOT, render


def _render(out_dir, inventory, *extra):
    render('qtfs.yml', out_dir, *extra, inventory=inventory)
    return out_dir


@pytest.fixture(scope='session')
def vsock(tmp_path_factory):
    out = _render(tmp_path_factory.mktemp('vsock'), HERE / 'inventory.yml')
    return out / 'render-host', out / 'render-dpu'


@pytest.fixture(scope='session')
def tcp(tmp_path_factory):
    out = _render(tmp_path_factory.mktemp('tcp'), HERE / 'inventory.yml', '-e', 'offload_common_qtfs_connection=tcp',
                  '-e', '{"qtfs_server_whitelist_extra": {"Udsconnect": ["/run/containerd"]}}')
    return out / 'render-host', out / 'render-dpu'


@pytest.fixture(scope='session')
def lab(tmp_path_factory):
    out = _render(tmp_path_factory.mktemp('lab'), ROOT / 'inventories/lab')
    return out / 'lab-host', out / 'lab-dpu'
