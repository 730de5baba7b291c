# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a command request may run: the allowlist file, its rules, and the decision for one request.

Plain functions and small classes (the /proc lookups of pid rules go
through an object the caller passes), so that every decision can be
unit-tested.  The syntax is documented in docs/rexec.md ("The allowlist"):

    # comment
    /usr/bin/kill {signal} {pid:comm=containerd-shim*,under=containerd-shim*}...
    /usr/bin/containerd-shim-runc-v2 -namespace {name} [ -debug ] start
        env TTRPC_ADDRESS=/run/containerd/containerd.sock.ttrpc GOMAXPROCS={uint}

The words of a pattern are policy_words', the environment rules policy_env's.
"""

import os
import shlex

from .policy_env import BASE_ENV, DEFAULT_PATH, env_name_refused, parse_env_entries
from .policy_words import RuleError, Word
from .settings import ConfigError

MAX_OPTIONAL = 8            # optional groups per pattern (each doubles the alternatives)


class Refusal(Exception):
    """A request that no rule allows: kind is the audit word, message goes to the client."""

    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message


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
# The file, and the command a request names


def check_allowlist_file(path):
    """Raise ConfigError unless path exists and only its owner may write it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError("allowlist %s does not exist: create it with one absolute command path per line "
                          "(owner-writable only, e.g. chmod 0600) or point REXEC_WHITELIST at one" % path)
    except OSError as exc:
        raise ConfigError("cannot read allowlist %s: %s" % (path, exc.strerror))
    if st.st_mode & 0o022:
        raise ConfigError("allowlist %s is writable by group or others (mode %04o): run 'chmod go-w %s'"
                          % (path, st.st_mode & 0o7777, path))


def load_allowlist(path, log=None):
    """The allowlist file parsed into an Allowlist; with log, each unusable line is logged."""
    check_allowlist_file(path)
    with open(path, "rb") as handle:
        text = handle.read()
    allow = parse_allowlist(text)
    if log is not None:
        for number, problem in allow.problems:
            log("allowlist %s line %d: %s" % (path, number, problem))
    return allow


def find_command(argv0, cwd):
    """Path of the command to run, or None.  A bare name is looked up in the server's own PATH, never the client's."""
    if b"/" in argv0:
        path = os.path.join(cwd, argv0)
        return path if os.path.exists(path) else None
    for directory in DEFAULT_PATH.split(b":"):
        path = os.path.join(directory, argv0)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None
