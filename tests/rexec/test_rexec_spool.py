# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bounded, dropping fifo reader (spool): a container writing to
stdout is never blocked by a peer, or a link, that does not take its bytes.

Unit tests of the buffer, then the two places it runs: rexec_fiforelay
--side host (it reads the output fifos itself) and rexec_server's FIFO_READ
sessions (REXEC_FIFO_SPOOL, when the relay runs on the other side), each with
a reader on the far side that stops reading, as a cut link does.
"""

import os
import re
import threading
import time

import pytest

from rexec_testlib import read_to_eof, wait_until
from test_rexec_streams import FIFORELAY, fifo_pair, in_thread, start_relay

from dpu_offload_rexec import spool as rexec_spool

LIMIT = 256 << 10


def lines(first, count):
    return b"".join(b"line %d\n" % number for number in range(first, first + count))


def bounded(limit=64):
    said = []
    return rexec_spool.Bounded(limit, "f", said.append, clock=lambda: 0.0), said


# --------------------------------------------------------------------------
# unit: what is kept and what is dropped


def test_keeps_everything_that_fits():
    buf, said = bounded()
    buf.take(b"a\nb")
    buf.take(b"c\n")
    assert bytes(buf.buf) == b"a\nbc\n" and buf.dropped == 0 and said == []


def test_drops_whole_lines_past_the_limit():
    buf, said = bounded(limit=20)
    buf.take(b"0123456789\n")          # 11 bytes kept
    buf.take(b"abcdef\nghijklmn\nop")  # "abcdef\n" fits (18 bytes), "ghijklmn\n" and "op..." do not
    buf.take(b"qr\nst\n")              # "op" + "qr\n" end a dropped line; "st\n" is 3 bytes, 2 are left
    assert bytes(buf.buf) == b"0123456789\nabcdef\n"
    assert buf.dropped_lines == 3       # ghijklmn, opqr, st
    assert buf.dropped == len(b"ghijklmn\nopqr\nst\n")
    assert len(said) == 1 and "dropping past 20 buffered bytes" in said[0]


def test_an_unfinished_line_is_dropped_with_its_end():
    buf, _said = bounded(limit=10)
    buf.take(b"ab\ncdefg")             # 8 bytes, the last line unfinished
    buf.take(b"hijklmnop\n")           # its end does not fit: the whole line "cdefg..." goes
    assert bytes(buf.buf) == b"ab\n"
    assert buf.dropped == len(b"cdefghijklmnop\n") and buf.dropped_lines == 1
    assert buf.kept == 3


def test_says_when_the_peer_takes_bytes_again():
    buf, said = bounded(limit=10)
    buf.take(b"123456789\n")
    buf.take(b"x\ny\n")
    del buf.buf[:]                      # the peer took them
    buf.take(b"z\n")
    assert said[-1] == "f: the peer takes this fifo's bytes again; 4 bytes, 2 lines were dropped"
    assert bytes(buf.buf) == b"z\n" and buf.burst == [0, 0]


def test_a_long_burst_is_logged_now_and_then():
    now = [0.0]
    said = []
    buf = rexec_spool.Bounded(4, "f", said.append, clock=lambda: now[0])
    buf.take(b"abc\n")
    for step in range(30):
        now[0] = float(step)
        buf.take(b"x\n")
    assert len(said) == 3               # at 0, 10 and 20 s
    assert said[-1].endswith("(42 bytes, 21 lines dropped so far)")


# --------------------------------------------------------------------------
# the spool's thread, on a real fifo


def spool_on_a_fifo(tmp_path, name):
    """A new fifo, read by a Spool (what it logs goes to the list returned)."""
    path = str(tmp_path / name)
    os.mkfifo(path)
    said = []
    return path, rexec_spool.Spool(os.open(path, os.O_RDONLY | os.O_NONBLOCK), LIMIT, path, said.append), said


def test_spool_never_blocks_the_writer_and_hands_on_what_it_kept(tmp_path):
    path, spool, said = spool_on_a_fifo(tmp_path, "c1-stdout")
    payload = lines(0, 400000)          # about 5 MiB; nobody reads the spool's pipe meanwhile
    writer, wrote = in_thread(write_all, path, payload)
    writer.join(20)
    assert not writer.is_alive() and "error" not in wrote
    got = read_all(spool.rfd)
    spool.close()
    numbers = check_lines(got)
    assert spool.dropped > 0 and len(numbers) + spool.dropped_lines == 400000
    assert spool.dropped + len(got) == len(payload)
    assert numbers[0] == 0 and any("lines dropped in all" in line for line in said)


def test_spool_loses_nothing_to_a_slow_reader(tmp_path):
    # A reader that keeps taking bytes, slower than the writer: the writer waits, as on a bare fifo.
    path = str(tmp_path / "c1-stdout")
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    spool = rexec_spool.Spool(fd, LIMIT, path, [].append, stall=1.0)
    payload = lines(0, 300000)
    writer, wrote = in_thread(write_all, path, payload)
    os.set_blocking(spool.rfd, True)
    chunks = []
    while True:
        data = os.read(spool.rfd, 16384)
        if not data:
            break
        chunks.append(data)
        time.sleep(0.002)
    writer.join(10)
    spool.close()
    assert b"".join(chunks) == payload and spool.dropped == 0


def test_spool_stops_reading_when_its_reader_goes(tmp_path):
    path = str(tmp_path / "log")
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    spool = rexec_spool.Spool(fd, LIMIT, path, [].append)
    os.close(spool.rfd)                 # the relay's end closes, with an empty buffer
    assert wait_until(lambda: not spool.thread.is_alive(), 5)
    # The fifo is no longer held open: a writer now finds no reader.
    with pytest.raises(OSError):
        os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    spool.close()


def test_what_the_spool_holds_when_its_reader_goes_is_counted_as_dropped(tmp_path):
    path, spool, said = spool_on_a_fifo(tmp_path, "log")
    writer = os.open(path, os.O_WRONLY)
    data = lines(0, 60000)              # more than the pipe to the relay and the spool together hold
    in_thread(lambda: os.write(writer, data))
    # Nobody reads the relay's end: the pipe to it fills, then the spool.
    assert wait_until(lambda: len(spool.bounded.buf) >= LIMIT // 2, 5)
    held = bytes(spool.bounded.buf)
    os.close(spool.rfd)                 # the session broke: the relay's end goes
    assert wait_until(lambda: not spool.thread.is_alive(), 5)
    os.close(writer)
    assert spool.dropped_lines >= held.count(b"\n") > 0
    assert spool.bounded.buf == bytearray()
    assert any("lines dropped in all" in line and str(spool.dropped_lines) in line for line in said)
    spool.close()


def write_all(path, data):
    with open(path, "wb") as handle:
        handle.write(data)


def read_all(fd):
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb", buffering=0) as handle:
        return read_to_eof(handle)


def check_lines(data):
    """The numbers of whole "line N" lines, which must only increase."""
    assert data.endswith(b"\n")
    numbers = []
    for text in data.split(b"\n")[:-1]:
        match = re.fullmatch(rb"line (\d+)", text)
        assert match, text
        numbers.append(int(match.group(1)))
    assert numbers == sorted(set(numbers))
    return numbers


# --------------------------------------------------------------------------
# where it runs: a far-side reader that stops reading stands for a cut link


def stalled_transfer(writer_path, reader_path, count):
    """A writer of `count` lines and a reader that reads nothing until released: (writer, wrote, release, reader, result)."""
    release = threading.Event()
    result = {}

    def read():
        with open(reader_path, "rb", buffering=0) as handle:
            release.wait(60)
            result["data"] = read_to_eof(handle)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.3)
    writer, wrote = in_thread(write_all, writer_path, lines(0, count))
    return writer, wrote, release, reader, result


def spooled_past_a_stall(writer_path, reader_path, log):
    """COUNT lines written while the far reader stalls, which must not block the writer: the numbers that arrived."""
    writer, _wrote, release, reader, result = stalled_transfer(writer_path, reader_path, COUNT)
    writer.join(60)
    assert not writer.is_alive(), "the writer is blocked: %s" % log()[-2000:]
    release.set()
    reader.join(60)
    return check_lines(result["data"])


COUNT = 2500000     # about 33 MiB: more than loopback TCP buffers, the 2 MiB session window and the spool


@pytest.fixture
def spool_host_server(make_server, tree):
    # The HOST's server, for a relay that runs on the DPU (--side client): it reads output fifos itself.
    return make_server("tls", REXEC_FIFO_ALLOW=os.path.join(tree, "host", "fifo", "*"), REXEC_FIFO_SPOOL=LIMIT)


def test_server_fifo_read_spools_while_the_far_reader_stalls(spool_host_server, tools, tree):
    os.makedirs(os.path.join(tree, "dpu", "fifo"))
    tools(FIFORELAY, ["--side", "client", "--remote-map", "%s/dpu=%s/host" % (tree, tree), "--interval", "0.1",
                      "--watch", os.path.join(tree, "dpu", "fifo", "*")],
          spool_host_server.client_env(), os.path.join(tree, "relay.log"), "relaying fifos")
    dpu_out, host_out = fifo_pair(tree, "fifo/7/c1-stdout")
    # The shim's end (HOST) writes; dockerd's end (DPU) stops reading.
    numbers = spooled_past_a_stall(host_out, dpu_out, spool_host_server.log)
    assert spool_host_server.wait_log("status=closed")
    audit = [line for line in spool_host_server.log().splitlines() if 'fifo_read="%s"' % host_out in line and "status=closed" in line]
    match = re.search(r"dropped=(\d+) dropped_lines=(\d+)", audit[-1])
    assert match, audit
    assert len(numbers) + int(match.group(2)) == COUNT
    assert numbers[0] == 0


def test_relay_side_host_spools_while_the_far_reader_stalls(host_server, tools, tree):
    os.makedirs(os.path.join(tree, "host", "fifo"))
    relay = start_relay(tools, host_server, tree, [os.path.join(tree, "host", "fifo", "*")])
    dpu_out, host_out = fifo_pair(tree, "fifo/8/c1-stdout")
    numbers = spooled_past_a_stall(host_out, dpu_out, relay.log)
    os.unlink(host_out)
    assert relay.wait_log("relay stop %s (removed" % host_out)
    match = re.search(r"relay stop %s \(removed; .*, (\d+) bytes \((\d+) lines\) dropped\)" % re.escape(host_out), relay.log())
    assert match, relay.log()
    assert len(numbers) + int(match.group(2)) == COUNT


def test_without_a_spool_the_writer_waits_for_the_far_reader(host_server, tools, tree):
    # What the spool is for: with --spool 0 the stalled reader blocks the writer.
    os.makedirs(os.path.join(tree, "host", "fifo"))
    tools(FIFORELAY, ["--remote-map", "%s/host=%s/dpu" % (tree, tree), "--interval", "0.1", "--spool", "0",
                      "--watch", os.path.join(tree, "host", "fifo", "*")],
          host_server.client_env(), os.path.join(tree, "relay.log"), "relaying fifos")
    dpu_out, host_out = fifo_pair(tree, "fifo/9/c1-stdout")
    writer, wrote, release, reader, result = stalled_transfer(host_out, dpu_out, COUNT)
    writer.join(5)
    blocked = writer.is_alive()
    release.set()
    reader.join(60)
    writer.join(60)
    assert blocked
    assert len(check_lines(result["data"])) == COUNT      # nothing dropped: every line arrives, late
