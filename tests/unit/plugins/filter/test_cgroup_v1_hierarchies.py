# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.dpu.offload.plugins.filter.cgroup_v1_hierarchies import cgroup_v1_hierarchies

# /proc/cgroups of the lab machine (Linux 6.18, cgroup v1, cpu and cpuacct apart).
LAB = """#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t4\t1
cpu\t1\t4\t1
cpuacct\t2\t4\t1
blkio\t7\t4\t1
memory\t4\t71\t1
devices\t5\t22\t1
freezer\t6\t4\t1
net_cls\t10\t1\t1
perf_event\t11\t1\t1
net_prio\t10\t1\t1
hugetlb\t12\t1\t1
pids\t8\t22\t1
"""

# A typical systemd host: co-mounted cpu,cpuacct and net_cls,net_prio, rdma
# known but in no hierarchy, misc disabled.
SYSTEMD_HOST = """#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t6\t1\t1
cpu\t2\t90\t1
cpuacct\t2\t90\t1
blkio\t9\t90\t1
memory\t4\t120\t1
devices\t3\t90\t1
freezer\t8\t1\t1
net_cls\t5\t1\t1
perf_event\t7\t1\t1
net_prio\t5\t1\t1
pids\t10\t95\t1
rdma\t0\t1\t1
misc\t0\t1\t0
"""


def test_lab_sample_keeps_every_enabled_controller():
    result = cgroup_v1_hierarchies(LAB)
    assert result == ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids',
                      'net_cls,net_prio', 'perf_event', 'hugetlb']


def test_co_mounted_controllers_stay_together_and_loose_ones_come_last():
    result = cgroup_v1_hierarchies(SYSTEMD_HOST)
    assert 'cpu,cpuacct' in result and 'net_cls,net_prio' in result
    assert 'cpu' not in result
    assert result[-1] == 'rdma'
    assert 'misc' not in result


def test_exclude_drops_a_controller():
    assert 'hugetlb' not in cgroup_v1_hierarchies(LAB, exclude=['hugetlb'])


def test_garbage_is_refused():
    with pytest.raises(AnsibleFilterError, match='not a /proc/cgroups line'):
        cgroup_v1_hierarchies('cpu one two\n')
    with pytest.raises(AnsibleFilterError, match='expects the text'):
        cgroup_v1_hierarchies(None)
