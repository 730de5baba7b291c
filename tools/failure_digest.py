# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Print where a long run (molecule test --all) first went wrong.

CI keeps only the tail of a run's output, and after a failure molecule runs
cleanup and destroy again, whose output then fills that tail. This reads a
saved log and prints, at the end, every failing task and test with a few
lines of context, in the order they happened, so the first cause is seen.

usage: failure_digest.py LOG [--context N] [--limit LINES]
"""

import argparse
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Ansible's failing task results, molecule's failed steps, pytest's failures.
FAILURE = re.compile(r"^(fatal: |failed: )|\bExecuted: Failed\b|^(FAILED |E  )|^_{3,} .* _{3,}$"
                     r"|^CRITICAL |An error occurred during")
TASK = re.compile(r"^(TASK|PLAY|RUNNING HANDLER) \[")
# What molecule/default's tests print about the lab when one fails.
DIAG = re.compile(r"^DIAG ")
# A molecule step starts: the tasks of the step before no longer explain what follows.
STEP = re.compile(r"\S+ \u279c \S+: Executing$")


def clean(line):
    """A log line without colours and molecule's box drawing."""
    return re.sub(r"^\s*[│└─┌]+\s?", "", ANSI.sub("", line.rstrip("\n"))).rstrip()


def digest(lines, context=3, limit=120):
    """The excerpts to print: each failing line with the task it belongs to and what follows it."""
    lines = [clean(line) for line in lines]
    out = []
    last_task = None
    shown_until = -1
    for i, line in enumerate(lines):
        if TASK.match(line):
            last_task = line
        elif STEP.search(line):
            last_task = None
        if DIAG.match(line):
            out.append(line)
            continue
        if not FAILURE.search(line) or i <= shown_until:
            continue
        out.append("--- line %d%s" % (i + 1, (": " + last_task) if last_task else ""))
        end = min(len(lines), i + context + 1)
        out.extend(lines[i:end])
        shown_until = end - 1
        if len(out) >= limit:
            out.append("... (more failures in the log)")
            break
    return out[:limit + 1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("log")
    parser.add_argument("--context", type=int, default=6)
    parser.add_argument("--limit", type=int, default=220)
    args = parser.parse_args(argv)
    with open(args.log, encoding="utf-8", errors="replace") as handle:
        found = digest(handle, args.context, args.limit)
    print("==== failures in %s, in order (%s) ====" % (args.log, "none found" if not found else "first first"))
    print("\n".join(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
