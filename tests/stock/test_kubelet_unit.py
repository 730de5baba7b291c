"""The optional kubelet unit of the stock mode, rendered by Ansible from the
role's template (no kubelet is packaged for the lab, so it never runs here)."""
import configparser
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'render'))
from render_lib import render_template  # noqa: E402  pylint: disable=wrong-import-position

DEFAULTS = yaml.safe_load((ROOT / 'roles/stock_engine/defaults/main.yml').read_text())


def render(tmp_path, **extra):
    variables = dict({'stock_engine_kubelet_binary': DEFAULTS['stock_engine_kubelet_binary'],
                      'stock_engine_kubelet_args': DEFAULTS['stock_engine_kubelet_args'],
                      'stock_engine_containerd_address': DEFAULTS['stock_engine_containerd_address'],
                      '__stock_engine_kubelet_cwd': '/var/lib/dpu-offload/stock-engine/kubelet-cwd'}, **extra)
    out = render_template(ROOT / 'roles/stock_engine/templates/kubelet.service.j2', tmp_path / 'kubelet.service', variables)
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string(out.read_text())
    return unit


def test_kubelet_speaks_cri_to_the_dpus_containerd(tmp_path):
    unit = render(tmp_path)
    exec_start = unit['Service']['ExecStart'].split()
    assert exec_start[0] == '/usr/bin/kubelet'
    assert exec_start[1] == \
        '--container-runtime-endpoint=unix://' + DEFAULTS['stock_engine_containerd_address']
    assert exec_start[2:] == DEFAULTS['stock_engine_kubelet_args']
    assert 'containerd.service' in unit['Unit']['Requires']


def test_arguments_are_quoted_for_systemd(tmp_path):
    unit = render(tmp_path, stock_engine_kubelet_args=['--node-labels=a=b c'])
    assert unit['Service']['ExecStart'].endswith("'--node-labels=a=b c'")


def test_kubelet_runs_in_an_empty_directory_of_its_own(tmp_path):
    # kubelet's container GC globs a missing log path relative to its working directory and removes the matches.
    assert render(tmp_path)['Service']['WorkingDirectory'] == '/var/lib/dpu-offload/stock-engine/kubelet-cwd'
