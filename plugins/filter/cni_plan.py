# -*- coding: utf-8 -*-
# Copyright: dpu.offload contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: what a pod network configuration asks of each side of the pair."""

from __future__ import annotations

import ipaddress
import re

from ansible.errors import AnsibleFilterError

PLUGIN = re.compile(r'^[a-z0-9][a-z0-9_.-]{0,63}$')
# containerd's CRI always runs CNI's loopback plugin beside the pod network.
LOOPBACK = 'loopback'
VAR = 'offload_network_cni_config'


def _fail(message):
    raise AnsibleFilterError('%s: %s' % (VAR, message))


def _plugin_type(plugin, where):
    kind = plugin.get('type') if isinstance(plugin, dict) else None
    if not isinstance(kind, str) or not PLUGIN.match(kind):
        _fail('%s needs a "type" that is a plain plugin name (letters, digits, "_.-"), got %r' % (where, kind))
    return kind


def _ipam_subnets(ipam, where):
    """The subnets an IPAM section names (host-local's ranges, or a legacy subnet)."""
    subnets = []
    ranges = ipam.get('ranges') or []
    if not isinstance(ranges, list):
        _fail('%s ipam "ranges" must be a list of range sets' % where)
    for range_set in ranges:
        for item in range_set if isinstance(range_set, list) else [range_set]:
            if isinstance(item, dict) and item.get('subnet'):
                subnets.append(item['subnet'])
    if ipam.get('subnet'):
        subnets.append(ipam['subnet'])
    plan = []
    for subnet in subnets:
        try:
            plan.append(str(ipaddress.ip_network(str(subnet), strict=False)))
        except ValueError:
            _fail('%s ipam subnet %r is not a network like 10.88.0.0/16' % (where, subnet))
    return plan


def cni_plan(config, subnets=None):
    """Return the plan of a CNI network configuration list (a dict, as in a .conflist file):
    name, plugins (the names the DPU's containerd runs), host_plugins (the binaries the HOST needs,
    IPAM and loopback included), subnets (the pods' addresses; the given list wins) and bridges
    (what the bridge plugin makes on the HOST, which no CNI DEL removes)."""
    if not isinstance(config, dict):
        _fail('must be a network configuration list (a mapping with cniVersion, name, plugins), got %r'
              % type(config).__name__)
    name = config.get('name')
    if not isinstance(name, str) or not name:
        _fail('needs a "name"')
    if not isinstance(config.get('cniVersion'), str):
        _fail('needs a "cniVersion" string, e.g. "1.0.0"')
    plugins = config.get('plugins')
    if not isinstance(plugins, list) or not plugins:
        _fail('needs a non-empty "plugins" list (a .conflist; put a single plugin in a list of one)')
    types, host, found, bridges = [], [], [], []
    for index, plugin in enumerate(plugins):
        where = 'plugins[%d]' % index
        kind = _plugin_type(plugin, where)
        types.append(kind)
        host.append(kind)
        if kind == 'bridge':
            # The reference bridge plugin's default name.
            bridges.append(str(plugin.get('bridge') or 'cni0'))
        ipam = plugin.get('ipam')
        if isinstance(ipam, dict) and ipam:
            host.append(_plugin_type(ipam, where + ' ipam'))
            found += _ipam_subnets(ipam, where)
    if subnets is None or subnets == []:
        subnets = found
    else:
        if isinstance(subnets, str) or not isinstance(subnets, list):
            _fail('the pod subnets must be a list like ["10.88.0.0/16"], got %r' % (subnets,))
        try:
            subnets = [str(ipaddress.ip_network(str(s), strict=False)) for s in subnets]
        except ValueError as exc:
            _fail('a pod subnet is not a network: %s' % exc)

    def unique(names):
        return sorted(set(names))
    return {'name': name, 'plugins': unique(types + [LOOPBACK]), 'host_plugins': unique(host + [LOOPBACK]),
            'subnets': list(dict.fromkeys(subnets)), 'bridges': unique(bridges)}


def cni_local(config, prefix='local-'):
    """A configuration for pods that stay on the DPU, beside relayed ones in one CNI bin directory:
    every plugin and IPAM type renamed PREFIX+type, and the links (name -> the real plugin) that make
    those names run the DPU's own plugins."""
    plan = cni_plan(config)
    if not PLUGIN.match(str(prefix) + 'x'):
        raise AnsibleFilterError('cni_local: %r is not a plugin name prefix' % (prefix,))
    renamed = dict(config)
    renamed['plugins'] = []
    for plugin in config['plugins']:
        plugin = dict(plugin, type=prefix + plugin['type'])
        if isinstance(plugin.get('ipam'), dict) and plugin['ipam']:
            plugin['ipam'] = dict(plugin['ipam'], type=prefix + plugin['ipam']['type'])
        renamed['plugins'].append(plugin)
    links = [{'name': prefix + name, 'target': name} for name in plan['host_plugins'] if name != LOOPBACK]
    return {'config': renamed, 'links': links, 'subnets': plan['subnets']}


def cni_links(plugins, bin_dir, relay, present=None, local=None, local_dir='/usr/lib/cni'):
    """dpu.offload.file_set entries for the DPU's CNI bin directory: a link to relay per plugin name,
    and the removal of any other entry listed in present (names of a configuration before).
    local: links of cni_local (name -> the plugin of that name in local_dir), kept beside them."""
    bin_dir = str(bin_dir).rstrip('/')
    if not bin_dir.startswith('/'):
        raise AnsibleFilterError('cni_links needs an absolute directory, got %r' % (bin_dir,))
    for name in list(plugins or []) + list(present or []):
        if not isinstance(name, str) or not PLUGIN.match(name):
            raise AnsibleFilterError('cni_links: %r is not a plugin name' % (name,))
    local = local or []
    for link in local:
        for name in (link.get('name'), link.get('target')):
            if not isinstance(name, str) or not PLUGIN.match(name):
                raise AnsibleFilterError('cni_links: %r is not a plugin name' % (name,))
    entries = [{'path': '%s/%s' % (bin_dir, name), 'src': relay} for name in plugins or []]
    entries += [{'path': '%s/%s' % (bin_dir, link['name']), 'src': '%s/%s' % (str(local_dir).rstrip('/'), link['target'])}
                for link in local]
    wanted = set(plugins or []) | set(link['name'] for link in local)
    entries += [{'path': '%s/%s' % (bin_dir, name), 'state': 'absent'}
                for name in sorted(set(present or []) - wanted)]
    return entries


class FilterModule:
    """The pod network plan."""

    def filters(self):
        return {'cni_plan': cni_plan, 'cni_links': cni_links, 'cni_local': cni_local}
