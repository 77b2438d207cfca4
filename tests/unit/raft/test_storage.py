"""FileStorage: durable records, replay on open, torn-tail recovery, compaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core.raft import (
    AppendOp,
    Entry,
    HardState,
    HardStateOp,
    PersistOp,
    Snapshot,
    SnapshotOp,
    TruncateOp,
)
from broker_agents.raft.snapfiles import snap_path, snapshot_indexes
from broker_agents.raft.storage import LOG_NAME, FileStorage, MemoryStorage


def entries(lo: int, hi: int, term: int = 1) -> tuple[Entry, ...]:
    return tuple(Entry(term, i, {"op": "put", "key": "k", "value": i}, f"r{i}")
                 for i in range(lo, hi + 1))


def test_saved_state_survives_reopen(tmp_path: Path) -> None:
    st_ = FileStorage(tmp_path)
    st_.save([AppendOp(entries(1, 5)), HardStateOp(HardState(3, "m1", 4))])
    st_.close()
    got = FileStorage(tmp_path).load()
    assert got.hard_state == HardState(3, "m1", 4)
    assert [e.index for e in got.entries] == [1, 2, 3, 4, 5]
    assert got.entries[2].command == {"op": "put", "key": "k", "value": 3}


def test_truncate_then_append_replays_the_follower_conflict(tmp_path: Path) -> None:
    st_ = FileStorage(tmp_path)
    st_.save([AppendOp(entries(1, 5))])
    st_.save([TruncateOp(3), AppendOp(entries(3, 4, term=2))])
    st_.close()
    got = FileStorage(tmp_path).load()
    assert [(e.index, e.term) for e in got.entries] == [(1, 1), (2, 1), (3, 2), (4, 2)]


def test_torn_last_record_is_cut_off_and_earlier_records_survive(tmp_path: Path) -> None:
    st_ = FileStorage(tmp_path)
    st_.save([AppendOp(entries(1, 3)), HardStateOp(HardState(1, None, 3))])
    good = (tmp_path / LOG_NAME).stat().st_size
    st_.save([AppendOp(entries(4, 6))])
    st_.close()
    path = tmp_path / LOG_NAME
    path.write_bytes(path.read_bytes()[: good + 7])  # crash in the middle of a write
    reopened = FileStorage(tmp_path)
    assert reopened.torn_bytes == 7
    assert [e.index for e in reopened.load().entries] == [1, 2, 3]
    reopened.save([AppendOp(entries(4, 4))])  # new records follow the good prefix
    reopened.close()
    assert [e.index for e in FileStorage(tmp_path).load().entries] == [1, 2, 3, 4]


def test_corrupt_record_stops_replay(tmp_path: Path) -> None:
    st_ = FileStorage(tmp_path)
    st_.save([AppendOp(entries(1, 2))])
    st_.save([AppendOp(entries(3, 4))])
    st_.close()
    path = tmp_path / LOG_NAME
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert [e.index for e in FileStorage(tmp_path).load().entries] == [1, 2]


def test_snapshot_compaction_rewrites_file_and_keeps_later_entries(tmp_path: Path) -> None:
    st_ = FileStorage(tmp_path, rewrite_min_bytes=0)
    st_.save([AppendOp(entries(1, 200)), HardStateOp(HardState(2, "m0", 200))])
    before = st_.size_bytes
    st_.save([SnapshotOp(Snapshot(150, 1, b"state@150"), reset_log=False)])
    assert st_.size_bytes == before  # the snapshot goes to a file of its own, not the log
    st_.wait_snapshots()
    assert snapshot_indexes(tmp_path) == [150]
    st_.save([AppendOp(entries(201, 201))])  # the next write compacts the log
    assert st_.rewrites == 1
    assert st_.size_bytes < before
    st_.close()
    got = FileStorage(tmp_path).load()
    assert got.snapshot == Snapshot(150, 1, b"state@150")
    assert [e.index for e in got.entries] == list(range(151, 202))
    assert got.hard_state == HardState(2, "m0", 200)
    assert FileStorage.inspect(tmp_path) == got


def test_older_snapshot_files_go_once_the_log_names_a_newer_one(tmp_path: Path) -> None:
    st_ = FileStorage(tmp_path, rewrite_min_bytes=0)
    st_.save([AppendOp(entries(1, 100))])
    for at in (40, 80):
        st_.save([SnapshotOp(Snapshot(at, 1, b"s%d" % at), reset_log=False)])
        st_.wait_snapshots()
        st_.save([HardStateOp(HardState(1, None, at))])  # the next write compacts
    assert snapshot_indexes(tmp_path) == [80]
    st_.close()
    got = FileStorage(tmp_path).load()
    assert got.snapshot == Snapshot(80, 1, b"s80")
    assert [e.index for e in got.entries] == list(range(81, 101))


def test_crash_before_the_snapshot_file_keeps_every_entry(tmp_path: Path) -> None:
    st_ = FileStorage(tmp_path, rewrite_min_bytes=0)
    st_.save([AppendOp(entries(1, 50))])
    st_.save([SnapshotOp(Snapshot(30, 1, b"s30"), reset_log=False)])
    st_.close()
    for index in snapshot_indexes(tmp_path):  # the crash came before the file was whole
        snap_path(tmp_path, index).unlink()
    got = FileStorage(tmp_path).load()
    assert got.snapshot is None
    assert [e.index for e in got.entries] == list(range(1, 51))


def test_a_snapshot_file_newer_than_the_log_is_adopted(tmp_path: Path) -> None:
    """A crash after the snapshot file was written, before the rewrite named it."""
    st_ = FileStorage(tmp_path, rewrite_min_bytes=1 << 30)  # never rewrites
    st_.save([AppendOp(entries(1, 50)), HardStateOp(HardState(1, None, 50))])
    st_.save([SnapshotOp(Snapshot(30, 1, b"s30"), reset_log=False)])
    st_.close()
    assert st_.rewrites == 0
    got = FileStorage(tmp_path).load()
    assert got.snapshot == Snapshot(30, 1, b"s30")
    assert [e.index for e in got.entries] == list(range(31, 51))


def test_a_damaged_snapshot_file_is_not_adopted(tmp_path: Path) -> None:
    st_ = FileStorage(tmp_path, rewrite_min_bytes=1 << 30)
    st_.save([AppendOp(entries(1, 50))])
    st_.save([SnapshotOp(Snapshot(30, 1, b"s30"), reset_log=False)])
    st_.close()
    path = snap_path(tmp_path, 30)
    path.write_bytes(path.read_bytes()[:-2] + b"xx")
    got = FileStorage(tmp_path).load()
    assert got.snapshot is None
    assert [e.index for e in got.entries] == list(range(1, 51))


def test_installed_snapshot_resets_the_log(tmp_path: Path) -> None:
    st_ = FileStorage(tmp_path)
    st_.save([AppendOp(entries(1, 10))])
    st_.save([SnapshotOp(Snapshot(50, 3, b"s"), reset_log=True), AppendOp(entries(51, 52, 3))])
    st_.close()
    got = FileStorage(tmp_path).load()
    assert got.snapshot is not None and got.snapshot.index == 50
    assert [e.index for e in got.entries] == [51, 52]


def test_append_with_gap_is_rejected() -> None:
    mem = MemoryStorage()
    mem.save([AppendOp(entries(1, 2))])
    with pytest.raises(ValueError):
        mem.save([AppendOp(entries(5, 6))])


@st.composite
def op_sequences(draw: st.DrawFn) -> list[list[PersistOp]]:
    """Valid op batches like a core would produce them."""
    batches: list[list[PersistOp]] = []
    last, base, term = 0, 0, 1
    for _ in range(draw(st.integers(1, 12))):
        batch: list[PersistOp] = []
        kind = draw(st.sampled_from(["append", "truncate", "snap", "hs"]))
        if kind == "truncate" and last > base + 1:
            cut = draw(st.integers(base + 1, last))
            batch.append(TruncateOp(cut))
            last = cut - 1
            term += 1
        elif kind == "snap" and last > base:
            at = draw(st.integers(base + 1, last))
            batch.append(SnapshotOp(Snapshot(at, 1, b"x"), reset_log=False))
            base = at
        elif kind == "hs":
            batch.append(HardStateOp(HardState(term, None, base)))
        n = draw(st.integers(1, 5))
        batch.append(AppendOp(entries(last + 1, last + n, term)))
        last += n
        batches.append(batch)
    return batches


@settings(max_examples=60, deadline=None)
@given(op_sequences())
def test_file_storage_replays_to_the_same_state_as_memory(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[PersistOp]]
) -> None:
    path = tmp_path_factory.mktemp("fs")
    fs, mem = FileStorage(path, fsync=False, rewrite_min_bytes=0), MemoryStorage()
    for batch in batches:
        fs.save(batch)
        mem.save(batch)
    fs.close()
    got, want = FileStorage(path).load(), mem.load()
    assert got.entries == want.entries
    assert got.snapshot == want.snapshot
    assert got.hard_state == want.hard_state
