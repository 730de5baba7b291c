"""The lab's inventory and settings: one source of truth, consistent pairs."""
import ipaddress
import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SETTINGS = yaml.safe_load((ROOT / 'lab/settings.yml').read_text())


def _inventory(name):
    return yaml.safe_load((ROOT / 'inventories' / name / 'hosts.yml').read_text())


def _hosts(inventory, group):
    return inventory.get(group, {}).get('hosts', {}) or {}


def test_lab_addresses_are_unique_and_inside_the_lab_subnet():
    inventory = _inventory('lab')
    subnet = ipaddress.ip_network(SETTINGS['lab_subnet'])
    nodes = {**_hosts(inventory, 'offload_hosts'), **_hosts(inventory, 'offload_dpus')}
    addresses = [ipaddress.ip_address(v['dpu_offload_address']) for v in nodes.values()]
    assert len(set(addresses)) == len(addresses)
    assert all(a in subnet for a in addresses)
    # .1 is the engine's gateway on the lab network.
    assert subnet.network_address + 1 not in addresses


def test_every_dpu_names_one_host_and_every_host_has_one_dpu():
    for name in ('lab', 'example'):
        inventory = _inventory(name)
        hosts = _hosts(inventory, 'offload_hosts')
        paired = [v['dpu_offload_host'] for v in _hosts(inventory, 'offload_dpus').values()]
        assert sorted(paired) == sorted(hosts), name


def test_capabilities_follow_the_rules_of_these_machines():
    caps = SETTINGS['lab_capabilities']
    assert len(caps) == len(set(caps))
    # The sandbox lacks SYS_RESOURCE; Docker 20.10 rejects the newer three.
    assert not {'SYS_RESOURCE', 'BPF', 'PERFMON', 'CHECKPOINT_RESTORE', 'ALL'} & set(caps)
    assert 'SYS_ADMIN' in caps


def test_molecule_keeps_no_copy_of_the_container_settings():
    for scenario in (ROOT / 'molecule').iterdir():
        text = (scenario / 'molecule.yml').read_text()
        for key in ('capabilities', 'security_opts', 'cgroupns', 'privileged', 'tmpfs'):
            assert key not in text, '%s: %s belongs in lab/settings.yml' % (scenario.name, key)
        create = (scenario / 'create.yml').read_text()
        # Each scenario brings up one of the two labs through that lab's own tool.
        labs = [tool for tool in ('lab/lab.yml', 'lab/vm/vmlab.py') if tool in create]
        assert len(labs) == 1, '%s: create.yml must use lab/lab.yml or lab/vm/vmlab.py' % scenario.name


def test_the_fleet_generator_reproduces_the_lab_for_one_pair():
    import importlib.util
    spec = importlib.util.spec_from_file_location('lab_inventory', ROOT / 'tools/lab_inventory.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The pairs (the lab's third container, lab_k8s, serves pair 1's kubelet only).
    assert module.inventory(1) == {group: hosts for group, hosts in _inventory('lab').items() if group != 'lab_k8s'}
    four = module.inventory(4)
    addresses = [v['dpu_offload_address'] for g in four.values() for v in g['hosts'].values()]
    assert len(addresses) == len(set(addresses)) == 8
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network(SETTINGS['lab_subnet']) for a in addresses)
    assert [v['dpu_offload_host'] for v in four['offload_dpus']['hosts'].values()] == list(four['offload_hosts']['hosts'])


def test_the_execution_environment_installs_this_collection():
    ee = yaml.safe_load((ROOT / 'execution-environment.yml').read_text())
    galaxy = yaml.safe_load((ROOT / 'galaxy.yml').read_text())
    tarball = 'dpu-offload-%s.tar.gz' % galaxy['version']
    assert ee['version'] == 3
    assert any(c['name'].endswith(tarball) for c in ee['dependencies']['galaxy']['collections'])
    assert any(f['src'].endswith(tarball) for f in ee['additional_build_files'])
