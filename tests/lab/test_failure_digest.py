"""tools/failure_digest.py finds the first failure in a molecule log whose tail is a later cleanup."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "failure_digest.py")

# Shaped like molecule's output: coloured, boxed, a verify failure first,
# then the cleanup that molecule runs again after it.
LOG = """\
\x1b[36mINFO    \x1b[0m default ➜ verify: Executing
FAILED molecule/default/tests/test_docker.py::test_logs_follow - AssertionError: assert 'hello' in ''
\x1b[31mERROR   \x1b[0m default ➜ verify: Executed: Failed
\x1b[33mWARNING \x1b[0m An error occurred during the test sequence action: 'verify'. Cleaning up.
  \x1b[2m│\x1b[0m TASK [dpu.offload.stock_engine : Unmount the directories of the peer]
  \x1b[2m\x1b[31m│\x1b[0m \x1b[0;31mfatal: [lab-host]: FAILED! => {"changed": false, "msg": "target is busy"}\x1b[0m
  \x1b[2m│\x1b[0m PLAY RECAP
  \x1b[2m│\x1b[0m lab-host : ok=17 changed=0 unreachable=0 failed=1
"""


def run(tmp_path, text):
    log = tmp_path / "molecule.log"
    log.write_text(text, encoding="utf-8")
    return subprocess.run([sys.executable, TOOL, str(log), "--context", "1"], check=True,
                          capture_output=True, text=True).stdout


def test_the_first_failure_comes_first_with_its_task(tmp_path):
    out = run(tmp_path, LOG)
    assert "\x1b" not in out and "│" not in out
    first = out.index("FAILED molecule/default/tests/test_docker.py::test_logs_follow")
    busy = out.index('fatal: [lab-host]: FAILED! => {"changed": false, "msg": "target is busy"}')
    assert first < busy
    assert "TASK [dpu.offload.stock_engine : Unmount the directories of the peer]" in out[first:busy + 200]


def test_a_clean_log_says_so(tmp_path):
    out = run(tmp_path, "INFO default ➜ verify: Executed: Successful\nok: [lab-host]\n")
    assert "none found" in out and "ok: [lab-host]" not in out


def test_lab_diagnostics_are_kept_whole_and_a_new_step_forgets_the_last_task(tmp_path):
    text = ("TASK [Import the same busybox into docker]\nok: [lab-dpu]\n"
            "INFO     default \u279c verify: Executing\n"
            "FAILED tests/test_docker.py::test_x - assert False\n"
            + "".join("DIAG lab-dpu line %d\n" % i for i in range(30)) + "ok\n")
    out = run(tmp_path, text)
    assert "Import the same busybox" not in out
    assert all("DIAG lab-dpu line %d" % i in out for i in range(30))
    assert "\nok\n" not in out
