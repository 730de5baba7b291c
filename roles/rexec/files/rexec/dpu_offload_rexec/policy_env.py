# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The environment a command gets: the server's base, and which variables an allowlist rule may pass on.

Whatever the client sends, a command starts with BASE_ENV, plus what an
`env NAME=WORD` item of its rule names (policy_commands.Rule); the names a
rule may not use are refused here (docs/rexec.md, "The allowlist", says why).
No I/O.
"""

import os
import re

# The command's environment starts from these, whatever the client sends.
DEFAULT_PATH = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = ((b"PATH", DEFAULT_PATH), (b"LC_ALL", b"C"))

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
