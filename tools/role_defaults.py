# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles' defaults and vars for code that runs outside Ansible (the
lab's tests, the benchmarks), read from the roles' files instead of restated.

Only plain values and `{{ name }}` references to names of the same file are
read, in lists and mappings too; anything else Jinja would have to work out
is refused, not guessed.
"""

import os
import re
import types

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = re.compile(r'\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}')
OFFLOAD_COMMON_REXEC = 'roles/offload_common/defaults/main/rexec.yml'
OFFLOAD_COMMON_TRANSPORT = 'roles/offload_common/defaults/main/transport.yml'
REXEC_DEFAULTS = 'roles/rexec/defaults/main.yml'
STOCK_ENGINE_VARS = 'roles/stock_engine/vars/main.yml'
SHARED_MOUNTS = os.path.join(ROOT, 'roles', 'offload_common', 'defaults', 'main', 'shared_mounts.yml')


def value(relative, name):
    """The default `name` of the YAML file `relative` (to the checkout), its references resolved."""
    with open(os.path.join(ROOT, relative), encoding='utf-8') as handle:
        values = yaml.safe_load(handle)

    def resolve(key, seen):
        if key in seen:
            raise ValueError('%s: %s refers to itself' % (relative, key))
        if key not in values:
            raise KeyError('%s has no %s' % (relative, key))
        return plain(key, values[key], seen + (key,))

    def plain(key, found, seen):
        if isinstance(found, list):
            return [plain(key, item, seen) for item in found]
        if isinstance(found, dict):
            return {name: plain(key, item, seen) for name, item in found.items()}
        if not isinstance(found, str):
            return found
        text = REFERENCE.sub(lambda match: str(resolve(match.group(1), seen)), found)
        if '{{' in text or '{%' in text:
            raise ValueError('%s: %s is more than a plain value or reference: %r' % (relative, key, found))
        return text

    return resolve(name, ())


def rexec():
    """Where the rexec role puts the client, its environment file, its settings and its programs."""
    return types.SimpleNamespace(client=value(OFFLOAD_COMMON_REXEC, 'offload_common_rexec_client'),
                                 client_env=value(OFFLOAD_COMMON_REXEC, 'offload_common_rexec_client_env'),
                                 config_dir=value(OFFLOAD_COMMON_REXEC, 'offload_common_rexec_config_dir'),
                                 install_dir=value(REXEC_DEFAULTS, 'rexec_install_dir'))


def offload_root():
    """The DPU's offload root (the guide's /another_rootfs), where the HOST's directories are mounted."""
    return value(OFFLOAD_COMMON_TRANSPORT, 'offload_common_root')


def stock_sandbox_entrypoint():
    """What the stock mode's CRI sandbox (pause) process runs: its argv."""
    return value(STOCK_ENGINE_VARS, '__stock_engine_sandbox_entrypoint')


def shared_directories(listing=SHARED_MOUNTS):
    """The HOST directories the DPU mounts in its root, from the one list
    (offload_common_shared_mounts): every entry but the pseudo file systems."""
    with open(listing, encoding='utf-8') as handle:
        entries = yaml.safe_load(handle)['offload_common_shared_mounts']
    return [entry['path'] for entry in entries if not entry.get('pseudo')]
