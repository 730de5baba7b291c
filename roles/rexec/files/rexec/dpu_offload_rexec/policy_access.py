# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a peer may reach besides commands: which client certificates get in, which sockets and fifos a stream may open.

REXEC_TLS_PEERS (parsed by settings.parse_peers) against the certificate's
names; REXEC_SOCKET_ALLOW / REXEC_FIFO_ALLOW (parsed by settings.parse_allow)
against the path a CONNECT, FIFO_READ or FIFO_WRITE asks for, and, in
rexec_forward, against the paths it creates.  No I/O beyond resolving a path.
"""

import fnmatch
import os


def _dir_matches(directory, pattern):
    dparts = directory.split(b"/")
    pparts = pattern.split(b"/")
    if len(dparts) != len(pparts):
        return False
    return all(part == pat or fnmatch.fnmatchcase(part, pat) for part, pat in zip(dparts, pparts))


def path_allowed(path, entries, resolve=True):
    """The real path of path if allowed by entries, else None.

    Allowed: the real path's parent directory is exactly an entry (in a
    pattern, `*` stands for exactly one path component), or the real path
    itself is an entry (an entry may name one socket / fifo).  Refuses
    relative paths, NUL bytes and `.`/`..` components before resolving
    anything.  resolve=False checks the path as written (for a caller that
    then refuses every symlink on the way, so that it is the real path).
    """
    if isinstance(path, str):
        path = os.fsencode(path)
    if not path.startswith(b"/") or b"\0" in path:
        return None
    parts = path.split(b"/")
    if b".." in parts or b"." in parts:
        return None
    if resolve:
        real = os.path.realpath(path)
    elif b"//" in path or path.endswith(b"/"):
        return None
    else:
        real = path
    parent = os.path.dirname(real)
    for entry in entries:
        if parent == entry or real == entry or _dir_matches(parent, entry):
            return real
    return None


def certificate_names(cert):
    """DNS subjectAltNames and commonName(s) of a certificate as ssl.getpeercert() returns it."""
    names = []
    for kind, value in (cert or {}).get("subjectAltName", ()):
        if kind == "DNS":
            names.append(value)
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.append(value)
    return names


def peer_allowed(cert, peers):
    """The name by which the certificate is allowed, or None.  Exact names, no wildcards."""
    for name in certificate_names(cert):
        if name.lower() in peers:
            return name
    return None
