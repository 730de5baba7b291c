# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: the long-running rexec units of one node of a stock-mode pair."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

PLAN_KEYS = ('bundles', 'fifo_globs', 'relay_here')
TTRPC_UNIT = 'dpu-offload-stock-ttrpc.service'
SHIMS_UNIT = 'dpu-offload-stock-shims.service'
RELAY_UNIT = 'dpu-offload-stock-fiforelay.service'


def _count(name, value):
    # bool is an int to Python, never a byte or second count here.
    if isinstance(value, bool) or not str(value).isdigit():
        raise AnsibleFilterError('%s must be a whole number of 0 or more, got %r' % (name, value))
    return str(int(str(value)))


def _socket_path(name, value):
    if not isinstance(value, str) or not value.startswith('/'):
        raise AnsibleFilterError('%s must be an absolute path, got %r' % (name, value))
    return value


def _unit(name, description, argv, socket_allow='', unit_type='simple', before_engine=False):
    return {'name': name, 'description': description, 'type': unit_type, 'socket_allow': socket_allow,
            'argv': argv, 'before_engine': before_engine}


def stock_services(plan, is_host, ttrpc_socket, ttrpc_resume, shim_sockets, fifo_spool=0, relay=None):
    """Return the units (for relay.service.j2) that run on this node, its forwarder first.

    The HOST brings containerd's event socket over from the DPU; the DPU the
    HOST's shim sockets, following the bundles' address files, and is ready
    once every bundle's socket exists, so containerd (which reloads its shims
    through them at start) starts after it. The side that owns the fifos
    (plan.relay_here, or relay when given) relays them: the HOST reads the
    output fifos itself, through a spool of fifo_spool bytes per fifo; the
    DPU is the relay's client side.
    """
    if not isinstance(plan, dict) or not all(key in plan for key in PLAN_KEYS):
        raise AnsibleFilterError('stock_services takes the plan of dpu.offload.stock_shared (with %s), got %r'
                                 % (', '.join(PLAN_KEYS), plan))
    try:
        # -e offload_common_is_host=false arrives as a string.
        is_host = boolean(is_host, strict=True)
    except TypeError:
        raise AnsibleFilterError('is_host must be a boolean, got %r' % (is_host,)) from None
    resume = ['--resume-ttrpc', _count('ttrpc_resume', ttrpc_resume)]
    if is_host:
        socket = _socket_path('ttrpc_socket', ttrpc_socket)
        units = [_unit(TTRPC_UNIT, "containerd's event socket from the DPU (rexec_forward)",
                       ['rexec_forward', '--path', socket] + resume, socket_allow=socket)]
    else:
        units = [_unit(SHIMS_UNIT, "the HOST's shim sockets, following the bundles (rexec_forward)",
                       ['rexec_forward', '--watch-addresses', plan['bundles']] + resume,
                       socket_allow=_socket_path('shim_sockets', shim_sockets), unit_type='notify', before_engine=True)]
    if plan['relay_here'] if relay is None else relay:
        side = ['--side', 'host', '--spool=' + _count('fifo_spool', fifo_spool)] if is_host else ['--side', 'client']
        units.append(_unit(RELAY_UNIT, "the containers' stdio and log fifos, relayed with the peer (rexec_fiforelay)",
                           ['rexec_fiforelay'] + side + ['--watch=' + glob for glob in plan['fifo_globs']]))
    return units


class FilterModule:
    """The stock engine mode's relay units."""

    def filters(self):
        return {'stock_services': stock_services}
