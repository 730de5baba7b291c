# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One word of an allowlist pattern: a literal or a {placeholder}, and the {pid:...} selectors with their /proc lookups.

Word.matches() decides whether one argument (or an `env` value) fits; the
placeholders are documented in docs/rexec.md ("The allowlist").  The /proc
lookups go through a Procs object the caller passes, so that every decision
can be unit-tested.
"""

import fnmatch
import os
import re

MAX_ANCESTORS = 64          # how far {pid:under=...} walks up the parent chain
MAX_PID = 1 << 22           # the kernel's pid_max ceiling

_SIGNAL_NAMES = frozenset((
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE",
    "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM",
    "PROF", "WINCH", "IO", "POLL", "PWR", "SYS",
))

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_UINT = re.compile(r"[0-9]{1,10}\Z")
_MODULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}\Z")
_PID = re.compile(r"[1-9][0-9]{0,9}\Z")
_SIGNUM = re.compile(r"[0-9]{1,2}\Z")


class RuleError(ValueError):
    """An allowlist line that cannot be used (the server skips it and says why)."""


def _clean_path(value):
    """True for an absolute path without empty, '.' or '..' components (so no '//' either)."""
    if not value.startswith("/") or "\0" in value:
        return False
    if value == "/":
        return True
    parts = value[1:].split("/")
    return all(part not in ("", ".", "..") for part in parts)


def _path_matches(value, pattern_parts):
    if not _clean_path(value):
        return False
    parts = value[1:].split("/") if value != "/" else []
    if len(parts) != len(pattern_parts):
        return False
    return all(fnmatch.fnmatchcase(part, pat) for part, pat in zip(parts, pattern_parts))


def _signal_word(value):
    # ASCII digits only: str.isdigit() is true for a superscript 2 (int() raises) and an Arabic-Indic 9 (int() reads 9).
    if _SIGNUM.match(value):
        return int(value) <= 64
    name = value[3:] if value.startswith("SIG") else value
    if name in _SIGNAL_NAMES:
        return True
    match = re.match(r"RT(MIN|MAX)([+-][0-9]{1,2})?\Z", name)
    return match is not None


class PidRule:
    """{pid:SELECTOR,...}: one process id that belongs to the offload.

    Selectors: comm=GLOB (the target's command name), exe=GLOB (its
    executable), under=GLOB (the command name of one of its ancestors).
    Pids 0 and 1, negative numbers (process groups, "all") and anything not
    a plain decimal number never match.
    """

    def __init__(self, text):
        self.selectors = []
        for item in text.split(","):
            kind, sep, glob = item.strip().partition("=")
            if not sep or kind not in ("comm", "exe", "under") or not glob:
                raise RuleError("{pid:...} wants comm=GLOB, exe=GLOB or under=GLOB selectors, got %r" % item)
            self.selectors.append((kind, glob))

    def check(self, value, procs):
        if not _PID.match(value):
            return False
        pid = int(value)
        if pid <= 1 or pid >= MAX_PID:
            return False
        info = procs.stat(pid)
        if info is None:
            return False
        comm, ppid = info
        for kind, glob in self.selectors:
            if kind == "comm" and fnmatch.fnmatchcase(comm, glob):
                return True
            if kind == "exe":
                exe = procs.exe(pid)
                if exe is not None and fnmatch.fnmatchcase(exe, glob):
                    return True
            if kind == "under" and self._under(ppid, glob, procs):
                return True
        return False

    @staticmethod
    def _under(ppid, glob, procs):
        for _step in range(MAX_ANCESTORS):
            if ppid <= 1:
                return False
            info = procs.stat(ppid)
            if info is None:
                return False
            comm, ppid = info
            if fnmatch.fnmatchcase(comm, glob):
                return True
        return False


class Word:
    """One word of a pattern: a literal or a {placeholder}; repeat: '...' (one or more)."""

    def __init__(self, text):
        self.text = text
        self.repeat = False
        self.literal = None
        self.kind = None
        self.arg = None
        if text.endswith("...") and text.startswith("{"):
            self.repeat = True
            text = text[:-3]
        if not (text.startswith("{") and text.endswith("}")):
            if self.repeat:
                raise RuleError("'...' follows a placeholder only: %r" % self.text)
            self.literal = text
            return
        inner = text[1:-1]
        if inner.startswith("="):
            if self.repeat:
                raise RuleError("a literal cannot repeat: %r" % self.text)
            self.literal = inner[1:]
            return
        kind, _sep, arg = inner.partition(":")
        self.kind = kind
        self.arg = arg
        if kind in ("any", "name", "uint", "module", "signal", "signame"):
            if arg:
                raise RuleError("{%s} takes no argument: %r" % (kind, self.text))
        elif kind == "path":
            if not _clean_path(arg):
                raise RuleError("{path:GLOB} wants an absolute pattern without '.', '..' or '//': %r" % self.text)
            self.arg = arg[1:].split("/") if arg != "/" else []
        elif kind == "re":
            try:
                # ASCII: \d, \w and \s must not match other scripts' digits, letters and blanks.
                self.arg = re.compile(arg, re.ASCII)
            except re.error as exc:
                raise RuleError("bad regular expression in %r: %s" % (self.text, exc))
        elif kind == "pid":
            self.arg = PidRule(arg)
        else:
            raise RuleError("unknown placeholder %r (known: any, name, uint, module, signal, signame, path:, re:, pid:, =)"
                            % self.text)

    def matches(self, value, procs):
        if "\0" in value:
            return False
        if self.literal is not None:
            return value == self.literal
        kind = self.kind
        if kind == "any":
            return True
        if kind == "name":
            return _NAME.match(value) is not None
        if kind == "uint":
            return _UINT.match(value) is not None
        if kind == "module":
            return _MODULE.match(value) is not None
        if kind == "signal":
            return value.startswith("-") and _signal_word(value[1:])
        if kind == "signame":
            return _signal_word(value)
        if kind == "path":
            return _path_matches(value, self.arg)
        if kind == "re":
            return self.arg.fullmatch(value) is not None
        return self.arg.check(value, procs)


# --------------------------------------------------------------------------
# /proc, for {pid:...}


class Procs:
    """The /proc lookups pid rules need (a test passes its own)."""

    def __init__(self, root="/proc"):
        self.root = root

    def stat(self, pid):
        """(comm, ppid) of a live process, or None."""
        try:
            with open("%s/%d/stat" % (self.root, pid), "rb") as handle:
                data = handle.read()
        except OSError:
            return None
        start = data.find(b"(")
        end = data.rfind(b")")
        if start < 0 or end < start:
            return None
        fields = data[end + 2:].split()
        if len(fields) < 2 or fields[0] in (b"Z", b"X"):
            return None
        return os.fsdecode(data[start + 1:end]), int(fields[1])

    def exe(self, pid):
        try:
            target = os.readlink("%s/%d/exe" % (self.root, pid))
        except OSError:
            return None
        if target.endswith(" (deleted)"):
            target = target[:-len(" (deleted)")]
        return target
