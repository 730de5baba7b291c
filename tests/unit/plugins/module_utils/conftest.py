# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.dpu.offload.tests.unit.plugins.module_utils.mount_samples import fixture_table


@pytest.fixture
def crafted():
    """The crafted table: an offload root with the HOST's /sys stacked over the DPU's sysfs."""
    return fixture_table('mountinfo_crafted.txt')
