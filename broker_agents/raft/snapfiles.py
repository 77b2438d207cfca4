"""Compaction snapshots in files of their own, written by a thread of their own.

A member's local compaction snapshot (``SnapshotOp(reset_log=False)``) is advisory: the log
still holds every entry it covers, so nothing waits for it to be durable. Written into the
log (and again by the log's rewrite) it held the log's single writer thread for a 7 MB
write and two fsyncs (~150 ms under load), and every member snapshots at the same index,
so the whole group stopped committing at once (the p99 spikes, and the leader losing its
quorum check). Here it goes to ``snap-<index>.bin`` (temp file, fsync, rename, directory
fsync) on a second thread; once durable, the log's rewrite only writes a small marker
record naming it (``[5, index, term]``) and the entries after it.

A crash before the file is durable loses nothing: the log still has the entries. A file
newer than the log's marker (a crash before the rewrite) is adopted on recovery when the
log reaches its index.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack

from broker_agents.core.errors import LocalProtocolError
from broker_agents.core.raft import Membership, Snapshot

_HEADER = struct.Struct("<II")
_PREFIX, _SUFFIX = "snap-", ".bin"


def snap_path(directory: Path, index: int) -> Path:
    return directory / f"{_PREFIX}{index:020d}{_SUFFIX}"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot_file(directory: Path, snap: Snapshot, fsync: bool = True) -> None:
    """Atomically: the file is either absent or whole once this returns."""
    fields: list[Any] = [snap.index, snap.term, snap.data]
    if snap.membership is not None:  # the configuration in force at the snapshot
        fields.append(snap.membership.to_command())
    body: bytes = msgpack.packb(fields, use_bin_type=True)
    final = snap_path(directory, snap.index)
    tmp = final.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(_HEADER.pack(len(body), zlib.crc32(body)))
        fh.write(body)
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())
    os.replace(tmp, final)
    if fsync:
        fsync_dir(directory)


def read_snapshot_file(directory: Path, index: int) -> Snapshot | None:
    """The snapshot at ``index``, or None if its file is missing or damaged."""
    try:
        data = snap_path(directory, index).read_bytes()
    except OSError:
        return None
    if len(data) < _HEADER.size:
        return None
    length, crc = _HEADER.unpack_from(data)
    body = data[_HEADER.size:]
    if len(body) != length or zlib.crc32(body) != crc:
        return None
    try:
        i, term, payload, *rest = msgpack.unpackb(body, raw=False)
        members = Membership.from_command(rest[0]) if rest else None
    except (ValueError, TypeError, msgpack.ExtraData, LocalProtocolError):
        return None
    return Snapshot(int(i), int(term), bytes(payload), members) if i == index else None


def snapshot_indexes(directory: Path) -> list[int]:
    """Indexes of the snapshot files present, ascending."""
    found = []
    for p in directory.glob(f"{_PREFIX}*{_SUFFIX}"):
        with contextlib.suppress(ValueError):
            found.append(int(p.name[len(_PREFIX):-len(_SUFFIX)]))
    return sorted(found)


def remove_older(directory: Path, index: int) -> None:
    for i in snapshot_indexes(directory):
        if i < index:
            with contextlib.suppress(OSError):
                snap_path(directory, i).unlink()


class SnapshotWriter:
    """One thread writing the latest pending snapshot; older pending ones are skipped."""

    def __init__(self, directory: Path, fsync: bool) -> None:
        self.dir, self.fsync = directory, fsync
        self._lock = threading.Lock()
        self._pending: Snapshot | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._last: Future[None] | None = None
        self.durable: Snapshot | None = None  # the newest snapshot whose file is whole
        self.error: BaseException | None = None

    def submit(self, snap: Snapshot) -> None:
        with self._lock:
            self._pending = snap
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="raft-snapshot")
        self._last = self._executor.submit(self._run)

    def _run(self) -> None:
        with self._lock:
            snap, self._pending = self._pending, None
        if snap is None or (self.durable is not None and snap.index <= self.durable.index):
            return
        try:
            write_snapshot_file(self.dir, snap, self.fsync)
        except Exception as exc:  # the log still has the entries: compaction just waits
            self.error = exc
            return
        self.durable = snap

    def wait(self) -> None:
        """Block until every submitted snapshot is written (tests, close)."""
        if self._last is not None:
            self._last.result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
