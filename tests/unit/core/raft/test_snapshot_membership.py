"""A snapshot keeps the configuration in force at its index, through the driver's storage
(log records and snapshot files) and the core's own compaction."""

from __future__ import annotations

from pathlib import Path

from broker_agents.core.raft import (
    AppendOp,
    Entry,
    EntryKind,
    HardState,
    HardStateOp,
    Membership,
    Snapshot,
    SnapshotOp,
)
from broker_agents.core.raft.log import RaftLog
from broker_agents.raft.snapfiles import read_snapshot_file, write_snapshot_file
from broker_agents.raft.storage import FileStorage

GROWN = Membership.of(["m0", "m1", "m2", "m3"], ["m4"])


def test_snapshot_files_and_records_keep_membership(tmp_path: Path) -> None:
    write_snapshot_file(tmp_path, Snapshot(7, 2, b"s", GROWN), fsync=False)
    assert read_snapshot_file(tmp_path, 7) == Snapshot(7, 2, b"s", GROWN)
    write_snapshot_file(tmp_path, Snapshot(8, 2, b"old"), fsync=False)  # pre-membership
    assert read_snapshot_file(tmp_path, 8) == Snapshot(8, 2, b"old")
    st = FileStorage(tmp_path / "log", rewrite_min_bytes=0)
    cmd = GROWN.to_command()
    st.save([AppendOp(tuple(Entry(1, i, cmd if i == 3 else None, None,
                                  EntryKind.CONFIG if i == 3 else EntryKind.NOOP)
                            for i in range(1, 6))),
             HardStateOp(HardState(1, "m0", 5))])
    st.save([SnapshotOp(Snapshot(5, 1, b"state", GROWN), reset_log=True)])
    st.close()
    got = FileStorage(tmp_path / "log").load()
    assert got.snapshot is not None and got.snapshot.membership == GROWN


def test_a_log_follows_configurations_through_truncation_and_compaction() -> None:
    boot = Membership.of(["a", "b", "c"])
    one = Membership.of(["a", "b", "c"], ["d"])
    two = Membership.of(["a", "b", "c", "d"])
    log = RaftLog(None, [Entry(1, 1), Entry(1, 2, one.to_command(), None, EntryKind.CONFIG)],
                  boot)
    assert log.configs.active == one and log.configs.at(1) == boot
    log.merge([Entry(1, 3, two.to_command(), None, EntryKind.CONFIG)], commit=2)
    assert log.configs.active == two
    log.merge([Entry(2, 3)], commit=2)  # a newer leader's entry replaces the config
    assert log.configs.active == one  # truncating a config reverts to the one before
    log.compact(Snapshot(2, 1, b"", log.configs.at(2)))
    assert log.configs.active == one and log.configs.entries == []
    log.reset(Snapshot(9, 3, b""))  # a snapshot without membership: the bootstrap
    assert log.configs.active == boot
