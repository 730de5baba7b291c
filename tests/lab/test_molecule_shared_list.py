"""The molecule scenarios' tests (tools/role_defaults) read the shared directories from offload_common_shared_mounts, not from a copy."""

import importlib.util
import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONFTEST = _load('role_defaults', 'tools/role_defaults.py')
FILTER = _load('shared_directories_filter', 'plugins/filter/shared_directories.py')


def test_the_helper_reads_the_roles_list():
    listing = yaml.safe_load((ROOT / 'roles/offload_common/defaults/main/shared_mounts.yml').read_text())
    entries = listing['offload_common_shared_mounts']
    found = CONFTEST.shared_directories()
    # The directories the HOST creates and the DPU mounts, in mount order; not /proc or /sys.
    assert found == [e['path'] for e in FILTER.shared_directories(entries)]
    assert '/proc' not in found and '/sys' not in found
    assert found[0] == '/var/lib/docker/containers' and '/var/lib/kubelet/pods' in found


def test_the_helper_follows_a_changed_list(tmp_path):
    listing = tmp_path / 'shared_mounts.yml'
    listing.write_text(yaml.safe_dump({'offload_common_shared_mounts': [
        {'path': '/proc', 'pseudo': True, 'opts': 'proc'},
        {'path': '/srv/state', 'mode': '0700'},
        {'path': '/sys', 'pseudo': True},
        {'path': '/run/engine', 'mode': '0711', 'readonly': True},
    ]}))
    assert CONFTEST.shared_directories(str(listing)) == ['/srv/state', '/run/engine']
