# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small helpers every rexec program uses: one-line messages on stderr, blocking writes, file-system node identity."""

import os
import stat


def write_all(fd, data):
    """Blocking write of all of data to fd."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def say(prefix, message):
    """One line on stderr, written with a single write() so lines do not interleave."""
    line = "%s: %s\n" % (prefix, message)
    try:
        write_all(2, line.encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def same_node(path, ident):
    """True while path is still the node identified by (st_dev, st_ino)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == ident


def fifo_ident(path):
    """(st_dev, st_ino) of the fifo at path (not following symlinks), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISFIFO(st.st_mode):
        return None
    return (st.st_dev, st.st_ino)
