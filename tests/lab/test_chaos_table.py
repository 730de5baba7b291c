"""tools/chaos_table.py prints `make chaos`'s rows as a table, and says so when no fault ran."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "chaos_table.py")

# Rows as molecule/default/tests/test_faults.py's report() writes them.
ROWS = [
    {"fault": "rexec_server SIGKILL (HOST)", "kept": "1/1", "recovery_s": 1.7, "dropped_lines": 0},
    {"fault": "link cut 60 s", "kept": "1/1", "recovery_s": 28.6, "dropped_lines": 42525},
]


def run(tmp_path, rows):
    report = tmp_path / "chaos.jsonl"
    report.write_text("".join(json.dumps(row) + "\n" for row in rows) + "\n", encoding="utf-8")
    return subprocess.run([sys.executable, TOOL, str(report)], capture_output=True, text=True, check=False)


def test_one_line_a_fault_in_the_order_they_ran(tmp_path):
    result = run(tmp_path, ROWS)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split("  ")[0] == "fault" and "lines dropped" in lines[0]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].startswith("rexec_server SIGKILL (HOST)") and lines[2].endswith("0")
    assert lines[3].startswith("link cut 60 s") and lines[3].split()[-2:] == ["28.6", "42525"]
    # Columns line up: each column starts at the same offset on every line.
    start = lines[0].index("recovery (s)")
    assert lines[2][start:].startswith("1.7") and lines[3][start:].startswith("28.6")


def test_an_empty_report_is_an_error(tmp_path):
    result = run(tmp_path, [])
    assert result.returncode == 1 and "no fault ran" in result.stderr
