# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two programs that run the rexec client in their own process (the stock mode's offload shim, the DPU's
CNI relay) find it in the package beside the rexec program, as the rexec role installs them."""

import importlib
import os
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAUNCHER = os.path.join(ROOT, "roles", "rexec", "files", "rexec", "rexec")


@pytest.mark.parametrize("role, module", [("stock_engine", "offload_shim"), ("offload_network", "cni_dpu")])
def test_the_client_is_loaded_from_the_package_beside_the_rexec_program(tmp_path, monkeypatch, capfd, role, module):
    # Nothing of the package loaded or findable yet (the other tests import it from the same directory).
    here = os.path.dirname(LAUNCHER)
    monkeypatch.setattr(sys, "path", [os.path.join(ROOT, "roles", role, "files")]
                        + [entry for entry in sys.path if os.path.abspath(entry) != here])
    for name in [name for name in sys.modules if name.split(".")[0] == "dpu_offload_rexec"]:
        monkeypatch.delitem(sys.modules, name)
    user = importlib.import_module(module)
    # As on a node: the link in /usr/local/bin points into the rexec role's install directory.
    link = tmp_path / "rexec"
    link.symlink_to(LAUNCHER)
    client_run = user.load_client(str(link))
    assert client_run.__module__ == "dpu_offload_rexec.client"
    assert os.path.dirname(client_run.__code__.co_filename) == os.path.join(here, "dpu_offload_rexec")
    monkeypatch.setenv("CMD_NET_ADDR", "unix://%s" % (tmp_path / "no-server.sock"))
    assert client_run(["/usr/bin/true"]) == 255
    assert "rexec: cannot connect to unix://" in capfd.readouterr().err
