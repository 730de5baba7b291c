# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make the collection importable as ansible_collections.dpu.offload when the
tests run under plain pytest from a checkout (ansible-test units already
provides that layout)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import sys
import tempfile


def _ensure_collection_importable():
    try:
        import ansible_collections.dpu.offload.plugins  # noqa: F401 pylint: disable=unused-import
        return
    except ImportError:
        pass
    checkout = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
    base = os.path.join(tempfile.gettempdir(), 'dpu-offload-pytest-%d' % os.getuid())
    ns_dir = os.path.join(base, 'ansible_collections', 'dpu')
    link = os.path.join(ns_dir, 'offload')
    if not os.path.isdir(ns_dir):
        os.makedirs(ns_dir)
    if os.path.islink(link) and os.readlink(link) != checkout:
        os.unlink(link)
    if not os.path.lexists(link):
        os.symlink(checkout, link)
    sys.path.insert(0, base)


_ensure_collection_importable()
