# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What rexec_server lets a peer do: allowlist rules, the command's environment, peer names.

Plain functions and small classes without I/O of their own (the /proc
lookups of pid rules go through an object the caller passes), so that every
decision can be unit-tested.  The allowlist syntax is documented in
docs/rexec.md ("The allowlist"):

    # comment
    /usr/bin/kill {signal} {pid:comm=containerd-shim*,under=containerd-shim*}...
    /usr/bin/containerd-shim-runc-v2 -namespace {name} [ -debug ] start
        env TTRPC_ADDRESS=/run/containerd/containerd.sock.ttrpc GOMAXPROCS={uint}

Python 3.9+ standard library only.
"""

import fnmatch
import os
import re
import shlex

# The command's environment starts from these, whatever the client sends.
DEFAULT_PATH = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = ((b"PATH", DEFAULT_PATH), (b"LC_ALL", b"C"))

MAX_OPTIONAL = 8            # optional groups per pattern (each doubles the alternatives)
MAX_ANCESTORS = 64          # how far {pid:under=...} walks up the parent chain
MAX_PID = 1 << 22           # the kernel's pid_max ceiling

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Owned by the server: an entry cannot name them.
_RESERVED_ENV = frozenset(("PATH", "LANG", "LANGUAGE"))
_RESERVED_ENV_PREFIXES = ("LC_",)
# Variables that make a loader, a shell, an interpreter, glibc or the Go
# runtime run code, read or write files, or send traffic where the client
# chooses, or change how a command parses its arguments.  Never passed,
# whatever an entry says (docs/rexec.md, "The allowlist", lists why).
_FORBIDDEN_ENV = frozenset((
    # shells, pagers, editors and their start-up files
    "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "CDPATH", "GLOBIGNORE", "PROMPT_COMMAND", "ZDOTDIR",
    "INPUTRC", "BROWSER", "PAGER", "MANPAGER", "SYSTEMD_PAGER", "EDITOR", "VISUAL", "SHELL", "HOME", "LESSOPEN",
    "LESSCLOSE", "PWD",
    # glibc: what it drops for secure-execution (setuid) programs, plus TZ (a zone file read as root)
    "GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES", "LOCALDOMAIN", "RES_OPTIONS", "GETCONF_DIR", "TZ", "TZDIR",
    "TMPDIR", "NIS_PATH", "NIS_DEFAULTS", "NIS_GROUP", "GMON_OUT_PREFIX", "PCPROFILE_OUTPUT", "DATEMSK",
    "ARGP_HELP_FMT", "MSGVERB", "SEV_LEVEL", "HESIOD_CONFIG", "HES_DOMAIN", "POSIXLY_CORRECT",
    # other libraries' configuration and trust files
    "CLASSPATH", "TERMINFO", "TERMINFO_DIRS", "KRB5_CONFIG", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
    "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "XDG_DATA_HOME", "XDG_DATA_DIRS", "LIBRARY_PATH",
    # Go: runtime switches, crash dumps, time zone data, race and coverage output, the go command
    "GODEBUG", "GOTRACEBACK", "GORACE", "GOCOVERDIR", "GOROOT", "ZONEINFO", "GOFLAGS", "GOENV", "GOTOOLCHAIN",
    # HTTP clients (Go's net/http, curl): where requests go
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
))
_FORBIDDEN_ENV_PREFIXES = (
    "LD_", "DYLD_", "BASH_FUNC_", "PYTHON", "PERL", "RUBY", "GEM_", "BUNDLE_", "NODE_", "NPM_", "JAVA_", "_JAVA_",
    "JDK_", "LUA_", "TCL", "TK_", "GCONV", "MALLOC_", "GLIBC_", "OPENSSL_", "GIT_", "PHP", "R_", "JULIA_", "GUILE",
    "RESOLV_", "MEMUSAGE_", "SEGFAULT_",
)

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


class Refusal(Exception):
    """A request that no rule allows: kind is the audit word, message goes to the client."""

    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message


# --------------------------------------------------------------------------
# Environment


def env_name_refused(name):
    """Why an entry may not name this variable, or None when it may."""
    if not _ENV_NAME.match(name):
        return "not a plain variable name"
    if name in _RESERVED_ENV or name.startswith(_RESERVED_ENV_PREFIXES):
        return "set by the server itself"
    upper = name.upper()
    if upper in _FORBIDDEN_ENV or upper.startswith(_FORBIDDEN_ENV_PREFIXES):
        return "a loader, shell, interpreter, libc or Go runtime variable, never passed"
    return None


def parse_env_entries(entries):
    """Request environment (list of b"NAME=value") -> dict str -> bytes; first occurrence wins, as getenv() does."""
    result = {}
    for entry in entries:
        key, sep, value = bytes(entry).partition(b"=")
        if not sep or not key:
            continue
        name = os.fsdecode(key)
        if name not in result:
            result[name] = value
    return result


# --------------------------------------------------------------------------
# Words of a pattern


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
# Patterns and rules


def split_words(text):
    """shell-like words: quotes group, backslashes are plain characters (regular expressions need them)."""
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    lexer.escape = ""
    try:
        return list(lexer)
    except ValueError as exc:
        raise RuleError(str(exc))


def expand_pattern(words):
    """Words with '[' ... ']' optional groups -> list of flat alternatives (lists of Word)."""
    def parse(pos, depth):
        sequences = [[]]
        optional = 0
        while pos < len(words):
            word = words[pos]
            if word == "]":
                if depth == 0:
                    raise RuleError("']' without '['")
                return sequences, pos + 1, optional
            if word == "[":
                inner, pos, inner_optional = parse(pos + 1, depth + 1)
                optional += 1 + inner_optional
                if optional > MAX_OPTIONAL:
                    raise RuleError("more than %d optional groups in one pattern" % MAX_OPTIONAL)
                sequences = [seq + tail for seq in sequences for tail in [[]] + inner]
                continue
            item = Word(word)
            sequences = [seq + [item] for seq in sequences]
            pos += 1
        if depth:
            raise RuleError("'[' without ']'")
        return sequences, pos, optional

    sequences, _pos, _optional = parse(0, 0)
    if any(item.repeat for seq in sequences for item in seq[:-1]):
        raise RuleError("only the last word of a pattern may repeat ('...')")
    unique = []
    seen = set()
    for seq in sequences:
        key = tuple(id(item) for item in seq)
        if key not in seen:
            seen.add(key)
            unique.append(seq)
    return unique


def _sequence_matches(seq, args, procs):
    if not seq:
        return not args
    last = seq[-1]
    if last.repeat:
        if len(args) < len(seq):
            return False
        fixed, rest = args[:len(seq) - 1], args[len(seq) - 1:]
    else:
        if len(args) != len(seq):
            return False
        fixed, rest = args, ()
    for item, value in zip(seq, fixed):
        if not item.matches(value, procs):
            return False
    return all(last.matches(value, procs) for value in rest)


class Rule:
    """One allowlist line: a command, its argument pattern and the variables it may get."""

    def __init__(self, path, words, line=0):
        self.path = path
        self.line = line
        self.pattern = " ".join(words)
        self.alternatives = expand_pattern(words)
        self.env = {}

    def add_env(self, words):
        for word in words:
            name, sep, value = word.partition("=")
            if not sep:
                raise RuleError("env wants NAME=PATTERN, got %r" % word)
            why = env_name_refused(name)
            if why is not None:
                raise RuleError("env %s: %s" % (name, why))
            item = Word(value)
            if item.repeat:
                raise RuleError("env %s: a value is one word" % name)
            self.env[name] = item

    def args_match(self, args, procs):
        return any(_sequence_matches(seq, args, procs) for seq in self.alternatives)

    def build_env(self, client_env, procs):
        """The command's environment (dict bytes -> bytes); Refusal when a named variable has a value the rule refuses."""
        env = dict(BASE_ENV)
        for name, item in self.env.items():
            value = client_env.get(name)
            if value is None:
                continue
            text = os.fsdecode(value)
            if not item.matches(text, procs):
                raise Refusal("environment", "environment variable %s: value not allowed by the server's allowlist" % name)
            env[os.fsencode(name)] = value
        return env


class Allowlist:
    """Parsed allowlist: rules by the real path of their command, plus the problems found."""

    def __init__(self):
        self.rules = {}
        self.problems = []

    def add(self, real, rule):
        self.rules.setdefault(real, []).append(rule)

    def __contains__(self, real):
        return real in self.rules

    def decide(self, real, argv, env_entries, procs):
        """(rule, environment) for a request whose command resolved to real; Refusal otherwise."""
        rules = self.rules.get(real)
        if not rules:
            raise Refusal("allowlist", "not allowed by the server's allowlist")
        args = [os.fsdecode(arg) for arg in argv[1:]]
        client_env = parse_env_entries(env_entries)
        env_refusal = None
        for rule in rules:
            if not rule.args_match(args, procs):
                continue
            try:
                return rule, rule.build_env(client_env, procs)
            except Refusal as exc:
                env_refusal = env_refusal or exc
        if env_refusal is not None:
            raise env_refusal
        raise Refusal("arguments", "arguments not allowed by the server's allowlist")


def parse_allowlist(text, realpath=os.path.realpath):
    """Allowlist text (bytes) -> Allowlist.  Lines that cannot be used are skipped and listed in problems."""
    allow = Allowlist()
    rule = None
    rule_ok = False
    skipping = False            # after a command line that could not be used: its env lines go with it
    for number, raw in enumerate(os.fsdecode(text).splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if raw[:1].isspace() and line.split(None, 1)[0] == "env":
            if rule is None and not skipping:
                allow.problems.append((number, "env line without a command line before it"))
            if not rule_ok:
                continue            # no rule, or its command line was already reported
            try:
                rule.add_env(split_words(line)[1:])
            except RuleError as exc:
                # Fail closed: a rule whose environment cannot be honoured is dropped whole.
                allow.problems.append((number, "%s (the rule of line %d is dropped)" % (exc, rule.line)))
                allow.rules[rule.real].remove(rule)
                if not allow.rules[rule.real]:
                    del allow.rules[rule.real]
                rule_ok = False
            continue
        rule = None
        rule_ok = False
        skipping = True
        if not line.startswith("/"):
            allow.problems.append((number, "ignored: %r is not an absolute path" % line.split()[0]))
            continue
        try:
            words = split_words(line)
            rule = Rule(words[0], words[1:], number)
        except RuleError as exc:
            allow.problems.append((number, "ignored: %s" % exc))
            continue
        rule.real = realpath(os.fsencode(words[0]))
        allow.add(rule.real, rule)
        rule_ok = True
        skipping = False
    return allow


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


# --------------------------------------------------------------------------
# Peers (REXEC_TLS_PEERS)


def parse_peers(text):
    """Comma-separated certificate names -> frozenset of lower-case names (empty when unset)."""
    if not text:
        return frozenset()
    return frozenset(item.strip().lower() for item in text.split(",") if item.strip())


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
