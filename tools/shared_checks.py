"""Checks that the patched mode's two molecule scenarios (molecule/patched
over sshfs, molecule/qtfs over the real qtfs) make on their own pair."""
import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'plugins', 'module_utils'))
import mountinfo  # noqa: E402  pylint: disable=wrong-import-position


def mounts(machine):
    """A node's mount table (mountinfo.MountEntry), read on that node."""
    return mountinfo.parse_mountinfo(machine.file('/proc/self/mountinfo').content_string)


def file_both_ways(hostnode, dpu, root, directory):
    """A file the HOST writes in directory is read on the DPU under root, and
    one the DPU writes there is read on the HOST; both are removed after."""
    name = 'molecule-%s' % uuid.uuid4().hex[:8]
    try:
        hostnode.run_expect([0], 'echo from-host > %s/%s.host' % (directory, name))
        assert dpu.file('%s%s/%s.host' % (root, directory, name)).content_string == 'from-host\n'
        dpu.run_expect([0], 'echo from-dpu > %s%s/%s.dpu' % (root, directory, name))
        assert hostnode.file('%s/%s.dpu' % (directory, name)).content_string == 'from-dpu\n'
    finally:
        hostnode.run('rm -f %s/%s.host %s/%s.dpu' % (directory, name, directory, name))
