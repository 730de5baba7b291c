# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Samples the mount step tests share: the recorded tables and a shortcut
for MountSpecs."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.dpu.offload.plugins.module_utils.mountinfo import MountTable
from ansible_collections.dpu.offload.plugins.module_utils.mount_spec import normalize_specs

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
ALL_FS = set(['qtfs', 'proc', 'sysfs', 'tmpfs', 'cgroup', 'fuse', 'devtmpfs'])


def fixture_table(name):
    return MountTable.from_file(os.path.join(FIXTURES, name))


def specs(*items, **kw):
    return normalize_specs(list(items), **kw)
