"""tools/role_defaults.py: the roles' defaults for the lab's tests and the
benchmarks, read from the files, with references resolved and Jinja refused."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location('role_defaults', ROOT / 'tools/role_defaults.py')
role_defaults = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(role_defaults)


@pytest.fixture
def defaults_file(tmp_path, monkeypatch):
    monkeypatch.setattr(role_defaults, 'ROOT', str(tmp_path))

    def write(text):
        (tmp_path / 'defaults.yml').write_text(text)
        return 'defaults.yml'
    return write


def test_references_to_the_files_own_names_are_resolved(defaults_file):
    name = defaults_file('---\nx_dir: /etc/x\nx_file: "{{ x_dir }}/x.env"\nx_deeper: "{{x_file}}.bak"\nx_port: 7\n')
    assert role_defaults.value(name, 'x_file') == '/etc/x/x.env'
    assert role_defaults.value(name, 'x_deeper') == '/etc/x/x.env.bak'
    assert role_defaults.value(name, 'x_port') == 7


def test_lists_and_mappings_are_read_item_by_item(defaults_file):
    name = defaults_file('---\nx_dir: /etc/x\nx_argv: [/bin/sh, -c, "ls {{ x_dir }}"]\nx_map: {conf: "{{ x_dir }}/c", n: 2}\n')
    assert role_defaults.value(name, 'x_argv') == ['/bin/sh', '-c', 'ls /etc/x']
    assert role_defaults.value(name, 'x_map') == {'conf': '/etc/x/c', 'n': 2}


@pytest.mark.parametrize('text, error', [
    ('x: "{{ y | default(1) }}"\ny: 2\n', ValueError),
    ('x: [a, "{{ y | upper }}"]\ny: b\n', ValueError),
    ('x: {k: ["{{ x }}"]}\n', ValueError),
    ('x: "{{ other_roles_var }}"\n', KeyError),
    ('x: "{{ y }}"\ny: "{{ x }}"\n', ValueError),
])
def test_anything_jinja_would_work_out_is_refused(defaults_file, text, error):
    name = defaults_file('---\n' + text)
    with pytest.raises(error):
        role_defaults.value(name, 'x')


def test_the_rexec_client_is_where_the_roles_put_it():
    rexec = role_defaults.rexec()
    assert (rexec.client, rexec.client_env) == ('/usr/local/bin/rexec', '/etc/rexec/client.env')
    assert (rexec.config_dir, rexec.install_dir) == ('/etc/rexec', '/usr/local/lib/dpu-offload/rexec')


def test_the_offload_root_is_the_guides():
    assert role_defaults.offload_root() == '/another_rootfs'


def test_the_sandbox_entrypoint_is_the_stock_engine_roles():
    # A shell that holds the pod's namespaces and ends on SIGTERM or SIGINT.
    argv = role_defaults.stock_sandbox_entrypoint()
    assert argv[:2] == ['/bin/sh', '-c'] and len(argv) == 3
    assert "trap 'exit 0' TERM INT" in argv[2]
