# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rexec_fiforelay's bookkeeping of which fifo nodes it relays.

A docker restart removes a container's fifos and makes them again at the
same paths. On a disk file system (where the stock mode keeps them so that
they outlive a reboot) the new node may get the old one's inode number: the
relay must still take it for a new node, or the container's output stops
reaching dockerd (seen in the lab: stdout went silent after a restart while
stderr flowed)."""

import os
import threading

import pytest

from dpu_offload_rexec import fiforelay


@pytest.fixture
def relay(tmp_path, monkeypatch):
    """A FifoRelay with no peer whose relays are recorded, not run, and whose
    nodes all have one inode number, as when a file system reuses it."""
    started = []

    def record(self):
        started.append(self)

    monkeypatch.setattr(fiforelay.Relay, "start", record)
    reused = (1, 42)
    monkeypatch.setattr(fiforelay, "fifo_ident", lambda path: reused if os.path.exists(path) else None)
    monkeypatch.setattr(fiforelay, "same_node", lambda path, ident: os.path.exists(path) and ident == reused)
    owner = object.__new__(fiforelay.FifoRelay)
    owner.side, owner.mapping, owner.spool_limit = "client", None, 0
    owner.watch = [str(tmp_path)]
    owner.relays, owner.done = {}, {}
    owner.lock = threading.Lock()
    fifo = tmp_path / "init-stdout"
    os.mkfifo(fifo)
    owner.reconcile()
    assert [r.path for r in started] == [str(fifo)]
    return owner, started, fifo


def test_a_node_made_again_after_its_relay_ended_is_relayed(relay):
    owner, started, fifo = relay
    first = started[0]
    os.unlink(fifo)
    owner.finished(first, "removed")      # the relay saw its node go, before any scan did
    os.mkfifo(fifo)                         # docker makes it again: same path, same inode number
    owner.reconcile()
    assert len(started) == 2 and started[1] is not first
    assert owner.relays[str(fifo)] is started[1]


def test_a_scan_that_misses_the_node_starts_no_second_relay(relay):
    # Two relays of one path read the peer's fifo at once and share out the new writer's
    # lines; the one whose node went drops its share (a restarted container's first lines).
    owner, started, fifo = relay
    first = started[0]
    os.unlink(fifo)
    owner.reconcile()                       # the scan misses the node: the relay is left to notice
    assert not first.stopper.stopped()
    os.mkfifo(fifo)
    owner.reconcile()                       # a node again while the relay runs: it follows it
    assert started == [first] and owner.relays[str(fifo)] is first


def test_a_relay_that_ended_while_its_node_stayed_is_not_started_again(relay):
    owner, started, _fifo = relay
    owner.finished(started[0], "refused by the peer")
    owner.reconcile()
    owner.reconcile()
    assert len(started) == 1


@pytest.fixture
def lone_relay(tmp_path):
    """A Relay of tmp_path/init-stdout on the client side (it writes the fifo), not started."""
    owner = object.__new__(fiforelay.FifoRelay)
    owner.mapping = None
    fifo = tmp_path / "init-stdout"
    os.mkfifo(fifo)
    return fiforelay.Relay(owner, str(fifo), fiforelay.fifo_ident(str(fifo)), "in"), fifo


def test_a_relay_follows_a_new_node_at_its_path_and_ends_when_there_is_none(lone_relay, tmp_path):
    relay, fifo = lone_relay
    assert relay.check() is None and relay.follow(None) is None
    old = relay.ident
    os.mkfifo(tmp_path / "next")
    os.rename(tmp_path / "next", fifo)      # another node at the path, another inode number
    assert relay.check() == "replaced"
    assert relay.follow("replaced") is None and relay.ident != old
    assert relay.ident == (os.lstat(fifo).st_dev, os.lstat(fifo).st_ino)
    os.unlink(fifo)
    assert relay.check() == "removed" and relay.follow(None) == "removed"
    assert relay.follow("refused by the peer") == "refused by the peer"


def test_a_relay_writes_only_a_fifo_it_finds_at_its_path(lone_relay, tmp_path):
    relay, fifo = lone_relay
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fd, reason = relay.open_local()
        assert reason is None
        os.close(fd)
    finally:
        os.close(reader)
    # The HOST can write in the shared directories: a file or a symlink put there is not a
    # fifo the relay follows, and one swapped in between the check and the open is not opened.
    os.unlink(fifo)
    (tmp_path / "target").write_text("keep")
    os.symlink(tmp_path / "target", fifo)
    assert relay.open_local() == (None, "removed")
    relay.check = lambda: None
    fd, reason = relay.open_local()
    assert fd is None and reason.startswith("cannot open")
    os.unlink(fifo)
    fifo.write_text("")
    assert relay.open_local() == (None, "not a fifo")
    assert (tmp_path / "target").read_text() == "keep"
