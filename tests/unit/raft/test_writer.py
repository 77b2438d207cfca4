"""LogWriter's write-now path and FileStorage.save_quick: a follower's plain append is
fsynced on the loop while no write is in flight; anything heavier, or anything behind a
write in flight, still goes to the writer thread, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from broker_agents.core.raft import (
    AppendOp,
    Entry,
    HardState,
    HardStateOp,
    Persisted,
    Snapshot,
    SnapshotOp,
)
from broker_agents.raft.snapfiles import snapshot_indexes
from broker_agents.raft.storage import FileStorage
from broker_agents.raft.writer import LogWriter


def entries(lo: int, hi: int) -> tuple[Entry, ...]:
    return tuple(Entry(1, i, {"op": "put", "key": "k", "value": i}, f"r{i}")
                 for i in range(lo, hi + 1))


def test_save_quick_is_durable_like_save(tmp_path: Path) -> None:
    st = FileStorage(tmp_path)
    assert st.save_quick([AppendOp(entries(1, 3)), HardStateOp(HardState(2, "m1", 2))])
    st.close()
    got = FileStorage(tmp_path).load()
    assert [e.index for e in got.entries] == [1, 2, 3]
    assert got.hard_state == HardState(2, "m1", 2)


def test_save_quick_leaves_snapshots_to_save(tmp_path: Path) -> None:
    st = FileStorage(tmp_path)
    st.save([AppendOp(entries(1, 10))])
    size = st.size_bytes
    assert not st.save_quick([SnapshotOp(Snapshot(5, 1, b"s"), reset_log=False)])
    assert st.size_bytes == size and st.load().snapshot is None  # nothing was saved
    st.close()


def test_save_quick_leaves_a_due_rewrite_to_save(tmp_path: Path) -> None:
    st = FileStorage(tmp_path, rewrite_min_bytes=0)
    st.save([AppendOp(entries(1, 100))])
    st.save([SnapshotOp(Snapshot(50, 1, b"s50"), reset_log=False)])
    st.wait_snapshots()
    assert snapshot_indexes(tmp_path) == [50]
    assert not st.save_quick([AppendOp(entries(101, 101))])  # a rewrite is due
    assert st.rewrites == 0
    st.save([AppendOp(entries(101, 101))])
    assert st.rewrites == 1
    assert st.save_quick([AppendOp(entries(102, 102))])
    st.close()
    assert [e.index for e in FileStorage(tmp_path).load().entries] == list(range(51, 103))


class Recorder:
    def __init__(self) -> None:
        self.marks: list[Persisted] = []
        self.failures: list[BaseException] = []


def writer_for(st: FileStorage, rec: Recorder) -> LogWriter:
    return LogWriter(st, rec.marks.append, rec.failures.append)


async def test_write_now_is_done_on_return_without_a_thread(tmp_path: Path) -> None:
    st, rec = FileStorage(tmp_path), Recorder()
    w = writer_for(st, rec)
    mark = Persisted(1, 3)
    fut = w.submit([AppendOp(entries(1, 3))], mark, now=True)
    assert fut.done() and fut.exception() is None
    assert rec.marks == [mark]
    assert w._executor is None  # no hand-off happened
    await w.close()
    st.close()
    assert [e.index for e in FileStorage(tmp_path).load().entries] == [1, 2, 3]


async def test_write_now_behind_a_write_in_flight_keeps_the_order(tmp_path: Path) -> None:
    st, rec = FileStorage(tmp_path), Recorder()
    w = writer_for(st, rec)
    first = w.submit([AppendOp(entries(1, 2))], Persisted(1, 2))  # on the thread
    second = w.submit([AppendOp(entries(3, 3))], None, now=True)
    assert not second.done()  # queued behind the first, not written out of order
    await asyncio.gather(first, second)
    assert rec.marks == [Persisted(1, 2)]
    await w.close()
    st.close()
    assert [e.index for e in FileStorage(tmp_path).load().entries] == [1, 2, 3]


async def test_a_failed_write_now_fails_the_writer(tmp_path: Path) -> None:
    st, rec = FileStorage(tmp_path), Recorder()
    w = writer_for(st, rec)
    st._fh.close()  # the next write raises
    fut = w.submit([AppendOp(entries(1, 1))], None, now=True)
    assert fut.done() and isinstance(fut.exception(), ValueError)
    assert len(rec.failures) == 1 and w.failed is rec.failures[0]
    later = w.submit([AppendOp(entries(2, 2))], None, now=True)
    with pytest.raises(ValueError):
        await later


async def test_slow_writes_go_back_to_the_thread(tmp_path: Path) -> None:
    st, rec = FileStorage(tmp_path), Recorder()
    w = writer_for(st, rec)
    w.write_s = 1.0  # recent writes were slow: the disk is busy
    fut = w.submit([AppendOp(entries(1, 1))], None, now=True)
    assert not fut.done()  # handed to the thread, not fsynced on the loop
    await fut
    assert w.write_s < 1.0  # the thread's write is measured too
    await w.close()
    st.close()
