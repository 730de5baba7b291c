# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signals, lost clients, dying parents, server shutdown."""

import os
import signal
import subprocess
import time

import pytest

from rexec_testlib import CLIENT, PYTHON, pid_gone, process_group_alive, read_line, start_client, wait_until

# The remote shell starts a child, then reports its pid (= its process group: the server starts
# it in a new session) and waits; the signal goes to the whole group and the shell's trap runs.
# (A non-interactive shell starts background children with SIGINT and SIGQUIT ignored.)  The pid
# is printed only once the child has exec'd sleep, so a signal cannot hit it half-way.
TRAP_SCRIPT = ('trap "echo got-$1; exit 7" $1; sleep 20 & '
               'while [ "$(cat /proc/$!/comm 2>/dev/null)" != sleep ]; do :; done; echo $$; wait')


@pytest.mark.parametrize("name", ["INT", "TERM", "HUP", "QUIT", "USR1", "USR2"])
def test_signal_is_forwarded(server, name):
    proc = start_client(server, ["sh", "-c", TRAP_SCRIPT, "sh", name])
    try:
        pgid = int(read_line(proc.stdout))
        os.kill(proc.pid, getattr(signal, "SIG" + name))
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 7, err
        assert out == b"got-%s\n" % name.encode()
        if name not in ("INT", "QUIT"):
            assert wait_until(lambda: not process_group_alive(pgid), 3)   # the group's sleep got it too
        else:
            os.killpg(pgid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def test_signal_default_action_gives_128_plus_n(server):
    proc = start_client(server, ["sh", "-c", "echo ready; exec sleep 20"])
    try:
        read_line(proc.stdout)
        os.kill(proc.pid, signal.SIGUSR1)
        assert proc.wait(10) == 128 + signal.SIGUSR1
    finally:
        proc.kill()
        proc.wait()


def test_client_killed_kills_remote_group(server, tmp_path):
    piddir = tmp_path / "pids"
    proc = start_client(server, ["sh", "-c", "sleep 30 & echo $$; wait"], env=server.client_env(REXEC_PID_DIR=str(piddir)))
    try:
        pgid = int(read_line(proc.stdout))
        assert process_group_alive(pgid)
        killed_at = time.monotonic()
        proc.kill()
        proc.wait()
        assert wait_until(lambda: not process_group_alive(pgid), 1.5), "remote group survived its client"
        assert time.monotonic() - killed_at < 1.5
        assert server.wait_log("status=disconnected(killed;signal:KILL(9))")
    finally:
        proc.kill()
        proc.wait()


def test_parent_death_ends_remote_command(server, tmp_path):
    """The client's parent dies (SIGKILL): the client ends the remote command and exits."""
    out_path = tmp_path / "out"
    parent_code = (
        "import subprocess, sys, time\n"
        "out = open(sys.argv[1], 'wb')\n"
        "child = subprocess.Popen([sys.executable, sys.argv[2], 'sh', '-c', 'sleep 30 & echo $$; wait'],"
        " stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([PYTHON, "-c", parent_code, str(out_path), CLIENT], env=server.client_env(),
                              stdout=subprocess.PIPE)
    client_pid = None
    try:
        client_pid = int(read_line(parent.stdout))
        assert wait_until(lambda: out_path.read_bytes().endswith(b"\n"), 10)
        pgid = int(out_path.read_bytes())
        assert process_group_alive(pgid)
        parent.kill()
        parent.wait()
        assert wait_until(lambda: not process_group_alive(pgid), 3), "remote group survived the client's parent"
        assert wait_until(lambda: pid_gone(client_pid), 3), "client survived its parent"
    finally:
        parent.kill()
        parent.wait()
        if client_pid is not None and not pid_gone(client_pid):
            os.kill(client_pid, signal.SIGKILL)


def test_server_shutdown_kills_commands(make_server):
    server = make_server("tls")
    proc = start_client(server, ["sh", "-c", "sleep 30 & echo $$; wait"])
    try:
        pgid = int(read_line(proc.stdout))
        server.proc.terminate()
        assert server.proc.wait(5) == 0
        assert wait_until(lambda: not process_group_alive(pgid), 3)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 255 and err.startswith(b"rexec: connection to") and out == b""
    finally:
        proc.kill()
        proc.wait()
