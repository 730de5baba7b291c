# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rexec_server's log: its lines on stderr, the pieces of its audit lines, and what a refusal carries.

Every request gets exactly one audit line, written by the session that
answers it (session, command_session, stream_session); everything else the
server logs goes through log() too (journald keeps stderr).
"""

import json
import os
import traceback

from .common import say

PROG = "rexec_server"


def log(message):
    say(PROG, message)


def where(exc):
    """file:line (function) where exc was raised, for an internal error's log line."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return "%s:%d (%s)" % (os.path.basename(last.filename), last.lineno, last.name)


def q(value):
    """JSON-quote bytes/str for the audit line (always one line)."""
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    return json.dumps(value)


class Refused(Exception):
    """The request cannot run: the client's exit code, the message it gets, the audit line's status."""

    def __init__(self, code, message, status):
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        self.status = status
