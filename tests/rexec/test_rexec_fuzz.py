# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded fuzzing: about 10,000 mutated frames of the real protocol over TLS and a unix socket.

The server must stay up, its file descriptors and memory must come back to
where they were, and a valid request must work afterwards.  The mutations
are seeded (REXEC_FUZZ_SEED) so that a failure can be replayed.
"""

import os
import random
import shutil
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dpu_offload_rexec import wire as proto
from rexec_testlib import any_args, connect_raw, fd_count, rss_kb, run_client, wait_until

SEED = int(os.environ.get("REXEC_FUZZ_SEED", "13"))
CONNECTIONS = 1000          # per transport; about 5 frames each: about 10,000 frames over both
WORKERS = 12
FRAME_TYPES = [proto.T_HELLO, proto.T_REQUEST, proto.T_STDIN, proto.T_EOF, proto.T_SIGNAL, proto.T_CONNECT,
               proto.T_FIFO_READ, proto.T_FIFO_WRITE, proto.T_EXIT, 0x00, 0xFF]


def seeds(tmp):
    hello = (proto.T_HELLO, proto.HELLO_PAYLOAD)

    def request(*argv, env=(b"A=1",), cwd=b"/"):
        return (proto.T_REQUEST, proto.encode_request(list(argv), list(env), cwd))

    true = shutil.which("true").encode()
    echo = shutil.which("echo").encode()
    cat = shutil.which("cat").encode()
    return [
        [hello, request(true), (proto.T_EOF, b"\0")],
        [hello, request(echo, b"a", b"b c"), (proto.T_EOF, b"\0"), (proto.T_EOF, b"\1"), (proto.T_EOF, b"\2")],
        [hello, request(cat), (proto.T_STDIN, b"x" * 300), (proto.T_STDIN, b"y" * 20), (proto.T_SIGNAL, b"TERM"),
         (proto.T_STDIN, b"z"), (proto.T_EOF, b"\0"), (proto.T_EOF, b"\1")],
        [hello, request(cat, b"-", env=(b"LD_PRELOAD=/x", b"PATH=/tmp")), (proto.T_STDIN, b"data" * 50),
         (proto.T_SIGNAL, b"KILL"), (proto.T_EOF, b"\0")],
        [hello, (proto.T_CONNECT, os.fsencode(os.path.join(tmp, "s", "sock"))), (proto.T_STDIN, b"ping"), (proto.T_EOF, b"\0")],
        [hello, (proto.T_FIFO_READ, os.fsencode(os.path.join(tmp, "f", "fifo"))), (proto.T_EOF, b"\1")],
        [hello, (proto.T_FIFO_WRITE, os.fsencode(os.path.join(tmp, "f", "fifo"))), (proto.T_STDIN, b"w" * 64),
         (proto.T_EOF, b"\0")],
    ]


def encode(frames):
    return b"".join(bytes((ftype,)) + len(payload).to_bytes(4, "big") + payload for ftype, payload in frames)


def mutate(rng, frames):
    """A mutated byte stream and the number of frames it was made of."""
    frames = list(frames)
    for _round in range(rng.randint(1, 3)):
        choice = rng.randrange(8)
        index = rng.randrange(len(frames))
        ftype, payload = frames[index]
        if choice == 0 and payload:                      # flip bytes of a payload
            data = bytearray(payload)
            for _flip in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            frames[index] = (ftype, bytes(data))
        elif choice == 1:                                # another frame type
            frames[index] = (rng.choice(FRAME_TYPES), payload)
        elif choice == 2:                                # duplicate a frame
            frames.insert(index, frames[index])
        elif choice == 3 and len(frames) > 1:            # drop one
            del frames[index]
        elif choice == 4:                                # swap two
            other = rng.randrange(len(frames))
            frames[index], frames[other] = frames[other], frames[index]
        elif choice == 5:                                # random payload
            frames[index] = (ftype, os.urandom(rng.choice((0, 1, 4, 9, 100, 5000))))
        elif choice == 6 and ftype == proto.T_REQUEST:    # argc / envc / lengths inside the REQUEST
            data = bytearray(payload)
            pos = rng.randrange(0, max(1, len(data) - 4))
            data[pos:pos + 4] = rng.choice((0, 1, 0xFFFFFFFF, 0x7FFFFFFF, len(data))).to_bytes(4, "big")
            frames[index] = (ftype, bytes(data))
        else:                                            # extra frames of random types
            frames.insert(index, (rng.choice(FRAME_TYPES), os.urandom(rng.randint(0, 40))))
    data = bytearray(encode(frames))
    tweak = rng.randrange(6)
    if tweak == 0 and len(data) > 5:                     # a length field that lies
        pos = rng.randrange(0, len(data) - 5)
        data[pos + 1:pos + 5] = rng.choice((0, 1, 4096, 4097, proto.MAX_REQUEST + 1, 1 << 31)).to_bytes(4, "big")
    elif tweak == 1:                                     # cut anywhere
        data = data[:rng.randrange(len(data) + 1)]
    elif tweak == 2:                                     # garbage in between
        pos = rng.randrange(len(data) + 1)
        data[pos:pos] = os.urandom(rng.randint(1, 16))
    return bytes(data), len(frames)


def exchange(server, data, tls):
    """Send one mutated stream, read whatever comes back for a moment, close."""
    try:
        sock = connect_raw(server)
    except (OSError, ssl.SSLError):
        return
    try:
        sock.settimeout(0.25)
        try:
            sock.sendall(data)
            if not tls:
                sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        except (OSError, ssl.SSLError):
            pass
    finally:
        sock.close()


@pytest.fixture
def fuzz_tree(tmp_path):
    tree = str(tmp_path)
    os.mkdir(os.path.join(tree, "s"))
    os.mkdir(os.path.join(tree, "f"))
    os.mkfifo(os.path.join(tree, "f", "fifo"))
    return tree


@pytest.mark.parametrize("kind", ["tls", "unix"])
def test_mutated_frames_do_not_hurt_the_server(make_server, fuzz_tree, kind):
    entries = [shutil.which("true")] + any_args(shutil.which("echo")) + any_args(shutil.which("cat"))
    server = make_server(kind, entries=entries, REXEC_HANDSHAKE_TIMEOUT="1",
                         REXEC_SOCKET_ALLOW=os.path.join(fuzz_tree, "s"), REXEC_FIFO_ALLOW=os.path.join(fuzz_tree, "f"))
    rng = random.Random("%d-%s" % (SEED, kind))
    cases = [mutate(rng, rng.choice(seeds(fuzz_tree))) for _index in range(CONNECTIONS)]
    # Warm up (thread stacks, TLS, allocator) with the unmutated seeds, then take the baseline.
    for frames in seeds(fuzz_tree) * 2:
        exchange(server, encode(frames), kind == "tls")
    assert wait_until(lambda: fd_count(server.proc.pid) <= 8, 10)
    fds, rss = fd_count(server.proc.pid), rss_kb(server.proc.pid)
    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda case: exchange(server, case[0], kind == "tls"), cases))
    elapsed = time.monotonic() - started
    frames = sum(count for _data, count in cases)
    assert server.proc.poll() is None, server.log()[-2000:]
    # Every session ends (handshake timeout 1 s, lost clients): the fds come back.
    assert wait_until(lambda: fd_count(server.proc.pid) <= fds, 15), (fd_count(server.proc.pid), fds)
    grown = rss_kb(server.proc.pid) - rss
    assert grown < 32 * 1024, "RSS grew by %d KiB over %d frames" % (grown, frames)
    assert run_client(server, ["echo", "still", "here"]).stdout == b"still here\n"
    assert "internal error" not in server.log()
    print("%s: %d frames in %d connections, %.1f s, RSS %+d KiB" % (kind, frames, len(cases), elapsed, grown))
