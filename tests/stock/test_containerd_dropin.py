"""The DPU's containerd drop-in of the stock mode, rendered by Ansible from
the role's template and vars: containerd starts after the units it needs
(the shims' forwarder), not after the fifo relay."""
import configparser
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'render'))
from render_lib import render_template  # noqa: E402  pylint: disable=wrong-import-position

SHARED = [{'path': '/run/containerd/io.containerd.runtime.v2.task', 'mode': '0711', 'fifos': '*/*', 'bundles': True},
          {'path': '/run/containerd/fifo', 'mode': '0700', 'fifos': '*'}]


def test_containerd_waits_for_the_shims_forwarder_only(tmp_path):
    # Under sshfs the DPU owns the fifos, so it runs the relay too (tests/unit: test_stock_services).
    services = ("{{ SHARED | dpu.offload.stock_shared('sshfs', false, [])"
                " | dpu.offload.stock_services(false, '/run/containerd/containerd.sock.ttrpc', 120, '/run/containerd/s') }}")
    variables = {'SHARED': SHARED, '__stock_engine_services_here': services,
                 '__stock_engine_containerd_config': '/etc/dpu-offload/stock-engine/containerd.toml'}
    path = render_template(ROOT / 'roles/stock_engine/templates/containerd-dropin.conf.j2', tmp_path / 'dropin.conf', variables)
    dropin = configparser.ConfigParser(interpolation=None, strict=False)
    dropin.read_string(path.read_text())
    assert dropin['Unit']['After'].split() == ['rexec.service', 'dpu-offload-stock-shims.service']
    assert dropin['Unit']['Wants'].split() == ['dpu-offload-stock-shims.service']
    assert dropin['Service']['ExecStart'].splitlines()[-1] == \
        '/usr/bin/containerd --config /etc/dpu-offload/stock-engine/containerd.toml'
