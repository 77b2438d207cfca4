"""Durable Raft storage: one append-only file per member, fsynced once per Ready.

Each record is ``[u32 length][u32 crc32][msgpack payload]``; payloads are
``[1, term, vote, commit]`` (hard state), ``[2, [entry...]]`` (append),
``[3, from_index]`` (truncate), ``[4, index, term, data, reset]`` (an installed snapshot)
and ``[5, index, term]`` (the snapshot in ``snap-<index>.bin``: ``snapfiles.py``). Opening
replays the records; a torn or corrupt tail (a crash mid-write) is cut off -- it was never
acknowledged, because ``save`` returns only after fsync.

A local compaction snapshot is not written here: it goes to a file of its own on another
thread (``snapfiles.py``), so ``save`` -- and every commit behind it -- never waits for
it. Once that file is durable, the log is rewritten (marker + remaining entries + hard
state) to a temp file that atomically replaces the old one, so it does not grow without
bound.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgpack

from broker_agents.core.raft import (
    AppendOp,
    Entry,
    EntryKind,
    HardState,
    HardStateOp,
    InitialState,
    Membership,
    PersistOp,
    Snapshot,
    SnapshotOp,
    TruncateOp,
)
from broker_agents.raft.memstore import MemoryStorage, Storage
from broker_agents.raft.snapfiles import (
    SnapshotWriter,
    fsync_dir,
    read_snapshot_file,
    remove_older,
    snapshot_indexes,
)

__all__ = ["FileStorage", "MemoryStorage", "Storage"]

_HEADER = struct.Struct("<II")
LOG_NAME = "raft.log"


def _encode_op(op: PersistOp) -> list[Any]:
    if isinstance(op, AppendOp):
        return [2, [[e.term, e.index, int(e.kind), e.request_id, e.command] for e in op.entries]]
    if isinstance(op, HardStateOp):
        s = op.state
        return [1, s.term, s.vote, s.commit]
    if isinstance(op, TruncateOp):
        return [3, op.from_index]
    snap = op.snapshot
    rec = [4, snap.index, snap.term, snap.data, op.reset_log]
    return rec if snap.membership is None else [*rec, snap.membership.to_command()]


def _decode_op(rec: list[Any]) -> PersistOp:
    kind = rec[0]
    if kind == 2:
        return AppendOp(tuple(Entry(t, i, c, r, EntryKind(k)) for t, i, k, r, c in rec[1]))
    if kind == 1:
        return HardStateOp(HardState(rec[1], rec[2], rec[3]))
    if kind == 3:
        return TruncateOp(rec[1])
    if kind == 4:
        members = Membership.from_command(rec[5]) if len(rec) > 5 else None
        return SnapshotOp(Snapshot(rec[1], rec[2], rec[3], members), bool(rec[4]))
    raise ValueError(f"unknown record type {kind}")


def _is_compaction(op: PersistOp) -> bool:
    return isinstance(op, SnapshotOp) and not op.reset_log


def stored_packer() -> msgpack.Packer:
    """A packer that encodes exactly as records are stored (``raft/commands.py`` checks
    each proposal with one before it may enter the log)."""
    return msgpack.Packer(use_bin_type=True)


def unpack_stored(data: bytes) -> Any:
    """Decode what ``stored_packer`` encoded, as replay does."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _frame(payload: list[Any]) -> bytes:
    body: bytes = msgpack.packb(payload, use_bin_type=True)  # as stored_packer()
    return _HEADER.pack(len(body), zlib.crc32(body)) + body


def _replay(data: bytes, mem: MemoryStorage, directory: Path) -> int:
    """Apply every intact record to ``mem``; returns where the intact prefix ends."""
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        start, end = pos + _HEADER.size, pos + _HEADER.size + length
        if end > len(data) or zlib.crc32(data[start:end]) != crc:
            break
        try:
            rec = unpack_stored(data[start:end])
            if rec[0] == 5:
                op: PersistOp = SnapshotOp(_snapshot_file(directory, rec[1], rec[2]), False)
            else:
                op = _decode_op(rec)
        except (ValueError, TypeError, IndexError, msgpack.ExtraData):
            break
        mem.apply(op)
        pos = end
    _adopt_newer_file(mem, directory)
    return pos


def _snapshot_file(directory: Path, index: int, term: int) -> Snapshot:
    snap = read_snapshot_file(directory, index)
    if snap is None or snap.term != term:  # written and fsynced before the marker was
        raise OSError(f"snapshot file for index {index} is missing or damaged")
    return snap


def _adopt_newer_file(mem: MemoryStorage, directory: Path) -> None:
    """A snapshot file newer than the log's base (a crash before the rewrite naming it):
    compact to it when the log reaches its index."""
    for index in reversed(snapshot_indexes(directory)):
        if mem.base_index < index <= mem.last_index:
            snap = read_snapshot_file(directory, index)
            if snap is not None:
                mem.apply(SnapshotOp(snap, False))
                return


class FileStorage:
    """``save`` is durable on return; ``load`` returns what survived."""

    def __init__(self, data_dir: str | Path, *, fsync: bool = True,
                 rewrite_min_bytes: int = 1 << 20) -> None:
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / LOG_NAME
        self.fsync = fsync
        self.rewrite_min_bytes = rewrite_min_bytes
        self.mem = MemoryStorage()
        self.torn_bytes = 0
        self.rewrites = 0
        self._snapshots = SnapshotWriter(self.dir, fsync)
        self._marker = 0  # the snapshot file the log's first record names (0: none)
        self._recover()
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open for the member's life
        self._size = self._fh.tell()

    @staticmethod
    def inspect(data_dir: str | Path) -> InitialState:
        """Read a member's file without modifying it (for tools and tests)."""
        mem = MemoryStorage()
        path = Path(data_dir) / LOG_NAME
        if path.exists():
            _replay(path.read_bytes(), mem, Path(data_dir))
        return mem.load()

    def _recover(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        pos = _replay(data, self.mem, self.dir)
        if pos < len(data):  # torn tail: cut it off so new records follow good ones
            self.torn_bytes = len(data) - pos
            with open(self.path, "r+b") as fh:
                fh.truncate(pos)
                fh.flush()
                os.fsync(fh.fileno())
        snap = self.mem.snapshot
        if snap is not None and snap.index in snapshot_indexes(self.dir):
            self._snapshots.durable = snap  # its file is whole (replay read or checked it)

    def load(self) -> InitialState:
        return self.mem.load()

    def save(self, ops: Sequence[PersistOp]) -> None:
        """Durable on return, except a compaction snapshot: it is handed to the snapshot
        thread (the entries it covers stay in the log until its file is durable)."""
        if not ops:
            return
        logged = [op for op in ops if not _is_compaction(op)]
        if logged:
            buf = b"".join(_frame(_encode_op(op)) for op in logged)
            self._fh.write(buf)
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())
            self._size += len(buf)
        compaction: Snapshot | None = None
        installed = False
        for op in ops:
            self.mem.apply(op)
            if isinstance(op, SnapshotOp):
                compaction = None if op.reset_log else op.snapshot
                installed = installed or op.reset_log
        if compaction is not None:
            self._snapshots.submit(compaction)
        if self._size >= self.rewrite_min_bytes and (installed or self._compacted()):
            self.rewrite()

    def save_quick(self, ops: Sequence[PersistOp]) -> bool:
        """Save ``ops`` now if that is one append + fsync (no snapshot among them, no
        rewrite due) and return True; otherwise save nothing and return False (the caller
        saves them with ``save`` on a thread). Lets a caller that must wait for the fsync
        anyway (a follower) skip two thread hand-offs without ever stalling on a rewrite."""
        if any(isinstance(op, SnapshotOp) for op in ops) or self._rewrite_due():
            return False
        if ops:
            buf = b"".join(_frame(_encode_op(op)) for op in ops)
            self._fh.write(buf)
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())
            self._size += len(buf)
            for op in ops:
                self.mem.apply(op)
        return True

    def _rewrite_due(self) -> bool:
        return self._size >= self.rewrite_min_bytes and self._compacted()

    def _compacted(self) -> bool:
        """The current base is in a durable snapshot file the log does not name yet."""
        snap = self.mem.snapshot
        return snap is not None and snap.index != self._marker and self._in_file(snap)

    def _in_file(self, snap: Snapshot) -> bool:
        durable = self._snapshots.durable
        return durable is not None and (durable.index, durable.term) == (snap.index, snap.term)

    def wait_snapshots(self) -> None:
        """Block until the snapshot thread has written what it was given (tests, tools)."""
        self._snapshots.wait()

    def rewrite(self) -> None:
        """Compaction: replace the file by the current state, atomically."""
        tmp = self.path.with_suffix(".tmp")
        records: list[list[Any]] = []
        snap = self.mem.snapshot
        marker = snap is not None and self._in_file(snap)
        if snap is not None:
            records.append([5, snap.index, snap.term] if marker
                           else _encode_op(SnapshotOp(snap, True)))
        if self.mem.entries:
            records.append(_encode_op(AppendOp(tuple(self.mem.entries))))
        records.append(_encode_op(HardStateOp(self.mem.hard_state)))
        with open(tmp, "wb") as fh:
            for rec in records:
                fh.write(_frame(rec))
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        self._fh.close()
        os.replace(tmp, self.path)
        if self.fsync:
            fsync_dir(self.dir)
        self._fh = open(self.path, "ab")  # noqa: SIM115
        self._size = self._fh.tell()
        self.rewrites += 1
        if snap is not None:  # files the log no longer needs
            self._marker = snap.index if marker else 0
            remove_older(self.dir, snap.index if marker else snap.index + 1)

    @property
    def size_bytes(self) -> int:
        return self._size

    def close(self) -> None:
        self._snapshots.close()
        if not self._fh.closed:
            self._fh.close()
