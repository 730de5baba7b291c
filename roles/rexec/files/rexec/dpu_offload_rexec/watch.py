# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prompt directory scans for rexec_fiforelay and rexec_forward: inotify wake-ups, with polling as the fallback.

Python 3.9+ standard library only (inotify through ctypes).
"""

import glob
import os
import select


# Watches one scanner adds at most: the directories are the peer's to make (issue 31, point 4), and
# inotify watches are counted per user, shared with every other root daemon of the machine.
MAX_WATCHES = 4096


def glob_no_links(pattern):
    """glob(pattern), without a path that goes through a symbolic link below the pattern's fixed prefix: the
    peer may write these directories, and a link it plants would lead a root scanner anywhere."""
    parts = pattern.rstrip("/").split("/")
    start = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    matches = glob.glob(pattern) if glob.has_magic(pattern) else [pattern]
    return [path for path in matches
            if not any(os.path.islink("/".join(path.split("/")[:end])) for end in range(start + 1, len(parts) + 1))]


class Inotify:
    """Wakes a scan loop as soon as something is created or written in a watched directory (Linux inotify).

    Scans stay the source of truth; inotify only makes them prompt (a fifo's
    relay in place before its writer has finished, a shim's socket forwarded
    before containerd dials it).  Where inotify
    is missing (another OS, a network file system) the loop falls back to
    scanning every --interval seconds.
    """

    IN_CLOSE_WRITE, IN_CREATE, IN_MOVED_TO = 0x08, 0x100, 0x80
    IN_ONLYDIR, IN_NONBLOCK, IN_CLOEXEC = 0x01000000, 0o4000, 0o2000000

    def __init__(self):
        self.fd = None
        self.watched = set()
        try:
            import ctypes  # pylint: disable=import-outside-toplevel
            libc = ctypes.CDLL(None, use_errno=True)
            self._add = libc.inotify_add_watch
            self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
            fd = libc.inotify_init1(self.IN_NONBLOCK | self.IN_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd >= 0:
            self.fd = fd

    def watch(self, directories):
        """Add watches for new directories; returns how many were added."""
        if self.fd is None:
            return 0
        added = 0
        for directory in directories:
            if len(self.watched) >= MAX_WATCHES:
                break
            if directory not in self.watched and self._add(self.fd, os.fsencode(directory),
                                                           self.IN_CREATE | self.IN_MOVED_TO | self.IN_CLOSE_WRITE | self.IN_ONLYDIR) >= 0:
                self.watched.add(directory)
                added += 1
        # Gone directories drop their watches themselves; forget them so that a new one at the path is watched.
        self.watched = {d for d in self.watched if os.path.isdir(d)}
        return added

    def wait(self, seconds):
        """Sleep until an event or the timeout; drain the events."""
        if self.fd is None:
            return False
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if not poller.poll(seconds * 1000.0):
            return False
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass
        return True


def watch_dirs(patterns):
    """Every existing directory on the way to the patterns' directories, where a new entry matters."""
    found = []
    for pattern in patterns:
        parts = pattern.rstrip("/").split("/")
        start = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
        for end in range(max(start, 2), len(parts) + 1):
            prefix = "/".join(parts[:end]) or "/"
            found.extend(glob_no_links(prefix))
    return [d for d in dict.fromkeys(found) if os.path.isdir(d)]
