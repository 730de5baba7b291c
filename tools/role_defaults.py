# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles' defaults for code that runs outside Ansible (the lab's tests,
the benchmarks), read from the defaults files instead of restated.

Only plain values and `{{ name }}` references to names of the same file are
read; anything else Jinja would have to work out is refused, not guessed.
"""

import os
import re
import types

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = re.compile(r'\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}')
OFFLOAD_COMMON_REXEC = 'roles/offload_common/defaults/main/rexec.yml'
REXEC_DEFAULTS = 'roles/rexec/defaults/main.yml'


def value(relative, name):
    """The default `name` of the YAML file `relative` (to the checkout), its references resolved."""
    with open(os.path.join(ROOT, relative), encoding='utf-8') as handle:
        values = yaml.safe_load(handle)

    def resolve(key, seen):
        if key in seen:
            raise ValueError('%s: %s refers to itself' % (relative, key))
        if key not in values:
            raise KeyError('%s has no %s' % (relative, key))
        found = values[key]
        if not isinstance(found, str):
            return found
        found = REFERENCE.sub(lambda match: str(resolve(match.group(1), seen + (key,))), found)
        if '{{' in found or '{%' in found:
            raise ValueError('%s: %s is more than a plain value or reference: %r' % (relative, key, values[key]))
        return found

    return resolve(name, ())


def rexec():
    """Where the rexec role puts the client, its environment file, its settings and its programs."""
    return types.SimpleNamespace(client=value(OFFLOAD_COMMON_REXEC, 'offload_common_rexec_client'),
                                 client_env=value(OFFLOAD_COMMON_REXEC, 'offload_common_rexec_client_env'),
                                 config_dir=value(OFFLOAD_COMMON_REXEC, 'offload_common_rexec_config_dir'),
                                 install_dir=value(REXEC_DEFAULTS, 'rexec_install_dir'))
