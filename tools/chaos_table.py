# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Print `make chaos`'s table from the rows molecule/default/tests/test_faults.py wrote (CHAOS_REPORT, JSON lines).

    python tools/chaos_table.py .build/chaos.jsonl
"""

import json
import sys

COLUMNS = (("fault", "fault"), ("kept", "containers kept"), ("recovery_s", "recovery (s)"), ("dropped_lines", "lines dropped"))


def rows(lines):
    """The report's rows, in the order the faults ran; blank lines skipped."""
    return [json.loads(line) for line in lines if line.strip()]


def table(records):
    """A plain-text table, one fault a line, columns padded to their widest cell."""
    cells = [[title for _key, title in COLUMNS]] + [[str(record.get(key, "")) for key, _title in COLUMNS] for record in records]
    widths = [max(len(row[index]) for row in cells) for index in range(len(COLUMNS))]
    out = []
    for number, row in enumerate(cells):
        out.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if number == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: python tools/chaos_table.py REPORT.jsonl\n")
        return 2
    with open(argv[1]) as handle:
        records = rows(handle)
    if not records:
        sys.stderr.write("%s: no fault ran (see the test output above)\n" % argv[1])
        return 1
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
