# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.stock_services import stock_services
from ansible_collections.dpu.offload.plugins.filter.stock_shared import stock_shared

# stock_engine_shared as the role's defaults give it, with docker and CRI.
FRESH = 'dir_cache=no,entry_timeout=0'
SHARED = [
    {'path': '/var/lib/containerd/io.containerd.snapshotter.v1.native', 'mode': '0700', 'sshfs_opts': 'auto_cache'},
    {'path': '/run/containerd/io.containerd.runtime.v2.task', 'mode': '0711', 'fifos': '*/*', 'bundles': True,
     'sshfs_opts': FRESH},
    {'path': '/run/containerd/fifo', 'mode': '0700', 'fifos': '*', 'sshfs_opts': FRESH},
    {'path': '/var/lib/docker/vfs', 'mode': '0710', 'engine': 'docker', 'sshfs_opts': 'auto_cache'},
    {'path': '/var/lib/docker/containers', 'mode': '0710', 'engine': 'docker', 'readonly': True},
    {'path': '/run/docker/containerd', 'mode': '0700', 'fifos': '*', 'engine': 'docker', 'sshfs_opts': FRESH},
    {'path': '/run/containerd/io.containerd.grpc.v1.cri/containers', 'mode': '0700', 'fifos': '*/io/*', 'engine': 'cri',
     'sshfs_opts': FRESH},
]
ENGINES = ['docker', 'cri']
TTRPC = '/run/containerd/containerd.sock.ttrpc'
WATCH = ['--watch=/run/containerd/io.containerd.runtime.v2.task/*/*', '--watch=/run/containerd/fifo/*',
         '--watch=/run/docker/containerd/*', '--watch=/run/containerd/io.containerd.grpc.v1.cri/containers/*/io/*']


def services(transport, is_host, **extra):
    plan = stock_shared(SHARED, transport, is_host, ENGINES, persist_root='/var/lib/dpu-offload/stock-engine-runtime')
    settings = dict(ttrpc_socket=TTRPC, ttrpc_resume=120, shim_sockets='/run/containerd/s', fifo_spool=1048576)
    settings.update(extra)
    return stock_services(plan, is_host, **settings)


def test_sshfs_the_dpu_forwards_the_shims_and_relays_the_fifos_it_owns():
    dpu = services('sshfs', False)
    assert dpu == [
        {'name': 'dpu-offload-stock-shims.service',
         'description': "the HOST's shim sockets, following the bundles (rexec_forward)",
         'type': 'notify', 'socket_allow': '/run/containerd/s', 'before_engine': True,
         'argv': ['rexec_forward', '--watch-addresses', '/run/containerd/io.containerd.runtime.v2.task',
                  '--resume-ttrpc', '120']},
        {'name': 'dpu-offload-stock-fiforelay.service',
         'description': "the containers' stdio and log fifos, relayed with the peer (rexec_fiforelay)",
         'type': 'simple', 'socket_allow': '', 'before_engine': False,
         # The DPU is the relay's client: the HOST's server reads the output fifos, through its own spool.
         'argv': ['rexec_fiforelay', '--side', 'client'] + WATCH},
    ]
    host = services('sshfs', True)
    assert host == [
        {'name': 'dpu-offload-stock-ttrpc.service', 'description': "containerd's event socket from the DPU (rexec_forward)",
         'type': 'simple', 'socket_allow': TTRPC, 'before_engine': False,
         'argv': ['rexec_forward', '--path', TTRPC, '--resume-ttrpc', '120']},
    ]


def test_qtfs_the_host_relays_with_its_spool():
    host = services('qtfs', True, fifo_spool=0)
    assert [unit['name'] for unit in host] == ['dpu-offload-stock-ttrpc.service', 'dpu-offload-stock-fiforelay.service']
    assert host[1]['argv'] == ['rexec_fiforelay', '--side', 'host', '--spool=0'] + WATCH
    assert [unit['name'] for unit in services('qtfs', False)] == ['dpu-offload-stock-shims.service']


def test_only_the_shims_forwarder_comes_before_the_engine():
    units = services('sshfs', False) + services('sshfs', True)
    assert [unit['name'] for unit in units if unit['before_engine']] == ['dpu-offload-stock-shims.service']


def test_relay_overrides_the_plan_and_without_fifos_there_is_nothing_to_relay():
    assert len(services('sshfs', True, relay=True)) == 2
    assert len(services('sshfs', False, relay=False)) == 1
    plan = stock_shared([SHARED[1]], 'sshfs', False, [])
    assert plan['fifo_globs'] == ['/run/containerd/io.containerd.runtime.v2.task/*/*']
    no_fifos = dict(plan, fifo_globs=[], relay_here=False)
    assert [u['name'] for u in stock_services(no_fifos, False, TTRPC, 120, '/run/containerd/s')] == [
        'dpu-offload-stock-shims.service']


def test_is_host_as_ansible_passes_it_from_the_command_line():
    plan = stock_shared(SHARED, 'sshfs', False, ENGINES)
    assert stock_services(plan, 'false', TTRPC, 120, '/run/containerd/s') == \
        stock_services(plan, False, TTRPC, 120, '/run/containerd/s')
    with pytest.raises(AnsibleFilterError, match='is_host must be a boolean'):
        stock_services(plan, 'maybe', TTRPC, 120, '/run/containerd/s')


@pytest.mark.parametrize('extra, message', [
    ({'ttrpc_resume': -1}, 'ttrpc_resume must be a whole number'),
    ({'ttrpc_resume': True}, 'ttrpc_resume must be a whole number'),
    ({'fifo_spool': '1M'}, 'fifo_spool must be a whole number'),
    ({'ttrpc_socket': 'containerd.sock.ttrpc'}, 'ttrpc_socket must be an absolute path'),
])
def test_bad_host_settings_are_refused_with_a_reason(extra, message):
    with pytest.raises(AnsibleFilterError, match=message):
        services('qtfs', True, **extra)


def test_the_dpu_needs_an_absolute_shim_directory_and_a_plan():
    with pytest.raises(AnsibleFilterError, match='shim_sockets must be an absolute path'):
        services('sshfs', False, shim_sockets='')
    with pytest.raises(AnsibleFilterError, match='plan of dpu.offload.stock_shared'):
        stock_services({'bundles': '/run/b'}, False, TTRPC, 120, '/run/containerd/s')
